package berth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sys/unix"
)

// heredocDir is where a RUN heredoc with a shebang is mounted to be run,
// as BuildKit mounts it.
const heredocDir = "/dev/pipes"

// runStep runs a RUN instruction in a container from the current state and
// makes its filesystem changes the step's layer. Its --mount mounts are
// made for the one container and never reach the layer.
func (b *builder) runStep(ctx context.Context, s *buildState, n *parser.Node, c *instructions.RunCommand) error {
	if devs := instructions.GetDevices(c); len(devs) > 0 {
		return fmt.Errorf("%w: RUN --device", ErrUnsupported)
	}
	if sec := instructions.GetSecurity(c); sec == instructions.SecurityInsecure {
		return fmt.Errorf("%w: RUN --security=insecure", ErrUnsupported)
	}
	network := b.runNetworkMode(instructions.GetNetwork(c))
	netOpts, err := runNetwork(network)
	if err != nil {
		return err
	}
	if len(b.cfg.extraHosts) > 0 {
		netOpts = append(netOpts, WithExtraHosts(b.cfg.extraHosts...))
	}
	args, script, err := runArgs(s, c)
	if err != nil {
		return err
	}
	// The ARGs in scope are the RUN's environment, and so part of its key.
	var argEnv []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		if v := s.args[k]; v != nil && !hasEnv(s.cf.Config.Env, k) {
			argEnv = append(argEnv, k+"="+*v)
		}
	}
	createdBy := "RUN " + runHistory(s, args) + " # buildkit"
	rm := &runMounts{b: b, s: s}
	defer rm.release()
	if script != nil {
		if err := rm.addScript(script); err != nil {
			return err
		}
	}
	for _, m := range instructions.GetMounts(c) {
		if err := rm.add(ctx, m); err != nil {
			return err
		}
	}
	keyArgs := append(slices.Clone(argEnv), rm.keys...)
	if network != instructions.NetworkDefault {
		keyArgs = append(keyArgs, "network="+network)
	}
	for _, h := range b.cfg.extraHosts {
		keyArgs = append(keyArgs, "add-host="+h)
	}
	key := stepKey(s.key, "RUN "+quoteJoin(args), keyArgs, "")
	if img := b.cached(ctx, key); img != nil {
		b.report(s, n, true)
		return s.useCached(img, key)
	}
	b.report(s, n, false)
	// The state the container runs from is written as an image under the
	// gc lock, as writeImage needs: a Prune between its manifest and its
	// root deleted the one and left the other, and every later Prune
	// failed on it.
	unlockGC, err := b.r.gcShared(ctx)
	if err != nil {
		return err
	}
	err = b.flush(ctx, s)
	unlockGC()
	if err != nil {
		return err
	}
	if err := rm.lock(ctx); err != nil {
		return err
	}
	step := s.step
	out := &lineWriter{emit: func(line string) {
		b.emit(BuildEvent{Step: step, Stage: s.label, Instruction: n.Original, Output: line})
	}}
	// BuildKit's RUN ignores VOLUME: what it writes below a volume's path
	// is kept, and no mount point is left in its layer.
	opts := append([]RunOption{WithEntrypoint(), WithMounts(rm.mounts...), withoutImageVolumes(), withBuildKitGroups()}, netOpts...)
	env := append(append(argEnv, b.proxyEnv(s)...), rm.env...)
	ctr, err := b.r.Run(ctx, s.img.Digest, &Process{Args: args, Env: env, Stdout: out, Stderr: out}, opts...)
	if err != nil {
		return err
	}
	defer ctr.Remove(context.WithoutCancel(ctx), WithForce())
	werr := ctr.Wait(ctx)
	out.flush()
	if werr != nil {
		tail := out.tail()
		var ee *ExitError
		if errors.As(werr, &ee) {
			return fmt.Errorf("process %q did not complete successfully: exit code: %d: %w\n%s", strings.Join(args, " "), ee.Code, werr, strings.Join(tail, "\n"))
		}
		return werr
	}
	rm.release() // cache mounts unlocked before the diff
	rec, err := b.r.currentRecord(ctr.ID)
	if err != nil {
		return err
	}
	upper := filepath.Join(b.r.containerDir(ctr.ID), "upper")
	if err := rm.removeStubs(upper); err != nil {
		return err
	}
	if err := b.clampTree(upper); err != nil {
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

// runHistory is a RUN's command line as BuildKit's history shows it: the
// words joined, after "|N K=V..." naming the ARGs the stage declared (in
// order, each once, with ENV's value where an ENV of the name wins).
func runHistory(s *buildState, args []string) string {
	env := shell.EnvsFromSlice(s.env())
	var pairs []string
	for _, k := range s.argSeq {
		v, ok := env.Get(k)
		if !ok && s.args[k] != nil {
			v = *s.args[k]
		}
		pairs = append(pairs, k+"="+v)
	}
	if len(pairs) > 0 {
		pairs = append([]string{fmt.Sprintf("|%d", len(pairs))}, pairs...)
	}
	return strings.Join(append(pairs, args...), " ")
}

// runArgs is the command line of a RUN: the exec form as written, the shell
// form after the stage's SHELL, heredocs as BuildKit runs them. A single
// heredoc that makes the whole command is the shell's script, or, when it
// starts with a shebang, a file run from heredocDir (returned as script);
// other heredocs are handed to the shell with the command line, which reads
// them itself.
func runArgs(s *buildState, c *instructions.RunCommand) (args []string, script *instructions.ShellInlineFile, err error) {
	if !c.PrependShell {
		return c.CmdLine, nil, nil
	}
	sh := shellOf(s.cf.Config.Shell)
	cmd := strings.Join(c.CmdLine, " ")
	if len(c.Files) > 0 {
		if len(c.CmdLine) != 1 {
			return nil, nil, fmt.Errorf("%w: RUN with heredocs: unexpected command line %q", ErrInvalid, c.CmdLine)
		}
		if parser.MustParseHeredoc(cmd) != nil {
			f := c.Files[0]
			if f.Chomp {
				f.Data = parser.ChompHeredocContent(f.Data)
			}
			if strings.HasPrefix(f.Data, "#!") {
				return append(slices.Clone(sh), path.Join(heredocDir, f.Name)), &f, nil
			}
			cmd = f.Data
		} else {
			for _, f := range c.Files {
				cmd += "\n" + f.Data + f.Name
			}
		}
	}
	return append(slices.Clone(sh), cmd), nil, nil
}

// runMounts are the mounts of one RUN, prepared on the host: what they
// need from the root (temp copies, cache directories, locks) is released
// by release.
type runMounts struct {
	b        *builder
	s        *buildState
	mounts   []Mount
	env      []string // secrets given as environment variables
	keys     []string // what the cache key covers of each mount
	locks    []string // cache directories locked for the run (sharing=locked)
	releases []func()
}

func (rm *runMounts) release() {
	for _, f := range slices.Backward(rm.releases) {
		f()
	}
	rm.releases = nil
}

// tempDir is a directory under the root's temp space, removed by release.
func (rm *runMounts) tempDir() (string, error) {
	dir, release, err := rm.b.r.store.TempDir("build-mount-")
	if err != nil {
		return "", err
	}
	rm.releases = append(rm.releases, release)
	return dir, nil
}

func (rm *runMounts) target(t string) string {
	if !path.IsAbs(t) {
		wd := rm.s.cf.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		t = path.Join(wd, t)
	}
	return path.Clean(t)
}

func (rm *runMounts) addScript(f *instructions.ShellInlineFile) error {
	dir, err := rm.tempDir()
	if err != nil {
		return err
	}
	if strings.ContainsRune(f.Name, '/') {
		return fmt.Errorf("%w: heredoc name %q", ErrInvalid, f.Name)
	}
	if err := os.WriteFile(filepath.Join(dir, f.Name), []byte(f.Data), 0o755); err != nil {
		return err
	}
	rm.mounts = append(rm.mounts, Mount{Type: MountBind, Source: dir, Target: heredocDir, ReadOnly: true})
	rm.keys = append(rm.keys, "heredoc "+f.Name+"\n"+f.Data)
	return nil
}

// add prepares one --mount.
func (rm *runMounts) add(ctx context.Context, m *instructions.Mount) error {
	switch m.Type {
	case instructions.MountTypeBind:
		return rm.addBind(ctx, m)
	case instructions.MountTypeCache:
		return rm.addCache(ctx, m)
	case instructions.MountTypeTmpfs:
		if m.Target == "" {
			return fmt.Errorf("%w: --mount=type=tmpfs needs a target", ErrInvalid)
		}
		t := rm.target(m.Target)
		rm.mounts = append(rm.mounts, Mount{Type: MountTmpfs, Target: t, TmpfsSize: m.SizeLimit})
		rm.keys = append(rm.keys, fmt.Sprintf("tmpfs %s %d", t, m.SizeLimit))
		return nil
	case instructions.MountTypeSecret:
		return rm.addSecret(m)
	default:
		return fmt.Errorf("%w: --mount=type=%s", ErrUnsupported, m.Type)
	}
}

// addBind mounts a copy of a path of the context, a stage or an image. A
// copy, never the path itself: the source is resolved inside its root
// (where a symlink could otherwise lead a host bind anywhere), .dockerignore
// applies to the context, and a read-write bind's writes are discarded, as
// BuildKit's are.
func (rm *runMounts) addBind(ctx context.Context, m *instructions.Mount) error {
	if m.Target == "" {
		return fmt.Errorf("%w: --mount=type=bind needs a target", ErrInvalid)
	}
	root, ignore, srcKey, err := rm.b.sourceRoot(ctx, rm.s, m.From)
	if err != nil {
		return err
	}
	if m.From != "" {
		defer root.Close()
	}
	src := cleanSource(m.Source)
	if src == "" {
		return fmt.Errorf("%w: --mount source %q: outside the build context", ErrInvalid, m.Source)
	}
	dir, err := rm.tempDir()
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, "src")
	var h *keyHash
	if srcKey == "" { // the context: its content is part of the key
		h = newKeyHash()
	}
	if err := copyTree(root, src, ignore, dst, h, !m.ReadOnly); err != nil {
		return fmt.Errorf("--mount source %s: %w", m.Source, err)
	}
	if h != nil {
		srcKey = h.sum()
	}
	t := rm.target(m.Target)
	rm.mounts = append(rm.mounts, Mount{Type: MountBind, Source: dst, Target: t, ReadOnly: m.ReadOnly})
	rm.keys = append(rm.keys, fmt.Sprintf("bind %s %s %v %s", t, src, m.ReadOnly, srcKey))
	return nil
}

// addCache mounts a directory kept under the root across builds, named by
// the mount's id (default: its target).
func (rm *runMounts) addCache(ctx context.Context, m *instructions.Mount) error {
	if m.Target == "" {
		return fmt.Errorf("%w: --mount=type=cache needs a target", ErrInvalid)
	}
	t := rm.target(m.Target)
	id := m.CacheID
	if id == "" {
		id = t
	}
	name := hashString(id)
	dir := filepath.Join(rm.b.r.root, "cache", "mounts", name)
	unlock, err := rm.b.r.store.Lock(ctx, "buildcache-"+name, true)
	if err != nil {
		return err
	}
	err = rm.b.makeCacheDir(ctx, rm.s, dir, m)
	unlock()
	if err != nil {
		return err
	}
	switch m.CacheSharing {
	case instructions.MountSharingLocked:
		rm.locks = append(rm.locks, name)
	case instructions.MountSharingPrivate:
		// Another build using the cache gets a fresh one of its own.
		release, ok := rm.b.r.store.TryLock("buildcache-use-"+name, true)
		if ok {
			rm.releases = append(rm.releases, release)
		} else {
			tmp, err := rm.tempDir()
			if err != nil {
				return err
			}
			dir = filepath.Join(tmp, "cache")
			if err := rm.b.makeCacheDir(ctx, rm.s, dir, m); err != nil {
				return err
			}
		}
	}
	rm.mounts = append(rm.mounts, Mount{Type: MountBind, Source: dir, Target: t, ReadOnly: m.ReadOnly})
	// The whole mount is in the key, as in BuildKit's: another id, sharing,
	// owner or mode is another cache directory, or another one's content.
	rm.keys = append(rm.keys, fmt.Sprintf("cache %s %v id=%q sharing=%s from=%q source=%q uid=%s gid=%s mode=%s",
		t, m.ReadOnly, m.CacheID, m.CacheSharing, m.From, m.Source, optUint(m.UID), optUint(m.GID), optUint(m.Mode)))
	return nil
}

// proxyArgs are docker's predefined ARGs: given as build args, they reach
// every RUN without an ARG line, and stay out of its cache key and of the
// image's history (a proxy's address says nothing of what a step makes).
var proxyArgs = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
	"FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}

// proxyEnv is the RUN environment of the proxy build args that the stage
// does not declare (a declared one is an ARG like any other).
func (b *builder) proxyEnv(s *buildState) []string {
	var env []string
	for _, k := range proxyArgs {
		if v, ok := b.cfg.args[k]; ok && s.args[k] == nil && !hasEnv(s.cf.Config.Env, k) {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// optUint formats an optional number of a mount for a cache key.
func optUint(v *uint64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatUint(*v, 10)
}

// makeCacheDir creates a cache mount's directory with its mode and owner,
// seeded from its from= stage or image, unless it exists.
func (b *builder) makeCacheDir(ctx context.Context, s *buildState, dir string, m *instructions.Mount) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	tmp := dir + ".new"
	os.RemoveAll(tmp)
	if m.From != "" {
		root, ignore, _, err := b.sourceRoot(ctx, s, m.From)
		if err != nil {
			return err
		}
		err = copyTree(root, cleanSource(m.Source), ignore, tmp, nil, true)
		root.Close()
		if err != nil {
			return err
		}
	} else if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	mode := uint64(0o755)
	if m.Mode != nil {
		mode = *m.Mode
	}
	uid, gid := uint64(0), uint64(0)
	if m.UID != nil {
		uid = *m.UID
	}
	if m.GID != nil {
		gid = *m.GID
	}
	if err := os.Chown(tmp, int(uid), int(gid)); err != nil {
		return err
	}
	if err := unix.Chmod(tmp, uint32(mode)); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// lock takes the locks of sharing=locked cache mounts, held until release.
func (rm *runMounts) lock(ctx context.Context) error {
	for _, name := range rm.locks {
		unlock, err := rm.b.r.store.Lock(ctx, "buildcache-use-"+name, true)
		if err != nil {
			return err
		}
		rm.releases = append(rm.releases, unlock)
	}
	return nil
}

// addSecret mounts a secret given with WithBuildSecret as a read-only file
// (a copy with the mount's mode and owner), or sets it as an environment
// variable with env=. Neither its content nor its source is part of the
// cache key.
func (rm *runMounts) addSecret(m *instructions.Mount) error {
	id := m.CacheID
	if id == "" && m.Source != "" {
		id = m.Source
	}
	if id == "" && m.Target != "" {
		id = path.Base(m.Target)
	}
	if id == "" {
		return fmt.Errorf("%w: --mount=type=secret needs an id or a target", ErrInvalid)
	}
	srcPath, ok := rm.b.cfg.secrets[id]
	if !ok {
		if m.Required {
			return fmt.Errorf("%w: secret %q is required but was not given (WithBuildSecret, --secret id=%s,src=PATH)", ErrNotFound, id, id)
		}
		return nil
	}
	data, err := os.ReadFile(srcPath)
	if err != nil {
		return fmt.Errorf("reading secret %q: %w", id, err)
	}
	if m.Env != nil {
		name := *m.Env
		if name == "" {
			name = id
		}
		rm.env = append(rm.env, name+"="+string(data))
		rm.keys = append(rm.keys, "secret-env "+name)
		if m.Target == "" {
			return nil
		}
	}
	t := "/run/secrets/" + id
	if m.Target != "" {
		t = rm.target(m.Target)
	}
	dir, err := rm.tempDir()
	if err != nil {
		return err
	}
	p := filepath.Join(dir, "secret")
	mode := uint64(0o400)
	if m.Mode != nil {
		mode = *m.Mode
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	uid, gid := 0, 0
	if m.UID != nil {
		uid = int(*m.UID)
	}
	if m.GID != nil {
		gid = int(*m.GID)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		return err
	}
	if err := unix.Chmod(p, uint32(mode)); err != nil {
		return err
	}
	rm.mounts = append(rm.mounts, Mount{Type: MountBind, Source: p, Target: t, ReadOnly: true})
	rm.keys = append(rm.keys, fmt.Sprintf("secret %s %s %o %d %d", id, t, mode, uid, gid))
	return nil
}

// removeStubs deletes from the container's upper directory the empty files
// and directories made only to mount on (a mount target and its parents
// that the image lacks), so that mounts leave no trace in the layer, as
// with BuildKit.
func (rm *runMounts) removeStubs(upper string) error {
	if len(rm.mounts) == 0 {
		return nil
	}
	ifs, err := rm.b.r.openImageFS(rm.s.img)
	if err != nil {
		return err
	}
	defer ifs.close()
	var stubs []string
	for _, m := range rm.mounts {
		if m.Target == heredocDir {
			continue // on /dev's tmpfs
		}
		for p := strings.TrimPrefix(m.Target, "/"); p != "" && p != "."; p = path.Dir(p) {
			if _, ok := ifs.lstat(p); ok {
				break
			}
			stubs = append(stubs, p)
		}
	}
	// Deepest first, so that a parent is empty when it is looked at.
	slices.SortFunc(stubs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range slices.Compact(stubs) {
		full := filepath.Join(upper, filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		if err != nil {
			continue
		}
		if fi.Mode().IsRegular() && fi.Size() == 0 {
			err = os.Remove(full)
		} else if fi.IsDir() {
			err = os.Remove(full) // fails, and is kept, unless empty
			if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
				err = nil
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// clampTree sets every mtime in dir later than SOURCE_DATE_EPOCH to it,
// without following symlinks, so that the layer made from dir is the same
// on every build.
func (b *builder) clampTree(dir string) error {
	e := b.cfg.epoch
	if e == nil {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.UnixNano()), unix.NsecToTimespec(e.UnixNano())}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mtim.Sec > e.Unix() || (st.Mtim.Sec == e.Unix() && st.Mtim.Nsec > 0) {
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		return nil
	})
}

// lineWriter splits a process's output into lines for BuildEvents, and
// keeps the last lines for an error. It is safe for concurrent use.
type lineWriter struct {
	emit    func(string)
	mu      sync.Mutex
	partial []byte
	last    []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.push(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) push(line string) {
	w.emit(line)
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

func (w *lineWriter) tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.last)
}
