package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/caps"
	"golang.org/x/sys/unix"
)

// execMarker is the byte the child writes right before execve. The sync pipe
// is CLOEXEC in the child, so after the marker, EOF means execve succeeded and
// anything else is a JSON SetupError from a failed execve. EOF without the
// marker means the child died during setup without managing to say why.
const execMarker = 0

// stageConfig is what travels over the spec pipe.
type stageConfig struct {
	Spec    Spec
	Files   []fileMount
	Caps    caps.Set
	Seccomp []byte // the compiled filter, 8 bytes per instruction, native order
	// Trace makes the child print the monotonic time of each step to its
	// stderr; set by tests and benchmarks through traceSteps.
	Trace bool
	// lateFiles, for a direct start, gives Files once they are known: the
	// thread calls it just before it binds them (see PrepareDirect).
	lateFiles func() ([]fileMount, error)
}

// traceSteps is a test hook: see stageConfig.Trace.
var traceSteps bool

type fileMount struct {
	Source string // host path, written by Command
	Dest   string // container path
}

// Process is a prepared or running container child. Cmd is exposed so the
// caller can set Stdin, Stdout and Stderr (the pty slave when Spec.TTY)
// before Start, and call Cmd.Wait after Release. Its methods are not safe for
// concurrent use.
type Process struct {
	// Cmd runs the sealed binary. Do not change Path, Args, Env, ExtraFiles or
	// SysProcAttr.
	Cmd *Cmd
	// Warnings lists adjustments Command made to the spec, such as rlimits
	// clamped to the current hard limit.
	Warnings []string

	config       []byte
	pidNS        string // Spec.PidNS: the child is started there
	onWait       func() // called once Wait has returned
	specR, specW *os.File
	syncR, syncW *os.File
	released     bool
}

// defaultPath is the PATH Docker gives a container whose image sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Command prepares, without starting, the child for spec: a Cmd of the
// sealed binary in new mount, pid, uts, ipc and net namespaces, but for
// those spec shares (PidHost, PidNS, IpcNS, UTSNS), killed if the thread
// that starts it exits (Pdeathsig, which is per thread: start it from a
// thread that lives as long as the container should). The child unshares
// its cgroup namespace itself after Release, so that it is rooted at the
// cgroup the caller put it in. Command writes spec.Files into
// spec.StateDir.
func Command(spec *Spec) (*Process, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	p, err := newProcess(spec.Detached)
	if err != nil {
		return nil, err
	}
	sys := p.Cmd.SysProcAttr
	if spec.PidHost {
		sys.Cloneflags &^= unix.CLONE_NEWPID
	}
	if spec.PidNS != "" {
		// Go's parent-death signal would kill the child at once: its
		// child checks getppid, 0 in a pid namespace its parent is not
		// in. The stage arms its own (runStage).
		p.pidNS = spec.PidNS
		sys.Cloneflags &^= unix.CLONE_NEWPID
		sys.Pdeathsig = 0
		p.Cmd.Env = append(p.Cmd.Env, stageOwnDeathSignal+"=1")
	}
	// Namespaces the stage joins (runStage) need no new ones.
	if spec.IpcNS != "" {
		sys.Cloneflags &^= unix.CLONE_NEWIPC
	}
	if spec.UTSNS != "" {
		sys.Cloneflags &^= unix.CLONE_NEWUTS
	}
	if err := p.configure(spec); err != nil {
		p.closeAll()
		return nil, err
	}
	return p, nil
}

// newProcess makes the Cmd of the child stage and its two pipes.
func newProcess(detached bool) (*Process, error) {
	exe, err := exePath()
	if err != nil {
		return nil, err
	}
	p := &Process{}
	if p.specR, p.specW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.syncR, p.syncW, err = os.Pipe(); err != nil {
		p.closeAll()
		return nil, err
	}
	p.Cmd = &Cmd{
		Path: exe,
		Args: []string{"berth-init"},
		// The stage is one short-lived thread of work: a single P spares the
		// runtime its cgroup CPU-limit probe and extra threads, and no GC runs
		// in its few milliseconds. The user's program gets Spec.Env instead.
		Env:        []string{stageEnv + "=" + stageInit, "GOMAXPROCS=1", "GOGC=off"},
		ExtraFiles: []*os.File{p.specR, p.syncW}, // fds 3 and 4: see reexec.go
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if traceSteps {
		p.Cmd.Env = append(p.Cmd.Env, "GODEBUG=inittrace=1")
	}
	if detached {
		p.Cmd.SysProcAttr.Pdeathsig = 0
	}
	return p, nil
}

// configure encodes spec for Release and writes its Files.
func (p *Process) configure(spec *Spec) error {
	cfg, warnings, err := stageConfigFor(spec)
	if err != nil {
		return err
	}
	p.Warnings = warnings
	if p.config, err = json.Marshal(&cfg); err != nil {
		return fmt.Errorf("encoding the container spec: %w", err)
	}
	return nil
}

// stageConfigFor is what a container's setup needs of spec, whichever
// start does it: the capability set parsed, rlimits clamped (warnings
// says how), the seccomp filter as bytes, and spec.Files written into its
// StateDir.
func stageConfigFor(spec *Spec) (cfg stageConfig, warnings []string, err error) {
	cfg = stageConfig{Spec: *spec, Trace: traceSteps}
	cfg.Spec.Files = nil
	if cfg.Caps, err = capSet(cfg.Spec.Capabilities); err != nil {
		return cfg, nil, err
	}
	cfg.Spec.Rlimits, warnings = clampRlimits(spec.Rlimits)
	cfg.Seccomp = filterBytes(spec.SeccompFilter)
	cfg.Spec.SeccompFilter = nil
	if cfg.Files, err = writeFiles(spec); err != nil {
		return cfg, nil, err
	}
	return cfg, warnings, nil
}

// capSet parses a container's capability names, docker's default set
// when names is nil.
func capSet(names []string) (caps.Set, error) {
	if names == nil {
		names = caps.Default()
	}
	set, err := caps.ParseSet(names)
	if err != nil {
		return 0, fmt.Errorf("capabilities: %w", err)
	}
	return set, nil
}

// Warm is a child stage started ahead of need: its Go runtime is up and its
// namespaces exist, and it waits for a spec. Handing it one (Use) skips
// the process start that dominates a container's start-up. Its standard
// streams are pipes whose other ends are Stdin, Stdout and Stderr; a
// container that needs a terminal must take the cold path (Command).
//
// The child's mount namespace is a copy of the host's made when it
// started, so a host mount made since would be missing from it: Fresh
// reports whether the host's mount table is unchanged, and a stale Warm
// must be closed, not used.
type Warm struct {
	p                           *Process
	Stdin                       *os.File // write end; close it for a container with no input
	Stdout, Stderr              *os.File // read ends
	childIn, childOut, childErr *os.File
	mounts                      *os.File // /proc/self/mounts, readable with POLLPRI once the table changes
}

// Prestart starts a warm child stage. detached has the meaning of
// Spec.Detached, which must match the spec later given to Use. The thread
// that calls Prestart must live as long as the container may (Pdeathsig).
func Prestart(detached bool) (_ *Warm, retErr error) {
	p, err := newProcess(detached)
	if err != nil {
		return nil, err
	}
	w := &Warm{p: p}
	defer func() {
		if retErr != nil {
			w.Close()
		}
	}()
	if w.mounts, err = os.Open("/proc/self/mounts"); err != nil {
		return nil, err
	}
	if w.childIn, w.Stdin, err = os.Pipe(); err != nil {
		return nil, err
	}
	if w.Stdout, w.childOut, err = os.Pipe(); err != nil {
		return nil, err
	}
	if w.Stderr, w.childErr, err = os.Pipe(); err != nil {
		return nil, err
	}
	p.Cmd.Stdin, p.Cmd.Stdout, p.Cmd.Stderr = w.childIn, w.childOut, w.childErr
	if err := p.Start(); err != nil {
		return nil, err
	}
	for _, f := range []*os.File{w.childIn, w.childOut, w.childErr} {
		f.Close()
	}
	w.childIn, w.childOut, w.childErr = nil, nil, nil
	return w, nil
}

// Fresh reports whether the child is still usable: it runs, and the host's
// mount table has not changed since it started.
func (w *Warm) Fresh() bool {
	fds := []unix.PollFd{{Fd: int32(w.mounts.Fd()), Events: unix.POLLPRI}}
	n, err := unix.Poll(fds, 0)
	if err != nil || (n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0) {
		return false
	}
	return unix.Kill(w.p.Pid(), 0) == nil
}

// Use hands the warm child its spec and returns it as a started Process:
// place it in its cgroup, then Release it. spec.TTY must be false. After
// Use, the Warm is spent (its pipes now belong to the container).
func (w *Warm) Use(spec *Spec) (*Process, error) {
	if spec.TTY {
		return nil, errors.New("initproc: a warm child has pipes, not a terminal")
	}
	if spec.PidNS != "" || spec.PidHost {
		return nil, errors.New("initproc: a warm child has a pid namespace of its own")
	}
	if err := validate(spec); err != nil {
		return nil, err
	}
	if err := w.p.configure(spec); err != nil {
		return nil, err
	}
	w.mounts.Close()
	return w.p, nil
}

// Close kills and reaps an unused warm child and closes its pipes.
func (w *Warm) Close() {
	if w.p.Cmd.Process != nil && w.p.Cmd.ProcessState == nil {
		w.p.Cmd.Process.Kill()
		w.p.Cmd.Wait()
	}
	w.p.closeAll()
	for _, f := range []*os.File{w.mounts, w.Stdin, w.Stdout, w.Stderr, w.childIn, w.childOut, w.childErr} {
		if f != nil {
			f.Close()
		}
	}
}

// Executable returns the path of the sealed copy of the calling binary
// (see sealedExe), for other stages of berth that re-execute it.
func Executable() (string, error) { return exePath() }

func validate(s *Spec) error {
	switch {
	case len(s.Args) == 0 || s.Args[0] == "":
		return errors.New("initproc: Spec.Args is empty")
	case len(s.Lower) == 0:
		return errors.New("initproc: Spec.Lower is empty")
	case !path.IsAbs(s.Rootfs):
		return fmt.Errorf("initproc: Spec.Rootfs %q is not an absolute path", s.Rootfs)
	case (s.Upper == "") != (s.Work == ""):
		return errors.New("initproc: Spec.Upper and Spec.Work must be set together")
	case len(s.Files) > 0 && s.StateDir == "":
		return errors.New("initproc: Spec.Files needs Spec.StateDir")
	}
	for _, d := range append(append([]string{}, s.Lower...), s.Upper, s.Work) {
		if strings.ContainsAny(d, ":,") {
			// overlayfs option syntax has no escaping we want to rely on.
			return fmt.Errorf("initproc: layer path %q contains ':' or ','", d)
		}
	}
	return nil
}

func filterBytes(f []unix.SockFilter) []byte {
	b := make([]byte, 0, 8*len(f))
	for _, in := range f {
		b = append(b, byte(in.Code), byte(in.Code>>8), in.Jt, in.Jf,
			byte(in.K), byte(in.K>>8), byte(in.K>>16), byte(in.K>>24))
	}
	return b
}

func bytesFilter(b []byte) []unix.SockFilter {
	f := make([]unix.SockFilter, len(b)/8)
	for i := range f {
		c := b[8*i:]
		f[i] = unix.SockFilter{
			Code: uint16(c[0]) | uint16(c[1])<<8, Jt: c[2], Jf: c[3],
			K: uint32(c[4]) | uint32(c[5])<<8 | uint32(c[6])<<16 | uint32(c[7])<<24,
		}
	}
	return f
}

// clampRlimits lowers every limit to the current hard limit: this process
// lacks CAP_SYS_RESOURCE, and setrlimit would fail on the whole container
// for a value it cannot grant anyway.
func clampRlimits(in []Rlimit) ([]Rlimit, []string) {
	var warn []string
	out := make([]Rlimit, 0, len(in))
	for _, r := range in {
		var cur unix.Rlimit
		if err := unix.Getrlimit(r.Type, &cur); err == nil {
			if r.Hard > cur.Max {
				warn = append(warn, fmt.Sprintf("rlimit %d: hard limit %d lowered to the current hard limit %d", r.Type, r.Hard, cur.Max))
				r.Hard = cur.Max
			}
			if r.Soft > r.Hard {
				warn = append(warn, fmt.Sprintf("rlimit %d: soft limit %d lowered to the hard limit %d", r.Type, r.Soft, r.Hard))
				r.Soft = r.Hard
			}
		}
		out = append(out, r)
	}
	return out, warn
}

// writeFiles writes Spec.Files into StateDir. Host-side names flatten the
// container path ("/etc/resolv.conf" → "etc_resolv.conf"), as Docker keeps
// hosts, hostname and resolv.conf side by side in the container's directory.
func writeFiles(s *Spec) ([]fileMount, error) {
	var out []fileMount
	for dest, data := range s.Files {
		clean := path.Clean("/" + dest)
		if clean == "/" {
			return nil, fmt.Errorf("initproc: Files has an entry for %q", dest)
		}
		host := path.Join(s.StateDir, strings.ReplaceAll(strings.TrimPrefix(clean, "/"), "/", "_"))
		if err := rewriteFile(host, data); err != nil {
			return nil, fmt.Errorf("writing %s for the container: %w", clean, err)
		}
		out = append(out, fileMount{Source: host, Dest: clean})
	}
	return out, nil
}

// rewriteFile makes the file p (mode 0644 if new) hold data. A file that
// exists (a spare container directory keeps its /etc files) is written
// over in place, then cut to size: truncating it first would free its
// block (a synchronous discard on some disks) and have ext4 start
// writeback at its close (auto_da_alloc), both on a start's path.
func rewriteFile(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Start starts the child. It blocks in its first read until Release, having
// done nothing but start the Go runtime; Cmd.Process.Pid is then valid for
// placing it in a cgroup and moving network interfaces into its namespace.
// A caller that gives up before Release kills Cmd.Process and calls Cmd.Wait.
func (p *Process) Start() error {
	start := p.Cmd.Start
	if p.pidNS != "" {
		start = p.startInPidNS
	}
	if err := start(); err != nil {
		p.closeAll()
		return fmt.Errorf("starting the container child: %w", err)
	}
	// The child holds its own copies; ours would keep the pipes from ever
	// reporting EOF.
	p.specR.Close()
	p.syncW.Close()
	return nil
}

// stageOwnDeathSignal, in a child stage's environment, has it arm its
// parent-death signal itself, first thing (see Command).
const stageOwnDeathSignal = "BERTH_STAGE_PDEATHSIG"

// startInPidNS starts the child in the pid namespace p.pidNS: from a
// thread that joined it (a thread's children are forked into the pid
// namespace it joined) and that goes back to this process's own at once,
// to live on as any other thread. One that cannot go back is parked for
// good: its end would be the parent death of every child started from it.
func (p *Process) startInPidNS() error {
	own, err := unix.Open("/proc/self/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: "/proc/self/ns/pid", Err: err}
	}
	defer unix.Close(own)
	target, err := unix.Open(p.pidNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the pid namespace to join: %w", &fs.PathError{Op: "open", Path: p.pidNS, Err: err})
	}
	defer unix.Close(target)
	done := make(chan error, 1)
	onOtherThread(func() {
		if err := unix.Setns(target, unix.CLONE_NEWPID); err != nil {
			done <- fmt.Errorf("joining the pid namespace %s: %w", p.pidNS, err)
			return
		}
		err := p.Cmd.Start()
		if rerr := unix.Setns(own, unix.CLONE_NEWPID); rerr != nil {
			if err == nil {
				p.Cmd.Process.Kill()
				p.Cmd.Wait()
			}
			done <- fmt.Errorf("leaving the pid namespace %s: %w", p.pidNS, rerr)
			select {} // see above
		}
		done <- err
	})
	return <-done
}

// Pid returns the child's pid in the caller's pid namespace; valid after Start.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Release lets the started child proceed with its setup and waits until it
// either execve's the user's program (nil) or fails. A failure is a
// *SetupError naming the step and path; ExitCode is 127 or 126 when the
// command was not found or not executable. Either way the caller must still
// call Cmd.Wait: after a failure the child exits by itself with status 1.
// Release has no timeout of its own: to bound it, kill Cmd.Process, which
// makes it return.
func (p *Process) Release() error {
	if p.released {
		return errors.New("initproc: Release called twice")
	}
	p.released = true
	_, werr := p.specW.Write(p.config)
	p.specW.Close()
	out, rerr := io.ReadAll(p.syncR)
	p.syncR.Close()
	if execed, err := decodeReport("container setup", "the child stage", out, werr, rerr); !execed {
		return err
	}
	return nil
}

// Wait waits for the container's process to exit, like Cmd.Wait.
func (p *Process) Wait() error {
	err := p.Cmd.Wait()
	if p.onWait != nil {
		p.onWait()
		p.onWait = nil
	}
	return err
}

func (p *Process) closeAll() {
	for _, f := range []*os.File{p.specR, p.specW, p.syncR, p.syncW} {
		if f != nil {
			f.Close()
		}
	}
}
