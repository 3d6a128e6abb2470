package berth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/dockerfile"
	"github.com/berth-dev/berth/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// BuildOption configures Build.
type BuildOption interface{ applyBuild(*buildSettings) }

type buildSettings struct {
	dockerfile string
	content    *string
	tags       []string
	args       map[string]string
	target     string
	noCache    bool
	progress   func(BuildEvent)
}

type buildOptionFunc func(*buildSettings)

func (f buildOptionFunc) applyBuild(c *buildSettings) { f(c) }

// WithDockerfile names the Dockerfile (docker build -f); a relative path is
// relative to the context directory. Default: "Dockerfile" in the context.
func WithDockerfile(path string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.dockerfile = path })
}

// WithDockerfileContent builds from the given Dockerfile text instead of a
// file (docker build -f - with the Dockerfile on stdin). Default: the file.
func WithDockerfileContent(content string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.content = &content })
}

// WithBuildTags tags the built image with each reference (docker build -t);
// a missing tag means "latest". Default: the image is stored untagged.
func WithBuildTags(refs ...string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.tags = append(c.tags, refs...) })
}

// WithBuildArgs sets build-time variables (docker build --build-arg), which
// override the defaults of the Dockerfile's ARG instructions of the same
// name. Default: none.
func WithBuildArgs(args map[string]string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) {
		if c.args == nil {
			c.args = map[string]string{}
		}
		maps.Copy(c.args, args)
	})
}

// WithTarget builds the named stage (or stage index) and the stages it
// needs, and returns its image (docker build --target). Default: the last
// stage.
func WithTarget(stage string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.target = stage })
}

// WithNoCache builds every step anew, neither reading nor trusting the
// build cache (docker build --no-cache); the results are still recorded
// for later builds. Default: cached steps are reused.
func WithNoCache() BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.noCache = true })
}

// WithBuildProgress calls fn for every step as it starts and for every line
// a RUN step prints, from the goroutine that called Build, in order.
// Default: no events.
func WithBuildProgress(fn func(BuildEvent)) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.progress = fn })
}

// BuildEvent is one progress report of Build. A step first reports itself
// with Output empty; a RUN step then reports each line it prints with the
// same Step and Output set.
type BuildEvent struct {
	// Step numbers the steps of the build from 1, FROM included, across
	// the stages built.
	Step int
	// Stage names the stage: its AS name, else its index.
	Stage string
	// Instruction is the instruction as written in the Dockerfile.
	Instruction string
	// Cached reports that the step's result came from the build cache.
	Cached bool
	// Output is one line the step's process printed, without the newline.
	Output string
}

// BuildError reports a build that failed on one instruction of its
// Dockerfile (or on the Dockerfile as a whole, with Line 0).
type BuildError struct {
	// File is the Dockerfile's path, or "Dockerfile" for content given
	// with WithDockerfileContent.
	File string
	// Line is the 1-based line the instruction starts on.
	Line int
	// Instruction is the instruction as written.
	Instruction string
	// Err is the cause. For a RUN that failed, errors.As finds an
	// *ExitError in it, and its message ends with the last lines of the
	// step's output.
	Err error
}

func (e *BuildError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Instruction, e.Err)
}

func (e *BuildError) Unwrap() error { return e.Err }

// runOutputTail is how many lines of a failed RUN's output BuildError
// shows.
const runOutputTail = 10

// Build builds the image a Dockerfile describes from a context directory
// (docker build DIR) and returns it; every intermediate step is an image in
// the store, kept as an untagged (<none>) image so that the build cache
// can reuse it.
//
// Instructions: FROM (an image in the store, pulled when missing; scratch;
// an earlier stage by name or index; ARGs declared before the first FROM),
// RUN (shell and exec forms, in a container attached to the build with the
// step's ENV, ARGs, WORKDIR and USER), COPY and ADD of context files and of
// an earlier stage's files (wildcards, Docker's directory and trailing-slash
// rules, --chown with numeric ids, --chmod with octal modes; ADD extracts a
// local tar), WORKDIR, ENV, ARG, LABEL, EXPOSE, USER, VOLUME, ENTRYPOINT,
// CMD, SHELL, STOPSIGNAL and ONBUILD (recorded, not triggered). Other
// instructions and flags fail with ErrUnsupported. Variables are
// substituted by BuildKit's shell lexer. Every context path is resolved
// inside contextDir: a source that climbs out of it is an error, and
// symlinks are copied as symlinks, never followed. .dockerignore in the
// context root excludes files.
//
// A step that makes a layer (RUN, COPY, ADD) is cached under a key over its
// parent, its instruction after substitution, the build args it uses and,
// for COPY and ADD, the content, mode and ownership of the files it reads
// (never their mtime). Only the stages the target needs are built. Errors
// about an instruction are *BuildError.
func (r *Runtime) Build(ctx context.Context, contextDir string, opts ...BuildOption) (*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	cfg := buildSettings{dockerfile: "Dockerfile"}
	for _, o := range opts {
		o.applyBuild(&cfg)
	}
	root, err := os.OpenRoot(contextDir)
	if err != nil {
		return nil, fmt.Errorf("building: opening the context: %w", err)
	}
	defer root.Close()
	b := &builder{r: r, cfg: cfg, ctxRoot: root, file: cfg.dockerfile, stageRoots: map[int]string{}}
	defer b.cleanup()
	var src []byte
	ignoreFile := ""
	if cfg.content != nil {
		src, b.file = []byte(*cfg.content), "Dockerfile"
	} else {
		p := cfg.dockerfile
		if !filepath.IsAbs(p) {
			p = filepath.Join(contextDir, p)
		}
		if src, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("building: reading the Dockerfile: %w", err)
		}
		ignoreFile = p + ".dockerignore"
	}
	// BuildKit's rule: <Dockerfile>.dockerignore beside the Dockerfile
	// wins over the context's .dockerignore.
	if f, err := os.Open(ignoreFile); ignoreFile != "" && err == nil {
		b.ignore, err = dockerfile.ParseIgnore(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("building: reading %s: %w", ignoreFile, err)
		}
	} else if b.ignore, err = readIgnore(root); err != nil {
		return nil, fmt.Errorf("building: reading .dockerignore: %w", err)
	}
	return b.run(ctx, src)
}

func readIgnore(root *os.Root) (*dockerfile.Ignore, error) {
	f, err := root.Open(".dockerignore")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return dockerfile.ParseIgnore(f)
}

// builder is the state of one Build call.
type builder struct {
	r          *Runtime
	cfg        buildSettings
	ctxRoot    *os.Root
	ignore     *dockerfile.Ignore
	file       string
	lex        *shell.Lex
	metaArgs   map[string]*string
	stages     []*buildStage
	step       int
	stageRoots map[int]string // materialized stage filesystems, for COPY --from
	releases   []func()
}

// buildStage is one FROM section of the Dockerfile and, once built, its
// result.
type buildStage struct {
	index    int
	name     string
	from     *instructions.Stage
	fromNode *parser.Node
	nodes    []*parser.Node
	cmds     []any
	built    bool
	state    *buildState
}

// buildState is the image a stage has built so far.
type buildState struct {
	img    *Image
	cf     *v1.ConfigFile
	key    string             // cache chain key
	args   map[string]*string // ARGs in scope
	cmdSet bool               // a CMD was set in this stage
	dirty  bool               // cf differs from img (metadata steps not yet written)
}

func (b *builder) cleanup() {
	for _, f := range slices.Backward(b.releases) {
		f()
	}
}

func (b *builder) fail(n *parser.Node, err error) error {
	var be *BuildError
	if errors.As(err, &be) {
		return err
	}
	if n == nil {
		return &BuildError{File: b.file, Err: err}
	}
	return &BuildError{File: b.file, Line: n.StartLine, Instruction: n.Original, Err: err}
}

func (b *builder) emit(ev BuildEvent) {
	if b.cfg.progress != nil {
		b.cfg.progress(ev)
	}
}

func (b *builder) run(ctx context.Context, src []byte) (*Image, error) {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, b.fail(nil, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	b.lex = shell.NewLex(res.EscapeToken)
	b.metaArgs = map[string]*string{}
	for _, n := range res.AST.Children {
		inst, err := instructions.ParseInstruction(n)
		if err != nil {
			return nil, b.fail(n, fmt.Errorf("%w: %v", ErrInvalid, err))
		}
		switch c := inst.(type) {
		case *instructions.Stage:
			st := &buildStage{index: len(b.stages), name: strings.ToLower(c.Name), from: c, fromNode: n}
			b.stages = append(b.stages, st)
		default:
			if c, ok := inst.(*instructions.ArgCommand); ok && len(b.stages) == 0 {
				if err := b.declareArgs(b.metaArgs, c, b.metaEnv()); err != nil {
					return nil, b.fail(n, err)
				}
				continue
			}
			if len(b.stages) == 0 {
				return nil, b.fail(n, fmt.Errorf("%w: the Dockerfile must begin with FROM (or ARG before FROM)", ErrInvalid))
			}
			st := b.stages[len(b.stages)-1]
			st.nodes = append(st.nodes, n)
			st.cmds = append(st.cmds, inst)
		}
	}
	if len(b.stages) == 0 {
		return nil, b.fail(nil, fmt.Errorf("%w: the Dockerfile has no FROM", ErrInvalid))
	}
	target := b.stages[len(b.stages)-1]
	if b.cfg.target != "" {
		if target = b.stageByName(b.cfg.target); target == nil {
			return nil, b.fail(nil, fmt.Errorf("%w: target stage %q could not be found", ErrNotFound, b.cfg.target))
		}
	}
	if err := b.buildStage(ctx, target); err != nil {
		return nil, err
	}
	return b.finish(ctx, target.state)
}

// metaEnv is the environment the FROM lines and global ARGs expand in.
func (b *builder) metaEnv() shell.EnvGetter {
	var env []string
	for k, v := range b.metaArgs {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	return shell.EnvsFromSlice(env)
}

func (b *builder) stageByName(name string) *buildStage {
	name = strings.ToLower(name)
	for _, st := range b.stages {
		if st.name == name && name != "" {
			return st
		}
	}
	if i, err := strconv.Atoi(name); err == nil && i >= 0 && i < len(b.stages) {
		return b.stages[i]
	}
	return nil
}

func (b *builder) stageLabel(st *buildStage) string {
	if st.name != "" {
		return st.name
	}
	return "stage-" + strconv.Itoa(st.index)
}

// declareArgs declares ARGs in scope: the build arg of the same name wins,
// then the default, then (inside a stage) the global ARG's value.
func (b *builder) declareArgs(scope map[string]*string, c *instructions.ArgCommand, env shell.EnvGetter) error {
	for _, kv := range c.Args {
		var val *string
		if v, ok := b.cfg.args[kv.Key]; ok {
			val = &v
		} else if kv.Value != nil {
			s, _, err := b.lex.ProcessWord(*kv.Value, env)
			if err != nil {
				return err
			}
			val = &s
		} else if g, ok := b.metaArgs[kv.Key]; ok && scope != nil && g != nil {
			s := *g
			val = &s
		}
		scope[kv.Key] = val
	}
	return nil
}

// buildStage builds st and, first, the stages it depends on.
func (b *builder) buildStage(ctx context.Context, st *buildStage) error {
	if st.built {
		return nil
	}
	label := b.stageLabel(st)
	fromNode := st.fromNode
	baseName, _, err := b.lex.ProcessWord(st.from.BaseName, b.metaEnv())
	if err != nil {
		return b.fail(fromNode, err)
	}
	if st.from.Platform != "" {
		return b.fail(fromNode, fmt.Errorf("%w: FROM --platform", ErrUnsupported))
	}
	var state *buildState
	if dep := b.stageByName(baseName); dep != nil && dep.index < st.index && !isDigits(baseName) {
		if err := b.buildStage(ctx, dep); err != nil {
			return err
		}
		state = dep.state.clone()
	}
	// Stages that COPY --from needs are built first, as their own steps.
	for i, inst := range st.cmds {
		if c, ok := inst.(*instructions.CopyCommand); ok && c.From != "" {
			if dep := b.stageByName(c.From); dep != nil {
				if dep.index >= st.index {
					return b.fail(st.nodes[i], fmt.Errorf("%w: COPY --from=%s names a later stage or this one", ErrInvalid, c.From))
				}
				if err := b.buildStage(ctx, dep); err != nil {
					return err
				}
			}
		}
	}
	b.step++
	b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: fromNode.Original})
	if state == nil {
		if state, err = b.baseState(ctx, baseName); err != nil {
			return b.fail(fromNode, err)
		}
	}
	state.args = map[string]*string{}
	state.cmdSet = false
	for i, inst := range st.cmds {
		n := st.nodes[i]
		b.step++
		if err := b.step1(ctx, st, state, n, inst); err != nil {
			return b.fail(n, err)
		}
	}
	st.state, st.built = state, true
	return nil
}

func isDigits(s string) bool { _, err := strconv.Atoi(s); return err == nil }

func (s *buildState) clone() *buildState {
	c := *s
	c.cf = s.cf.DeepCopy()
	c.args = maps.Clone(s.args)
	return &c
}

// baseState opens FROM's image, pulling it when the store lacks it, or an
// empty one for scratch.
func (b *builder) baseState(ctx context.Context, ref string) (*buildState, error) {
	if strings.EqualFold(ref, "scratch") {
		cf := &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, RootFS: v1.RootFS{Type: "layers"}}
		return &buildState{cf: cf, key: "scratch", dirty: true}, nil
	}
	img, err := b.r.Image(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		img, err = b.r.Pull(ctx, ref)
	}
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(img.rawConfig))
	if err != nil {
		return nil, err
	}
	return &buildState{img: img, cf: cf, key: img.ID}, nil
}

// env is the environment instructions expand in: ARGs overridden by ENV.
func (s *buildState) env() []string {
	var env []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		if v := s.args[k]; v != nil && !hasEnv(s.cf.Config.Env, k) {
			env = append(env, k+"="+*v)
		}
	}
	return append(env, s.cf.Config.Env...)
}

// stepKey chains the cache key of a step onto its parent's.
func stepKey(parent, instruction string, args []string, content string) string {
	h := sha256.New()
	for _, s := range append([]string{parent, instruction, content}, args...) {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func (b *builder) step1(ctx context.Context, st *buildStage, s *buildState, n *parser.Node, inst any) error {
	label := b.stageLabel(st)
	used := map[string]struct{}{}
	envGetter := shell.EnvsFromSlice(s.env())
	expand := func(word string) (string, error) {
		res, err := b.lex.ProcessWordWithMatches(word, envGetter)
		if err != nil {
			return "", err
		}
		for k := range res.Matched {
			used[k] = struct{}{}
		}
		return res.Result, nil
	}
	if ex, ok := inst.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(expand); err != nil {
			return err
		}
	}
	usedArgs := func() []string {
		var out []string
		for _, k := range slices.Sorted(maps.Keys(used)) {
			if v, ok := s.args[k]; ok && v != nil && !hasEnv(s.cf.Config.Env, k) {
				out = append(out, k+"="+*v)
			}
		}
		return out
	}
	switch c := inst.(type) {
	case *instructions.ArgCommand:
		b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original})
		if err := b.declareArgs(s.args, c, envGetter); err != nil {
			return err
		}
		var vals []string
		for _, kv := range c.Args {
			if v := s.args[kv.Key]; v != nil {
				vals = append(vals, kv.Key+"="+*v)
			} else {
				vals = append(vals, kv.Key)
			}
		}
		s.key = stepKey(s.key, n.Original, vals, "")
		return nil
	case *instructions.RunCommand:
		return b.runStep(ctx, label, s, n, c)
	case *instructions.CopyCommand:
		if len(c.SourceContents) > 0 || c.Link || len(c.ExcludePatterns) > 0 || c.Parents {
			return fmt.Errorf("%w: COPY with heredocs, --link, --exclude or --parents", ErrUnsupported)
		}
		return b.copyStep(ctx, label, s, n, c.SourcesAndDest, c.From, c.Chown, c.Chmod, false, usedArgs)
	case *instructions.AddCommand:
		if len(c.SourceContents) > 0 || c.Link || len(c.ExcludePatterns) > 0 || c.Checksum != "" {
			return fmt.Errorf("%w: ADD with heredocs, --link, --exclude or --checksum", ErrUnsupported)
		}
		return b.copyStep(ctx, label, s, n, c.SourcesAndDest, "", c.Chown, c.Chmod, true, usedArgs)
	case *instructions.ShellCommand:
		s.cf.Config.Shell = slices.Clone(c.Shell)
	case *instructions.MaintainerCommand:
		s.cf.Author = c.Maintainer
	case *instructions.HealthCheckCommand:
		// Recorded in the image config as docker does; berth runs no health
		// checks yet (a later issue), but images built here carry them.
		h := c.Health
		if h == nil {
			return fmt.Errorf("%w: HEALTHCHECK without a command", ErrInvalid)
		}
		s.cf.Config.Healthcheck = &v1.HealthConfig{
			Test: slices.Clone(h.Test), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
	default:
		if err := applyChange(&s.cf.Config, inst, b.lex, envGetter, &s.cmdSet); err != nil {
			if strings.HasPrefix(err.Error(), "instruction ") {
				return fmt.Errorf("%w: %v", ErrUnsupported, err)
			}
			return err
		}
	}
	// A metadata step: an empty layer and a history entry, docker's form.
	b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original})
	text := expandedText(n, expand)
	s.key = stepKey(s.key, text, usedArgs(), "")
	s.cf.History = append(s.cf.History, v1.History{
		Created:    v1.Time{Time: time.Now().UTC()},
		CreatedBy:  "/bin/sh -c #(nop)  " + text,
		EmptyLayer: true,
	})
	s.dirty = true
	return nil
}

// expandedText is the instruction with its arguments after substitution,
// as docker's history shows it ("ENV A=b").
func expandedText(n *parser.Node, expand func(string) (string, error)) string {
	var words []string
	for a := n.Next; a != nil; a = a.Next {
		w, err := expand(a.Value)
		if err != nil {
			w = a.Value
		}
		words = append(words, w)
	}
	name := strings.ToUpper(n.Value)
	if n.Attributes["json"] {
		return name + " [" + quoteJoin(words) + "]"
	}
	switch name {
	case "ENV", "LABEL":
		// The parser splits KEY=VALUE pairs into KEY, VALUE nodes.
		var kv []string
		for i := 0; i+1 < len(words); i += 2 {
			kv = append(kv, words[i]+"="+words[i+1])
		}
		return name + " " + strings.Join(kv, " ")
	}
	return name + " " + strings.Join(words, " ")
}

func quoteJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	return strings.Join(q, " ")
}

// cachePath is where the image ID a step key produced is recorded.
func (b *builder) cachePath(key string) string {
	return filepath.Join(b.r.root, "cache", "build", strings.TrimPrefix(key, "sha256:"))
}

// cached returns the image a step key produced in an earlier build, if it
// is still in the store.
func (b *builder) cached(ctx context.Context, key string) *Image {
	if b.cfg.noCache {
		return nil
	}
	id, err := os.ReadFile(b.cachePath(key))
	if err != nil {
		return nil
	}
	img, err := b.r.Image(ctx, strings.TrimSpace(string(id)))
	if err != nil {
		return nil
	}
	return img
}

// useCached makes a cached image the stage's state.
func (s *buildState) useCached(img *Image, key string) error {
	cf, err := v1.ParseConfigFile(bytes.NewReader(img.rawConfig))
	if err != nil {
		return err
	}
	s.img, s.cf, s.key, s.dirty = img, cf, key, false
	return nil
}

// commitLayer writes the state plus one layer (or an empty_layer history
// entry when diffID is the empty tar's) as an image, keeps it from garbage
// collection with an untagged reference and records it under key. The
// caller holds the gc lock shared.
func (b *builder) commitLayer(ctx context.Context, s *buildState, key, diffID string, size int64, createdBy string) error {
	cf := s.cf.DeepCopy()
	now := time.Now().UTC()
	var layers []Layer
	if s.img != nil {
		layers = slices.Clone(s.img.Layers)
	}
	empty := diffID == emptyTarDiffID
	if !empty {
		h, err := v1.NewHash(diffID)
		if err != nil {
			return err
		}
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, h)
		layers = append(layers, Layer{Digest: diffID, DiffID: diffID, MediaType: string(types.DockerUncompressedLayer), Size: size})
	}
	cf.Created = v1.Time{Time: now}
	cf.Container = ""
	cf.History = append(cf.History, v1.History{Created: v1.Time{Time: now}, CreatedBy: createdBy, EmptyLayer: empty})
	return b.writeState(ctx, s, cf, layers, key)
}

func (b *builder) writeState(ctx context.Context, s *buildState, cf *v1.ConfigFile, layers []Layer, key string) error {
	img, err := b.r.writeImage(ctx, cf, layers)
	if err != nil {
		return err
	}
	if err := b.r.store.UpdateRefs(ctx, func(refs map[string]string) error {
		refs[intermediatePrefix+img.Digest] = img.Digest
		return nil
	}); err != nil {
		return err
	}
	if key != "" {
		p := b.cachePath(key)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := store.WriteFileAtomic(p, []byte(img.ID+"\n"), 0o600); err != nil {
			return err
		}
	}
	full, err := b.r.imageFromStore(img.Digest, nil)
	if err != nil {
		return err
	}
	s.img, s.cf, s.dirty = full, cf, false
	if key != "" {
		s.key = key
	}
	return nil
}

// flush writes pending metadata steps as an image, so that a container can
// run from the state.
func (b *builder) flush(ctx context.Context, s *buildState) error {
	if !s.dirty && s.img != nil {
		return nil
	}
	cf := s.cf.DeepCopy()
	cf.Created = v1.Time{Time: time.Now().UTC()}
	var layers []Layer
	if s.img != nil {
		layers = slices.Clone(s.img.Layers)
	}
	return b.writeState(ctx, s, cf, layers, "")
}

// finish writes the target's state as the built image and tags it. The
// final image is cached under the chain key, so that a fully cached build
// returns the very same image.
func (b *builder) finish(ctx context.Context, s *buildState) (*Image, error) {
	unlock, err := b.r.gcShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	finalKey := stepKey(s.key, "#final", nil, "")
	if s.dirty || s.img == nil {
		if img := b.cached(ctx, finalKey); img != nil {
			if err := s.useCached(img, s.key); err != nil {
				return nil, err
			}
		} else {
			cf := s.cf.DeepCopy()
			cf.Created = v1.Time{Time: time.Now().UTC()}
			if n := len(cf.History); n > 0 {
				cf.Created = cf.History[n-1].Created
			}
			var layers []Layer
			if s.img != nil {
				layers = slices.Clone(s.img.Layers)
			}
			if err := b.writeState(ctx, s, cf, layers, finalKey); err != nil {
				return nil, b.fail(nil, err)
			}
		}
	}
	for _, t := range b.cfg.tags {
		parsed, err := parseRef(t, false)
		if err != nil {
			return nil, err
		}
		if _, ok := parsed.(interface{ TagStr() string }); !ok {
			return nil, fmt.Errorf("%w: cannot tag a build with a digest reference %q", ErrInvalid, t)
		}
		if err := b.r.setRef(ctx, refKey(parsed), s.img.Digest); err != nil {
			return nil, err
		}
	}
	if len(b.cfg.tags) == 0 {
		// An untagged build result lists as <none>, as docker shows it;
		// the steps before it stay hidden.
		d := s.img.Digest
		if err := b.r.store.UpdateRefs(ctx, func(refs map[string]string) error {
			for k, v := range refs {
				if v == d && !strings.HasPrefix(k, intermediatePrefix) {
					return nil
				}
			}
			refs[danglingPrefix+d] = d
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return b.r.Image(ctx, s.img.Digest)
}
