package berth

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/dockerfile"
	"github.com/berth-dev/berth/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sys/unix"
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

// runStep runs a RUN instruction in a container from the current state and
// makes its filesystem changes the step's layer.
func (b *builder) runStep(ctx context.Context, label string, s *buildState, n *parser.Node, c *instructions.RunCommand) error {
	if len(c.Files) > 0 || len(c.FlagsUsed) > 0 {
		return fmt.Errorf("%w: RUN heredocs and flags (%s)", ErrUnsupported, strings.Join(c.FlagsUsed, ", "))
	}
	args := c.CmdLine
	if c.PrependShell {
		sh := s.cf.Config.Shell
		if len(sh) == 0 {
			sh = []string{"/bin/sh", "-c"}
		}
		args = append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
	}
	// The ARGs in scope are the RUN's environment, and so part of its key.
	var argEnv []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		if v := s.args[k]; v != nil && !hasEnv(s.cf.Config.Env, k) {
			argEnv = append(argEnv, k+"="+*v)
		}
	}
	createdBy := "RUN " + strings.Join(args, " ")
	if !c.PrependShell {
		createdBy = "RUN [" + quoteJoin(args) + "]"
	}
	key := stepKey(s.key, createdBy, argEnv, "")
	if img := b.cached(ctx, key); img != nil {
		b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original, Cached: true})
		return s.useCached(img, key)
	}
	b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original})
	if err := b.flush(ctx, s); err != nil {
		return err
	}
	out := &lineWriter{emit: func(line string) {
		b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original, Output: line})
	}}
	// Lines reach emit from the container's output goroutines; they are
	// queued and emitted here, on the caller's goroutine.
	ctr, err := b.r.Run(ctx, s.img.ID, &Process{Args: args, Env: argEnv, Stdout: out, Stderr: out}, WithEntrypoint())
	if err != nil {
		out.drain()
		return err
	}
	defer ctr.Remove(context.WithoutCancel(ctx), WithForce())
	done := make(chan error, 1)
	go func() { done <- ctr.Wait(ctx) }()
	var werr error
wait:
	for {
		select {
		case werr = <-done:
			break wait
		case <-out.ready:
			out.drain()
		}
	}
	out.flush()
	out.drain()
	if werr != nil {
		tail := out.tail()
		var ee *ExitError
		if errors.As(werr, &ee) {
			return fmt.Errorf("process %q did not complete successfully: exit code: %d: %w\n%s", strings.Join(args, " "), ee.Code, werr, strings.Join(tail, "\n"))
		}
		return werr
	}
	rec, err := b.r.currentRecord(ctr.ID)
	if err != nil {
		return err
	}
	unlock, err := b.r.gcShared(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	parentDiffIDs := make([]string, len(s.img.Layers))
	for i, l := range s.img.Layers {
		parentDiffIDs[i] = l.DiffID
	}
	diffID, size, err := ctr.diff(ctx, rec, false, parentDiffIDs)
	if err != nil {
		return err
	}
	return b.commitLayer(ctx, s, key, diffID, size, createdBy)
}

// lineWriter splits a process's output into lines for BuildEvents, and
// keeps the last lines for an error.
type lineWriter struct {
	emit    func(string)
	mu      sync.Mutex
	partial []byte
	queue   []string
	last    []string
	ready   chan struct{}
	once    sync.Once
}

func (w *lineWriter) init() { w.once.Do(func() { w.ready = make(chan struct{}, 1) }) }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.init()
	w.mu.Lock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.push(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *lineWriter) push(line string) {
	w.queue = append(w.queue, line)
	w.last = append(w.last, line)
	if len(w.last) > runOutputTail {
		w.last = w.last[len(w.last)-runOutputTail:]
	}
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.push(string(w.partial))
		w.partial = nil
	}
}

func (w *lineWriter) drain() {
	w.init()
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, l := range q {
		w.emit(l)
	}
}

func (w *lineWriter) tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.last)
}

// copyEntry is one file COPY or ADD writes into the layer.
type copyEntry struct {
	hdr  *tar.Header
	root *os.Root // where content is read, for regular files
	src  string   // path in root
}

// copyStep runs COPY or ADD: the layer is a tar of the sources, written
// directly, with no container.
func (b *builder) copyStep(ctx context.Context, label string, s *buildState, n *parser.Node, sd instructions.SourcesAndDest, from, chown, chmod string, isAdd bool, usedArgs func() []string) error {
	root, ignore, srcKind := b.ctxRoot, b.ignore, "dir"
	if from != "" {
		dep := b.stageByName(from)
		if dep == nil {
			return fmt.Errorf("%w: COPY --from=%s: only earlier stages are supported", ErrUnsupported, from)
		}
		dir, err := b.stageRoot(ctx, dep)
		if err != nil {
			return err
		}
		if root, err = os.OpenRoot(dir); err != nil {
			return err
		}
		defer root.Close()
		ignore = nil
	}
	uid, gid, err := parseChown(chown)
	if err != nil {
		return err
	}
	var mode *fs.FileMode
	if chmod != "" {
		m, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("%w: --chmod=%s: only octal modes are supported", ErrUnsupported, chmod)
		}
		fm := fs.FileMode(m)
		mode = &fm
	}
	dest := sd.DestPath
	destDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.") || len(sd.SourcePaths) > 1
	if !path.IsAbs(dest) {
		wd := s.cf.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	dest = strings.TrimPrefix(path.Clean(dest), "/")
	// Docker's rule: a destination that is a directory in the image is
	// copied into, trailing slash or not.
	if !destDir && (dest == "" || b.r.isDirInImage(s.img, dest)) {
		destDir = true
	}

	var entries []copyEntry
	var tars []copyEntry // ADD: local archives to extract
	seen := map[string]bool{}
	add := func(e copyEntry) {
		if !seen[e.hdr.Name] {
			seen[e.hdr.Name] = true
			entries = append(entries, e)
		}
	}
	for _, p := range parentDirs(dest, destDir) {
		add(copyEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}})
	}
	for _, src := range sd.SourcePaths {
		if strings.Contains(src, "://") {
			return fmt.Errorf("%w: %s of a URL", ErrUnsupported, strings.ToUpper(n.Value))
		}
		clean := path.Clean(src)
		if path.IsAbs(clean) {
			clean = "." + clean // a source is always relative to the context (or stage) root
			clean = path.Clean(clean)
		}
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("%w: %s: forbidden path outside the build context", ErrInvalid, src)
		}
		matches, err := globRoot(root, clean, ignore)
		if err != nil {
			return err
		}
		if len(matches) == 0 {
			return fmt.Errorf("%w: %s: no source files were specified or all were excluded", ErrNotFound, src)
		}
		multi := len(matches) > 1 || strings.ContainsAny(clean, "*?[")
		for _, m := range matches {
			fi, err := root.Lstat(m)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				// A directory's contents are copied, not the directory.
				if dest != "" {
					add(copyEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: dest + "/", Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}})
				}
				err = walkRoot(root, m, ignore, func(rel string, fi fs.FileInfo) error {
					sub := rel
					if m != "." {
						sub = strings.TrimPrefix(rel, m+"/")
					}
					e, err := entryFor(root, rel, path.Join(dest, sub), fi, uid, gid, mode)
					if err == nil && e.hdr != nil {
						add(e)
					}
					return err
				})
				if err != nil {
					return err
				}
				continue
			}
			target := dest
			if destDir || multi {
				target = path.Join(dest, path.Base(m))
			}
			e, err := entryFor(root, m, target, fi, uid, gid, mode)
			if err != nil {
				return err
			}
			if e.hdr == nil {
				continue
			}
			if isAdd && fi.Mode().IsRegular() && isTarFile(root, m) {
				e.hdr.Name = dest
				tars = append(tars, e)
				continue
			}
			add(e)
			if len(sd.SourcePaths) == 1 && len(matches) == 1 && fi.Mode().IsRegular() {
				srcKind = "file"
			}
		}
	}
	// The layer is written to a temp file while its content key is hashed:
	// headers without mtime, then bytes.
	tmpDir, release, err := b.r.store.TempDir("build-")
	if err != nil {
		return err
	}
	defer release()
	f, err := os.Create(filepath.Join(tmpDir, "layer.tar"))
	if err != nil {
		return err
	}
	defer f.Close()
	content := sha256.New()
	if err := writeCopyLayer(f, content, entries, tars, dest); err != nil {
		return err
	}
	contentKey := hex.EncodeToString(content.Sum(nil))
	text := expandedText(n, func(w string) (string, error) { return w, nil })
	key := stepKey(s.key, text+"\n"+chown+"\n"+chmod+"\n"+sd.DestPath+"\n"+strings.Join(sd.SourcePaths, "\n"), usedArgs(), contentKey)
	if img := b.cached(ctx, key); img != nil {
		b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original, Cached: true})
		return s.useCached(img, key)
	}
	b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original})
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	unlock, err := b.r.gcShared(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	diffID, size, err := b.r.store.Ingest(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return err
	}
	if s.img == nil || s.dirty {
		if err := b.flush(ctx, s); err != nil {
			return err
		}
	}
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s %s:%s in /%s", strings.ToUpper(n.Value), srcKind, contentKey, dest)
	if destDir && !strings.HasSuffix(createdBy, "/") {
		createdBy += "/"
	}
	return b.commitLayer(ctx, s, key, diffID, size, createdBy)
}

// parentDirs lists dest's ancestors (and dest itself when it is a
// directory) that the layer creates, top down.
func parentDirs(dest string, destIsDir bool) []string {
	var out []string
	d := dest
	if !destIsDir {
		d = path.Dir(dest)
	}
	for ; d != "." && d != "" && d != "/"; d = path.Dir(d) {
		out = append(out, d)
	}
	slices.Reverse(out)
	return out
}

func parseChown(spec string) (uid, gid int, err error) {
	if spec == "" {
		return -1, -1, nil
	}
	u, g, hasG := strings.Cut(spec, ":")
	if uid, err = strconv.Atoi(u); err != nil {
		if u != "root" {
			return 0, 0, fmt.Errorf("%w: --chown=%s: only numeric ids (and root) are supported", ErrUnsupported, spec)
		}
		uid = 0
	}
	gid = uid
	if hasG {
		if gid, err = strconv.Atoi(g); err != nil {
			if g != "root" {
				return 0, 0, fmt.Errorf("%w: --chown=%s: only numeric ids (and root) are supported", ErrUnsupported, spec)
			}
			gid = 0
		}
	}
	return uid, gid, nil
}

// entryFor is the layer entry for the file rel of root at target.
func entryFor(root *os.Root, rel, target string, fi fs.FileInfo, uid, gid int, mode *fs.FileMode) (copyEntry, error) {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return copyEntry{}, err
	}
	hdr.Name = target
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.ModTime = fi.ModTime().Truncate(time.Second)
	hdr.Format = tar.FormatPAX
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	}
	// Docker gives copied files root ownership unless --chown.
	hdr.Uid, hdr.Gid = 0, 0
	if uid >= 0 {
		hdr.Uid, hdr.Gid = uid, gid
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if hdr.Linkname, err = root.Readlink(rel); err != nil {
			return copyEntry{}, err
		}
	case fi.IsDir():
		hdr.Name += "/"
	case fi.Mode().IsRegular():
	default:
		return copyEntry{}, nil // sockets, devices, fifos: left out, as docker does for a context
	}
	if mode != nil && fi.Mode()&fs.ModeSymlink == 0 {
		hdr.Mode = int64(*mode)
	}
	return copyEntry{hdr: hdr, root: root, src: rel}, nil
}

// globRoot expands a source path with wildcards inside root, element by
// element, without following symlinks. A path without wildcards is
// returned as is if it exists.
func globRoot(root *os.Root, pattern string, ignore *dockerfile.Ignore) ([]string, error) {
	if !strings.ContainsAny(pattern, "*?[\\") {
		if _, err := root.Lstat(pattern); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: %w", pattern, err)
		}
		if pattern != "." && ignore.Excluded(pattern) {
			return nil, nil
		}
		return []string{pattern}, nil
	}
	cur := []string{"."}
	for _, elem := range strings.Split(pattern, "/") {
		var next []string
		for _, dir := range cur {
			if !strings.ContainsAny(elem, "*?[\\") {
				p := path.Join(dir, elem)
				if _, err := root.Lstat(p); err == nil {
					next = append(next, p)
				}
				continue
			}
			fi, err := root.Lstat(dir)
			if err != nil || !fi.IsDir() {
				continue
			}
			names, err := rootDirNames(root, dir)
			if err != nil {
				return nil, err
			}
			for _, name := range names {
				ok, err := path.Match(elem, name)
				if err != nil {
					return nil, fmt.Errorf("%w: bad pattern %q", ErrInvalid, pattern)
				}
				if ok {
					next = append(next, path.Join(dir, name))
				}
			}
		}
		cur = next
	}
	var out []string
	for _, p := range cur {
		if !ignore.Excluded(p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func rootDirNames(root *os.Root, dir string) ([]string, error) {
	d, err := root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// walkRoot calls fn for dir's descendants (not dir itself), sorted, depth
// first, skipping excluded paths and never following symlinks.
func walkRoot(root *os.Root, dir string, ignore *dockerfile.Ignore, fn func(rel string, fi fs.FileInfo) error) error {
	names, err := rootDirNames(root, dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		rel := path.Join(dir, name)
		fi, err := root.Lstat(rel)
		if err != nil {
			return err
		}
		excluded := ignore.Excluded(rel)
		if !excluded {
			if err := fn(rel, fi); err != nil {
				return err
			}
		}
		if fi.IsDir() && (!excluded || ignore.MayReinclude()) {
			if err := walkRoot(root, rel, ignore, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// isTarFile reports whether a file is a (possibly compressed) tar, which
// ADD extracts.
func isTarFile(root *os.Root, rel string) bool {
	f, err := root.Open(rel)
	if err != nil {
		return false
	}
	defer f.Close()
	rd, err := archive.Decompress(bufio.NewReader(f))
	if err != nil {
		return false
	}
	defer rd.Close()
	_, err = tar.NewReader(rd).Next()
	return err == nil
}

// writeCopyLayer writes the layer tar of a COPY or ADD to w and hashes into
// content what the cache key covers: every header but its times, and every
// byte of content.
func writeCopyLayer(w io.Writer, content hash.Hash, entries, tars []copyEntry, dest string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	buf := make([]byte, 1<<20)
	keyHeader := func(h *tar.Header) {
		fmt.Fprintf(content, "%q %c %o %d %d %q %d\n", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, h.Size)
	}
	for _, e := range entries {
		keyHeader(e.hdr)
		if err := tw.WriteHeader(e.hdr); err != nil {
			return err
		}
		if e.hdr.Typeflag != tar.TypeReg {
			continue
		}
		f, err := e.root.Open(e.src)
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(io.MultiWriter(tw, content), io.LimitReader(f, e.hdr.Size), buf)
		f.Close()
		if err != nil {
			return err
		}
		if n != e.hdr.Size {
			return fmt.Errorf("%s changed size while it was copied", e.src)
		}
	}
	for _, t := range tars {
		if err := extractArchiveInto(tw, t, content, buf); err != nil {
			return fmt.Errorf("extracting %s: %w", t.src, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// extractArchiveInto copies the entries of a local archive into the layer under
// the ADD's destination directory, as ADD extracts it.
func extractArchiveInto(tw *tar.Writer, t copyEntry, content hash.Hash, buf []byte) error {
	f, err := t.root.Open(t.src)
	if err != nil {
		return err
	}
	defer f.Close()
	rd, err := archive.Decompress(bufio.NewReader(f))
	if err != nil {
		return err
	}
	defer rd.Close()
	tr := tar.NewReader(rd)
	dest := strings.TrimSuffix(t.hdr.Name, "/")
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		isDir := hdr.Typeflag == tar.TypeDir
		hdr.Name = path.Join(dest, name)
		if isDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = path.Join(dest, strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/"))
		}
		fmt.Fprintf(content, "%q %c %o %d %d %q %d\n", hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Linkname, hdr.Size)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(io.MultiWriter(tw, content), tr, buf); err != nil {
			return err
		}
	}
}

// stageRoot materializes a built stage's filesystem in a temp directory
// under the root, for COPY --from, by applying its layers in order.
func (b *builder) stageRoot(ctx context.Context, st *buildStage) (string, error) {
	if dir, ok := b.stageRoots[st.index]; ok {
		return dir, nil
	}
	tmp, release, err := b.r.store.TempDir("build-stage-")
	if err != nil {
		return "", err
	}
	b.releases = append(b.releases, release)
	dir := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if st.state.img != nil {
		for _, l := range st.state.img.Layers {
			f, err := b.r.store.Open(l.Digest)
			if err != nil {
				return "", err
			}
			rd, err := archive.Decompress(bufio.NewReaderSize(f, 1<<20))
			if err != nil {
				f.Close()
				return "", err
			}
			_, err = archive.Apply(ctx, dir, rd, b.r.applyOptions())
			rd.Close()
			f.Close()
			if err != nil {
				return "", err
			}
		}
	}
	b.stageRoots[st.index] = dir
	return dir, nil
}

// isDirInImage reports whether rel (slash-separated, relative to /) is a
// directory in img's merged filesystem, reading its layers as overlayfs
// merges them (whiteouts and opaque directories respected, no symlink
// followed).
func (r *Runtime) isDirInImage(img *Image, rel string) bool {
	if img == nil {
		return false
	}
	d := &differ{}
	defer d.close()
	for i := len(img.Layers) - 1; i >= 0; i-- {
		dir, err := r.snaps.FS(img.Layers[i].ChainID)
		if err != nil {
			return false
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		d.lowers = append(d.lowers, fd)
	}
	st, ok := d.lowerStat(rel)
	return ok && st.Mode&unix.S_IFMT == unix.S_IFDIR
}
