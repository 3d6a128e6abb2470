package berth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/dockerfile"
	"github.com/berth-dev/berth/internal/initproc"
	"github.com/berth-dev/berth/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sync/errgroup"
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
	secrets    map[string]string // id → source file
	epoch      *time.Time
	labels     map[string]string
	network    string // RUN's network where it names none
	extraHosts []string
	pull       bool
	outDir     string
	outTar     io.Writer
	archive    io.Reader // the context as a tar stream
	cacheFrom  []cacheLocation
	cacheTo    []cacheLocation
}

type buildOptionFunc func(*buildSettings)

func (f buildOptionFunc) applyBuild(c *buildSettings) { f(c) }

// WithDockerfile names the Dockerfile (docker build -f); a relative path is
// relative to the context directory. With an archive or empty context
// (contextDir ""), the path is the archive's, read inside it, absolute or
// not. Default: "Dockerfile" in the context.
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

// WithBuildProgress calls fn for every step as it starts, for every line
// a RUN step prints and for every warning (a cache source that could not
// be used; without fn, warnings are not reported), from the goroutine
// that called Build, one event at a time. Events of one stage come in order; stages built in parallel
// interleave theirs. Default: no events.
func WithBuildProgress(fn func(BuildEvent)) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.progress = fn })
}

// WithBuildSecret makes the file at sourcePath the secret id, for RUN
// --mount=type=secret,id=ID (docker build --secret id=ID,src=PATH). The
// file is read when a RUN mounts it; its content reaches neither the image
// nor the build cache. Default: no secrets.
func WithBuildSecret(id, sourcePath string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) {
		if c.secrets == nil {
			c.secrets = map[string]string{}
		}
		c.secrets[id] = sourcePath
	})
}

// WithSourceDateEpoch makes the build reproducible: the image's creation
// time and every history entry's are t, and every file a step adds with a
// later mtime gets t instead, so that two builds of the same context give
// the same image digest (the SOURCE_DATE_EPOCH convention; BuildKit's
// build arg of that name does the same, and Build reads it too). Default:
// the current time, and files keep their mtimes.
func WithSourceDateEpoch(t time.Time) BuildOption {
	return buildOptionFunc(func(c *buildSettings) {
		u := t.UTC().Truncate(time.Second)
		c.epoch = &u
	})
}

// WithBuildLabels sets labels on the built image's configuration (docker
// build --label), over the Dockerfile's LABELs of the same keys; the
// steps before it and their cache are untouched. Default: none.
func WithBuildLabels(labels map[string]string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) {
		if c.labels == nil {
			c.labels = map[string]string{}
		}
		maps.Copy(c.labels, labels)
	})
}

// WithBuildNetwork sets the network of every RUN that names none (docker
// build --network): "default" (a container's default, its bridge
// network), "none" (loopback only) or "host". A RUN's own --network wins.
// The mode is part of a RUN's cache key. Default: "default".
func WithBuildNetwork(mode string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.network = mode })
}

// WithBuildExtraHosts adds "name:ip" lines to the /etc/hosts of every RUN
// (docker build --add-host), as WithExtraHosts does for a container;
// "name:host-gateway" is the host's address on the RUN's network (a RUN
// with --network=none then fails). The lines, as given, are part of a
// RUN's cache key. Default: none.
func WithBuildExtraHosts(hosts ...string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.extraHosts = append(c.extraHosts, hosts...) })
}

// WithBuildPull pulls every image the build names (FROM, COPY --from)
// from its registry even when the store has it (docker build --pull), once
// per reference and build, so that a moved tag is followed; a pull that
// fails fails the build. Default: an image is pulled only when missing.
func WithBuildPull() BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.pull = true })
}

// WithBuildOutputDir also writes the built stage's filesystem into dir
// (docker build --output type=local,dest=DIR), making dir (mode 0700) if
// it is missing: its files, with their modes and times, owned by the
// caller as BuildKit's local exporter writes them, every path resolved
// inside dir. Files already in dir are replaced where the image has the
// same path, and otherwise left, even where a layer deleted that path. If
// writing an output fails, Build returns the image, which is stored, and
// the error. Default: no output but the image.
func WithBuildOutputDir(dir string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.outDir = dir })
}

// WithBuildOutputTar also writes the built stage's filesystem to w as an
// uncompressed tar stream (docker build --output type=tar), names relative
// to its root. Default: no output but the image.
func WithBuildOutputTar(w io.Writer) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.outTar = w })
}

// WithContextArchive builds from a context given as a tar stream, plain or
// compressed with gzip, bzip2 or zstd (docker build - with a tar on
// stdin), instead of a directory: Build's contextDir must be "". The
// archive is unpacked under the root for the build, every name inside
// the context (".." and absolute symlinks cannot reach out of it), and
// removed after it. Entries are unpacked as a layer's are: one named
// .wh.NAME is taken as a whiteout, not a file. Default: the context is
// contextDir.
func WithContextArchive(r io.Reader) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.archive = r })
}

// BuildEvent is one progress report of Build. A step first reports itself
// with Output empty; a RUN step then reports each line it prints with the
// same Step and Output set. A warning (Warning set) belongs to no step.
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
	// Warning, when not empty, is a problem that did not fail the build
	// (a cache source that could not be read), and the other fields are
	// zero: an event of no step.
	Warning string
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
// can reuse it. An empty contextDir is an empty context (docker build -
// with a Dockerfile on stdin: give it with WithDockerfileContent), or the
// archive of WithContextArchive.
//
// Instructions: FROM (an image in the store, pulled when missing; scratch;
// an earlier stage by name or index; ARGs declared before the first FROM,
// and BuildKit's predefined platform ARGs such as TARGETARCH and
// BUILDPLATFORM; --platform only for the host's platform), RUN (shell and
// exec forms and heredocs, in a container attached to the build with the
// step's ENV, ARGs, WORKDIR and USER; --mount=type=cache, bind, tmpfs and
// secret, whose mounts and mount points never reach the layer;
// --network=default, none or host), COPY and ADD of context files, of an
// earlier stage's or of an image's files (--from), and of heredocs
// (wildcards, Docker's directory and trailing-slash rules, destinations
// resolved through the image's symlinks, --chown with ids or names from
// the image's /etc/passwd and /etc/group, --chmod with octal modes,
// --link, --exclude, --parents; ADD extracts a local tar and downloads a
// URL, checked with --checksum), WORKDIR, ENV, ARG, LABEL, EXPOSE, USER,
// VOLUME, ENTRYPOINT, CMD, SHELL, STOPSIGNAL, HEALTHCHECK, MAINTAINER and
// ONBUILD (recorded, and run when the image is a later build's FROM).
// Other instructions and flags fail with ErrUnsupported. Variables are
// substituted by BuildKit's shell lexer. Every context path is resolved
// inside contextDir: a source that climbs out of it is an error; a source
// that is a symlink is followed as if contextDir were / (so never out of
// it), and symlinks below a copied directory are copied as symlinks. A
// WORKDIR's directory is made (owned by the USER) even if no step uses it,
// and a base without PATH gets the default one. .dockerignore in the
// context root (or <Dockerfile>.dockerignore beside the Dockerfile)
// excludes files.
//
// The build cache travels between machines as an OCI image index, in a
// directory or a registry (WithCacheToDir, WithCacheFromDir and their
// registry forms: docker build --cache-to and --cache-from), so that a CI
// machine that starts empty reuses the steps an earlier run built.
//
// Cache mounts live under the root in cache/mounts/, one directory per id,
// kept across builds and programs. Secrets (WithBuildSecret) are copied
// for the step only and are part of neither the image nor the cache key.
//
// Only the stages the target needs are built, each as soon as the stages
// it reads are: independent stages build in parallel, and the first
// failure cancels the rest. A step that makes a layer (RUN, COPY, ADD) is
// cached under a key over its parent, its instruction after substitution,
// the build args it uses and, for COPY, ADD and RUN's bind mounts of the
// context, the content and mode of the files it reads (never their mtime,
// nor the owner: a context's files are root's, as BuildKit receives them,
// so a key is the same on another machine's checkout). With
// SOURCE_DATE_EPOCH (WithSourceDateEpoch, or the build arg), the same
// context gives the same image digest, and the epoch is part of every key.
// Errors about an instruction are *BuildError.
func (r *Runtime) Build(ctx context.Context, contextDir string, opts ...BuildOption) (*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	cfg := buildSettings{dockerfile: "Dockerfile"}
	for _, o := range opts {
		o.applyBuild(&cfg)
	}
	if err := cfg.check(contextDir); err != nil {
		return nil, err
	}
	unlockBuilds, err := r.store.Lock(ctx, buildsLock, false)
	if err != nil {
		return nil, err
	}
	defer unlockBuilds()
	b := &builder{r: r, cfg: cfg, file: cfg.dockerfile, roots: map[string]*lazyRoot{}, pulls: map[string]func() (*Image, error){}}
	var sourcesOnce sync.Once
	var sources []*cacheSource
	b.cacheSources = func(ctx context.Context) []*cacheSource {
		sourcesOnce.Do(func() { sources = b.openCacheSources(ctx) })
		return sources
	}
	defer b.cleanup()
	tempContext := contextDir == ""
	if tempContext {
		// An empty context, or the archive's: unpacked under the root
		// for this build only, so its files' digests are not memoized.
		if contextDir, err = b.unpackContext(ctx); err != nil {
			return nil, err
		}
		b.digests = &fileDigests{}
	} else {
		ctxPath, err := filepath.Abs(contextDir) // names the context's digest memo
		if err != nil {
			return nil, fmt.Errorf("building: opening the context: %w", err)
		}
		b.digests = newFileDigests(r.store.Root(), ctxPath)
	}
	if b.ctxRoot, err = os.OpenRoot(contextDir); err != nil {
		return nil, fmt.Errorf("building: opening the context: %w", err)
	}
	defer b.ctxRoot.Close()
	defer b.digests.save()
	if err := b.setEpoch(); err != nil {
		return nil, err
	}
	var src []byte
	ignoreFile := ""
	if cfg.content != nil {
		src, b.file = []byte(*cfg.content), "Dockerfile"
	} else {
		p := cfg.dockerfile
		if tempContext {
			// The archive's own file, whatever the name says: read
			// inside the context, as BuildKit reads it.
			p = path.Clean("/" + filepath.ToSlash(p))[1:]
			src, err = b.ctxRoot.ReadFile(p)
		} else {
			if !filepath.IsAbs(p) {
				p = filepath.Join(contextDir, p)
			}
			src, err = os.ReadFile(p)
		}
		if err != nil {
			return nil, fmt.Errorf("building: reading the Dockerfile: %w", err)
		}
		ignoreFile = p + ".dockerignore"
	}
	openIgnore := os.Open
	if tempContext {
		openIgnore = b.ctxRoot.Open
	}
	// BuildKit's rule: <Dockerfile>.dockerignore beside the Dockerfile
	// wins over the context's .dockerignore.
	if f, err := openIgnore(ignoreFile); ignoreFile != "" && err == nil {
		b.ignore, err = dockerfile.ParseIgnore(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("building: reading %s: %w", ignoreFile, err)
		}
	} else if b.ignore, err = readIgnore(b.ctxRoot); err != nil {
		return nil, fmt.Errorf("building: reading .dockerignore: %w", err)
	}
	if cfg.progress == nil {
		return b.run(ctx, src)
	}
	// Stages build on their own goroutines; their events reach the
	// caller's through a channel.
	b.events = make(chan BuildEvent, 64)
	var img *Image
	done := make(chan struct{})
	go func() {
		defer close(done)
		img, err = b.run(ctx, src)
		b.closeEvents()
	}()
	for ev := range b.events {
		cfg.progress(ev)
	}
	<-done
	return img, err
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

// builder is the state of one Build call. Stages build concurrently: what
// they share is guarded by mu (and evMu for events).
type builder struct {
	r        *Runtime
	cfg      buildSettings
	ctxRoot  *os.Root
	ignore   *dockerfile.Ignore
	file     string
	escape   rune
	metaArgs map[string]*string // read-only once parsed
	stages   []*buildStage

	mu       sync.Mutex
	steps    int
	roots    map[string]*lazyRoot              // materialized filesystems of stages and images, for --from
	pulls    map[string]func() (*Image, error) // WithBuildPull's, once per reference
	releases []func()
	digests  *fileDigests // content hashes of files COPY read, kept across builds

	cacheSources func(context.Context) []*cacheSource // WithCacheFrom*'s, opened at the first call
	stepImages   map[string]*Image                    // key → the image of a step of this build, for the cache exports

	evMu   sync.Mutex
	events chan BuildEvent // nil without WithBuildProgress
	closed bool
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
	baseName string        // FROM's image or stage, after substitution
	deps     []*buildStage // earlier stages this one reads
	done     chan struct{} // closed once state is final
	state    *buildState
}

// buildState is the image a stage has built so far.
type buildState struct {
	img     *Image
	cf      *v1.ConfigFile
	key     string             // cache chain key
	args    map[string]*string // ARGs in scope
	argSeq  []string           // their names in the order the stage declared them
	cmdSet  bool               // a CMD was set in this stage
	dirty   bool               // cf differs from img (metadata steps not yet written)
	lex     *shell.Lex         // the stage's own: a Lex is not safe for concurrent use
	step    int                // the step being run
	label   string             // the stage's name in events
	runNext bool               // a RUN comes later in the stage
	stage   int                // the index of the stage building it
}

func (b *builder) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range slices.Backward(b.releases) {
		f()
	}
	b.releases = nil
}

// nextStep numbers a step as it starts.
func (b *builder) nextStep() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.steps++
	return b.steps
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

// emit hands ev to the goroutine that called Build; safe from any
// goroutine.
func (b *builder) emit(ev BuildEvent) {
	b.evMu.Lock()
	defer b.evMu.Unlock()
	if b.events != nil && !b.closed {
		b.events <- ev
	}
}

// report emits the start of s's current step.
func (b *builder) report(s *buildState, n *parser.Node, cached bool) {
	if !cached && s.runNext && !initproc.DirectAvailable() {
		// A step that misses the cache makes every later step of its stage
		// miss too (keys chain), so the RUN ahead will start a container:
		// where containers start through a child stage, it can start now,
		// while this step works. (A direct start has none to warm.)
		b.r.prewarm(false)
	}
	b.emit(BuildEvent{Step: s.step, Stage: s.label, Instruction: n.Original, Cached: cached})
}

func (b *builder) closeEvents() {
	b.evMu.Lock()
	defer b.evMu.Unlock()
	if b.events != nil && !b.closed {
		b.closed = true
		close(b.events)
	}
}

func (b *builder) run(ctx context.Context, src []byte) (*Image, error) {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, b.fail(nil, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	b.escape = res.EscapeToken
	b.metaArgs = platformArgs()
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
				if err := b.declareArgs(b.metaArgs, c, b.metaEnv(), shell.NewLex(b.escape)); err != nil {
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
	if err := b.buildStages(ctx, target); err != nil {
		return nil, err
	}
	img, err := b.finish(ctx, target.state)
	if err != nil {
		return nil, err
	}
	return img, errors.Join(b.output(ctx, img), b.exportCache(ctx, img))
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
func (b *builder) declareArgs(scope map[string]*string, c *instructions.ArgCommand, env shell.EnvGetter, lex *shell.Lex) error {
	for _, kv := range c.Args {
		var val *string
		if v, ok := b.cfg.args[kv.Key]; ok {
			val = &v
		} else if kv.Value != nil {
			s, _, err := lex.ProcessWord(*kv.Value, env)
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

// buildStages builds target and the stages it needs, each as soon as the
// stages it reads are built: independent stages build in parallel. The
// first failure cancels the others.
func (b *builder) buildStages(ctx context.Context, target *buildStage) error {
	var needed []*buildStage
	seen := map[*buildStage]bool{}
	var visit func(st *buildStage) error
	visit = func(st *buildStage) error {
		if seen[st] {
			return nil
		}
		seen[st] = true
		if err := b.resolveDeps(st); err != nil {
			return err
		}
		for _, d := range st.deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		st.done = make(chan struct{})
		needed = append(needed, st)
		return nil
	}
	if err := visit(target); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, st := range needed {
		g.Go(func() error {
			for _, d := range st.deps {
				select {
				case <-d.done:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			if err := b.buildStage(gctx, st); err != nil {
				return err
			}
			close(st.done)
			return nil
		})
	}
	return g.Wait()
}

// resolveDeps finds the earlier stages st reads: its FROM, COPY --from and
// RUN --mount from=. A name that is no stage is an image.
func (b *builder) resolveDeps(st *buildStage) error {
	baseName, _, err := shell.NewLex(b.escape).ProcessWord(st.from.BaseName, b.metaEnv())
	if err != nil {
		return b.fail(st.fromNode, err)
	}
	st.baseName = baseName
	add := func(d *buildStage) {
		if !slices.Contains(st.deps, d) {
			st.deps = append(st.deps, d)
		}
	}
	if dep := b.stageByName(baseName); dep != nil && dep.index < st.index && !isDigits(baseName) {
		add(dep)
	}
	for i, inst := range st.cmds {
		var froms []string
		switch c := inst.(type) {
		case *instructions.CopyCommand:
			froms = append(froms, c.From)
		case *instructions.RunCommand:
			for _, m := range instructions.GetMounts(c) {
				froms = append(froms, m.From)
			}
		}
		for _, from := range froms {
			if from == "" {
				continue
			}
			dep := b.stageByName(from)
			if dep == nil {
				continue // an image
			}
			if dep.index >= st.index {
				return b.fail(st.nodes[i], fmt.Errorf("%w: --from=%s names a later stage or this one", ErrInvalid, from))
			}
			add(dep)
		}
	}
	return nil
}

// buildStage builds st; the stages it reads are built.
func (b *builder) buildStage(ctx context.Context, st *buildStage) error {
	fromNode := st.fromNode
	if st.from.Platform != "" {
		p, _, err := shell.NewLex(b.escape).ProcessWord(st.from.Platform, b.metaEnv())
		if err != nil {
			return b.fail(fromNode, err)
		}
		if p != hostPlatform() {
			return b.fail(fromNode, fmt.Errorf("%w: FROM --platform=%s: berth builds for %s only", ErrUnsupported, p, hostPlatform()))
		}
	}
	step := b.nextStep()
	label := b.stageLabel(st)
	b.emit(BuildEvent{Step: step, Stage: label, Instruction: fromNode.Original})
	var state *buildState
	if dep := b.stageByName(st.baseName); dep != nil && slices.Contains(st.deps, dep) {
		state = dep.state.clone()
	} else {
		var err error
		if state, err = b.baseState(ctx, st.baseName); err != nil {
			return b.fail(fromNode, err)
		}
	}
	state.args = map[string]*string{}
	state.argSeq = nil
	state.cmdSet = false
	state.defaultPath()
	state.lex = shell.NewLex(b.escape)
	state.label = label
	state.stage = st.index
	if err := b.onBuild(ctx, st, state); err != nil {
		return b.fail(fromNode, err)
	}
	for i, inst := range st.cmds {
		n := st.nodes[i]
		state.step = b.nextStep()
		state.runNext = slices.ContainsFunc(st.cmds[i+1:], func(c any) bool {
			_, ok := c.(*instructions.RunCommand)
			return ok
		})
		if err := b.step1(ctx, st, state, n, inst); err != nil {
			return b.fail(n, err)
		}
	}
	st.state = state
	return nil
}

// onBuild runs the ONBUILD triggers of the stage's base, as steps of their
// own, and clears them (docker's rule: triggers run once, in the image that
// uses the base).
func (b *builder) onBuild(ctx context.Context, st *buildStage, s *buildState) error {
	triggers := s.cf.Config.OnBuild
	if len(triggers) == 0 {
		return nil
	}
	s.cf.Config.OnBuild = nil
	s.dirty = true
	for _, t := range triggers {
		res, err := parser.Parse(strings.NewReader(t))
		if err != nil {
			return fmt.Errorf("%w: ONBUILD trigger %q: %v", ErrInvalid, t, err)
		}
		for _, n := range res.AST.Children {
			inst, err := instructions.ParseInstruction(n)
			if err != nil {
				return fmt.Errorf("%w: ONBUILD trigger %q: %v", ErrInvalid, t, err)
			}
			if _, ok := inst.(*instructions.Stage); ok {
				return fmt.Errorf("%w: ONBUILD trigger %q: FROM is not allowed", ErrInvalid, t)
			}
			s.step = b.nextStep()
			if err := b.step1(ctx, st, s, n, inst); err != nil {
				return fmt.Errorf("ONBUILD trigger %q: %w", t, err)
			}
		}
	}
	return nil
}

func platformVariant() string {
	if runtime.GOARCH == "arm" {
		return "v7"
	}
	return ""
}

// platformArgs are BuildKit's predefined platform ARGs, in the global
// scope; a stage sees them once it declares them (ARG TARGETARCH). The
// build platform and the target are both the host's.
func platformArgs() map[string]*string {
	args := map[string]*string{}
	set := func(k, v string) { args[k] = &v }
	for _, prefix := range []string{"TARGET", "BUILD"} {
		set(prefix+"PLATFORM", hostPlatform())
		set(prefix+"OS", "linux")
		set(prefix+"ARCH", runtime.GOARCH)
		set(prefix+"VARIANT", platformVariant())
	}
	return args
}

// setEpoch reads SOURCE_DATE_EPOCH from WithSourceDateEpoch or, as
// BuildKit does, from the build arg of that name.
func (b *builder) setEpoch() error {
	if b.cfg.epoch != nil {
		return nil
	}
	v, ok := b.cfg.args["SOURCE_DATE_EPOCH"]
	if !ok || v == "" {
		return nil
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: build arg SOURCE_DATE_EPOCH=%q: want seconds since 1970", ErrInvalid, v)
	}
	t := time.Unix(secs, 0).UTC()
	b.cfg.epoch = &t
	return nil
}

// now is the time images and history entries are created at: the present,
// or SOURCE_DATE_EPOCH.
func (b *builder) now() time.Time {
	if b.cfg.epoch != nil {
		return *b.cfg.epoch
	}
	return time.Now().UTC()
}

// clampTime limits a file's mtime to SOURCE_DATE_EPOCH, when set.
func (b *builder) clampTime(t time.Time) time.Time {
	if e := b.cfg.epoch; e != nil && t.After(*e) {
		return *e
	}
	return t
}

func isDigits(s string) bool { _, err := strconv.Atoi(s); return err == nil }

func (s *buildState) clone() *buildState {
	c := *s
	c.cf = s.cf.DeepCopy()
	c.args = maps.Clone(s.args)
	c.argSeq = slices.Clone(s.argSeq)
	return &c
}

// baseState opens FROM's image, pulling it when the store lacks it, or an
// empty one for scratch.
func (b *builder) baseState(ctx context.Context, ref string) (*buildState, error) {
	if strings.EqualFold(ref, "scratch") {
		// BuildKit's empty image: its working directory is "/".
		cf := &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, RootFS: v1.RootFS{Type: "layers"}, Config: v1.Config{WorkingDir: "/"}}
		// An image's ID carries its platform; scratch's key must too, or
		// a cache shared by machines of two architectures would give one
		// the other's images.
		return &buildState{cf: cf, key: b.baseKey("scratch " + hostPlatform()), dirty: true}, nil
	}
	img, err := b.image(ctx, ref)
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(img.rawConfig))
	if err != nil {
		return nil, err
	}
	return &buildState{img: img, cf: cf, key: b.baseKey(img.ID)}, nil
}

// baseKey is the cache key a stage's steps chain onto: its base's, and
// SOURCE_DATE_EPOCH when set, which changes what every step makes (file
// times, history), so that a reproducible build never takes a step made
// without it, here or from an imported cache. Without an epoch the key
// is the base's alone, as it always was.
func (b *builder) baseKey(base string) string {
	if b.cfg.epoch == nil {
		return base
	}
	return stepKey(base, "#source-date-epoch", []string{strconv.FormatInt(b.cfg.epoch.Unix(), 10)}, "")
}

// defaultPath gives a stage whose base has no PATH the default one, at the
// end of its Env, as BuildKit does (scratch included). The key changes with
// it, so that no step cached without the PATH is reused.
func (s *buildState) defaultPath() {
	if _, ok := shell.EnvsFromSlice(s.cf.Config.Env).Get("PATH"); ok {
		return
	}
	s.cf.Config.Env = append(s.cf.Config.Env, "PATH="+defaultPath)
	s.key = stepKey(s.key, "#default-path", nil, "")
	s.dirty = true
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
	used := map[string]struct{}{}
	envGetter := shell.EnvsFromSlice(s.env())
	expand := func(word string) (string, error) {
		res, err := s.lex.ProcessWordWithMatches(word, envGetter)
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
	if ex, ok := inst.(instructions.SupportsSingleWordExpansionRaw); ok {
		// Heredoc files with an unquoted delimiter: BuildKit expands
		// variables and leaves quotes alone.
		raw := shell.NewLex(b.escape)
		raw.SkipProcessQuotes = true
		if err := ex.ExpandRaw(func(word string) (string, error) {
			res, err := raw.ProcessWordWithMatches(word, envGetter)
			for k := range res.Matched {
				used[k] = struct{}{}
			}
			return res.Result, err
		}); err != nil {
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
		b.report(s, n, false)
		if err := b.declareArgs(s.args, c, envGetter, s.lex); err != nil {
			return err
		}
		var vals []string
		for _, kv := range c.Args {
			if v := s.args[kv.Key]; v != nil {
				vals = append(vals, kv.Key+"="+*v)
			} else {
				vals = append(vals, kv.Key)
			}
			if !slices.Contains(s.argSeq, kv.Key) {
				s.argSeq = append(s.argSeq, kv.Key)
			}
		}
		s.key = stepKey(s.key, n.Original, vals, "")
		b.addHistory(s, "ARG "+strings.Join(vals, " "))
		return nil
	case *instructions.RunCommand:
		return b.runStep(ctx, s, n, c)
	case *instructions.CopyCommand:
		return b.copyStep(ctx, s, n, copySpec{
			SourcesAndDest: c.SourcesAndDest, from: c.From, chown: c.Chown, chmod: c.Chmod,
			link: c.Link, exclude: c.ExcludePatterns, parents: c.Parents,
		}, usedArgs)
	case *instructions.AddCommand:
		if c.KeepGitDir != nil {
			return fmt.Errorf("%w: ADD --keep-git-dir (git sources)", ErrUnsupported)
		}
		return b.copyStep(ctx, s, n, copySpec{
			SourcesAndDest: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod,
			link: c.Link, exclude: c.ExcludePatterns, isAdd: true, checksum: c.Checksum, unpack: c.Unpack,
		}, usedArgs)
	case *instructions.ShellCommand:
		s.cf.Config.Shell = slices.Clone(c.Shell)
	case *instructions.MaintainerCommand:
		s.cf.Author = c.Maintainer
	case *instructions.HealthCheckCommand:
		// Recorded in the image config as docker does; containers run it.
		h := c.Health
		if h == nil {
			return fmt.Errorf("%w: HEALTHCHECK without a command", ErrInvalid)
		}
		s.cf.Config.Healthcheck = &v1.HealthConfig{
			Test: slices.Clone(h.Test), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
	default:
		if err := applyChange(&s.cf.Config, inst, s.lex, envGetter, &s.cmdSet); err != nil {
			if strings.HasPrefix(err.Error(), "instruction ") {
				return fmt.Errorf("%w: %v", ErrUnsupported, err)
			}
			return err
		}
	}
	if _, ok := inst.(*instructions.WorkdirCommand); ok {
		return b.workdirStep(ctx, s, n, keyText(n, expand), usedArgs())
	}
	// A metadata step: an empty layer and a history entry in BuildKit's
	// form (ONBUILD gets none). The key holds the words after substitution,
	// quoted: history text can be ambiguous (ENV A=1 B=2 and ENV A="1 B=2").
	b.report(s, n, false)
	s.key = stepKey(s.key, keyText(n, expand), usedArgs(), "")
	s.dirty = true
	if createdBy, ok := metadataHistory(inst, &s.cf.Config, s.lex, envGetter); ok {
		b.addHistory(s, createdBy)
	}
	return nil
}

// addHistory records a step that made no layer.
func (b *builder) addHistory(s *buildState, createdBy string) {
	s.cf.History = append(s.cf.History, v1.History{
		Created:    v1.Time{Time: b.now()},
		CreatedBy:  createdBy,
		EmptyLayer: true,
	})
	s.dirty = true
}

// metadataHistory is the created_by BuildKit writes for an instruction
// that only changes the config, given the config after it (docker 20.10's
// BuildKit for HEALTHCHECK and EXPOSE, whose text later versions changed:
// the conformance goldens were made with it). ONBUILD has no entry.
func metadataHistory(inst any, cfg *v1.Config, lex *shell.Lex, env shell.EnvGetter) (string, bool) {
	switch c := inst.(type) {
	case *instructions.EnvCommand:
		return "ENV " + joinPairs(c.Env), true
	case *instructions.LabelCommand:
		return "LABEL " + joinPairs(c.Labels), true
	case *instructions.ExposeCommand:
		ports := map[string]struct{}{}
		for _, p := range c.Ports {
			words, _ := lex.ProcessWords(p, env)
			for _, w := range words {
				ps, _ := exposedPorts(w)
				for _, port := range ps {
					ports[port] = struct{}{}
				}
			}
		}
		return fmt.Sprintf("EXPOSE %v", ports), true
	case *instructions.VolumeCommand:
		return fmt.Sprintf("VOLUME %v", c.Volumes), true
	case *instructions.ShellCommand:
		return fmt.Sprintf("SHELL %v", c.Shell), true
	case *instructions.UserCommand:
		return "USER " + c.User, true
	case *instructions.StopSignalCommand:
		return "STOPSIGNAL " + c.Signal, true
	case *instructions.MaintainerCommand:
		return "MAINTAINER " + c.Maintainer, true
	case *instructions.EntrypointCommand:
		return fmt.Sprintf("ENTRYPOINT %q", cfg.Entrypoint), true
	case *instructions.CmdCommand:
		return fmt.Sprintf("CMD %q", cfg.Cmd), true
	case *instructions.HealthCheckCommand:
		// Docker's *HealthConfig printed with %q, as docker 20.10 wrote it.
		h := cfg.Healthcheck
		return fmt.Sprintf("HEALTHCHECK &{%q %q %q %q %q}", h.Test, h.Interval.String(), h.Timeout.String(), h.StartPeriod.String(), rune(h.Retries)), true
	case *instructions.OnbuildCommand:
		return "", false
	}
	return fmt.Sprintf("%v", inst), true
}

func joinPairs(kvs instructions.KeyValuePairs) string {
	words := make([]string, len(kvs))
	for i, kv := range kvs {
		words[i] = kv.Key + "=" + kv.Value
	}
	return strings.Join(words, " ")
}

// keyText is an instruction for a cache key: its name, flags and words
// after substitution, each quoted.
func keyText(n *parser.Node, expand func(string) (string, error)) string {
	words := append(slices.Clone(n.Flags), "--")
	for a := n.Next; a != nil; a = a.Next {
		w, err := expand(a.Value)
		if err != nil {
			w = a.Value
		}
		words = append(words, w)
	}
	return fmt.Sprintf("%s json=%v %s", strings.ToUpper(n.Value), n.Attributes["json"], quoteJoin(words))
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
// is still in the store, or else the image a cache source has for it
// (importCached).
func (b *builder) cached(ctx context.Context, key string) *Image {
	if b.cfg.noCache {
		return nil
	}
	img := b.localCached(ctx, key)
	if img == nil {
		img = b.importCached(ctx, key)
	}
	b.recordStep(key, img)
	return img
}

func (b *builder) localCached(ctx context.Context, key string) *Image {
	id, err := os.ReadFile(b.cachePath(key))
	if err != nil {
		return nil
	}
	// The entry is the cached image's manifest digest; entries written
	// before it was are its ID, which Image resolves. Anything else (an
	// entry a crash left torn: they are not forced to disk) is a miss,
	// never a prefix Image would match to some other image.
	d := strings.TrimSpace(string(id))
	if _, err := store.ValidateDigest(d); err != nil {
		return nil
	}
	if b.r.store.Has(d) {
		if img, err := b.r.imageFromStore(d, nil); err == nil {
			return img
		}
	}
	img, err := b.r.Image(ctx, d)
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
	now := b.now()
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
	full, err := b.keepStep(img.Digest, key)
	if err != nil {
		return err
	}
	s.img, s.cf, s.dirty = full, cf, false
	if key != "" {
		s.key = key
		b.recordStep(key, full)
	}
	return nil
}

// keepStep keeps the image with manifest digest d for the build cache (a
// store root, which Prune leaves) under key, when there is one, and
// returns it as the store has it.
func (b *builder) keepStep(d, key string) (*Image, error) {
	if err := b.r.store.AddRoot(d); err != nil {
		return nil, err
	}
	if key != "" {
		if err := store.WriteCacheFile(b.cachePath(key), []byte(d+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	return b.r.imageFromStore(d, nil)
}

// flush writes pending metadata steps as an image, so that a container can
// run from the state.
func (b *builder) flush(ctx context.Context, s *buildState) error {
	if !s.dirty && s.img != nil {
		return nil
	}
	cf := s.cf.DeepCopy()
	cf.Created = v1.Time{Time: b.now()}
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
	finalKey := stepKey(s.key, "#final", b.cfg.labelKey(), "")
	if len(b.cfg.labels) > 0 {
		// Pending metadata, as a LABEL step's, over the Dockerfile's.
		cf := s.cf.DeepCopy()
		if cf.Config.Labels == nil {
			cf.Config.Labels = map[string]string{}
		}
		maps.Copy(cf.Config.Labels, b.cfg.labels)
		s.cf, s.dirty = cf, true
	}
	if s.dirty || s.img == nil {
		if img := b.cached(ctx, finalKey); img != nil {
			if err := s.useCached(img, s.key); err != nil {
				return nil, err
			}
		} else {
			cf := s.cf.DeepCopy()
			cf.Created = v1.Time{Time: b.now()}
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
		if !isTag(parsed) {
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
