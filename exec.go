package berth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

// ExecOption configures Exec.
type ExecOption interface{ applyExec(*execConfig) }

type execConfig struct {
	detach     bool
	privileged bool
}

type execOptionFunc func(*execConfig)

func (f execOptionFunc) applyExec(c *execConfig) { f(c) }

// WithExecDetach starts the process in the background (docker exec -d):
// Exec returns once it runs, its output is discarded, and it keeps running
// after the calling program exits, until it ends or the container stops.
// Process.Stdin, Stdout and Stderr must be nil. Default: the process is
// attached and is killed if the calling program dies.
func WithExecDetach() ExecOption {
	return execOptionFunc(func(c *execConfig) { c.detach = true })
}

// Execution is a process started in a running container by Exec. Its
// methods are safe for concurrent use.
type Execution struct {
	ctr    *Container
	cmd    *initproc.Cmd
	wait   func() error // reaps cmd
	master *os.File     // the terminal, with Process.TTY

	copiers sync.WaitGroup
	exited  atomic.Bool
	readers []*os.File // output pipes and the master, drained after the exit

	done chan struct{}
	err  error // nil or *ExitError, once done is closed
}

// drainGrace is how long output is still read after the process exited
// while no more comes: a background child that inherited the process's
// output keeps it open, and Wait should not wait for that child.
const drainGrace = 100 * time.Millisecond

// Exec starts p in the running container (docker exec). The process joins
// every namespace of the container (mount, pid, net, uts, ipc, cgroup) and
// its cgroup, and gets the container's capabilities, seccomp filter,
// no_new_privs and rlimits unless an option says otherwise. p.Args is
// required and is not prefixed with the image's ENTRYPOINT; p.Env adds to
// the container's environment; p.Dir (default: the container's working
// directory) must exist; p.User defaults to the container's user. With
// p.TTY the terminal comes from the container's own /dev/pts.
//
// Exec returns once the process runs; use Wait for its end. It works on
// containers other programs started, detached or not. A container that is
// not running, or is paused, fails with an error wrapping ErrNotRunning. If the command
// cannot be run, Exec fails with an error that errors.As finds an
// *ExitError in, with code 127 (not found) or 126 (not executable). ctx
// bounds the start only.
func (c *Container) Exec(ctx context.Context, p *Process, opts ...ExecOption) (_ *Execution, retErr error) {
	if err := c.rt.checkOpen(); err != nil {
		return nil, err
	}
	if p == nil || len(p.Args) == 0 || p.Args[0] == "" {
		return nil, fmt.Errorf("%w: exec: Process.Args is empty", ErrInvalid)
	}
	var o execConfig
	for _, opt := range opts {
		opt.applyExec(&o)
	}
	if o.detach && (p.Stdin != nil || p.Stdout != nil || p.Stderr != nil) {
		return nil, fmt.Errorf("%w: a detached exec's output is discarded; Process.Stdin, Stdout and Stderr must be nil", ErrInvalid)
	}
	if p.Dir != "" && !strings.HasPrefix(p.Dir, "/") {
		return nil, fmt.Errorf("%w: working directory %q is not absolute", ErrInvalid, p.Dir)
	}
	unlockPause, err := c.rt.lockExecStart(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	defer unlockPause()
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return nil, err
	}
	notRunning := fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	if !rec.State.Running {
		return nil, notRunning
	}
	if rec.State.Status == statusPaused {
		return nil, fmt.Errorf("container %s is paused, unpause it first: %w", c.Name, ErrNotRunning)
	}
	spec, err := c.rt.execSpec(rec, p, &o)
	if err != nil {
		return nil, err
	}

	// The pidfd pins the container's first process for the namespace
	// check, which must see the process the record names, not a recycled
	// pid.
	pidfd, ok := rec.pinFirstProcess()
	if !ok {
		return nil, notRunning
	}
	defer unix.Close(pidfd)
	ns, err := initproc.OpenNamespaces(rec.State.Pid, pidfd)
	if err != nil {
		if errors.Is(err, unix.ESRCH) || errors.Is(err, fs.ErrNotExist) {
			return nil, notRunning
		}
		return nil, fmt.Errorf("exec in container %s: %w", c.Name, err)
	}
	defer ns.Close()
	cg, err := cgroup.Load(c.rt.cgroupPath(c.ID))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notRunning
		}
		return nil, fmt.Errorf("exec in container %s: %w", c.Name, err)
	}
	if cg.NoDevicesDir() && !rec.Config.Privileged {
		// Its device policy is gone: a process joining would keep this
		// program's devices cgroup, with CAP_MKNOD.
		return nil, fmt.Errorf("exec in container %s: its cgroup %s has no devices directory", c.Name, cg.Path())
	}

	execStarting()
	e := &Execution{ctr: c, done: make(chan struct{})}
	var files [3]*os.File
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		if retErr != nil {
			for _, f := range e.readers {
				f.Close()
			}
		}
	}()
	if !p.TTY {
		if files, err = e.wire(p); err != nil {
			return nil, err
		}
	}
	if initproc.ExecDirectSupported(spec) {
		if err := e.startDirect(spec, ns, cg, files, p, rec.Config.OomScoreAdj); err != nil {
			var se *startError
			if !errors.As(err, &se) && exitedWithin(pidfd, 100) {
				// It exited meanwhile: a fork into a pid namespace whose
				// first process is gone fails with ENOMEM, and one just
				// before is killed with the namespace's other processes
				// before that first process is gone.
				return nil, notRunning
			}
			return nil, fmt.Errorf("exec in container %s: %w", c.Name, err)
		}
		go e.reap()
		return e, nil
	}
	proc, err := initproc.ExecCommand(spec)
	if err != nil {
		return nil, err
	}
	e.cmd, e.wait = proc.Cmd, proc.Wait
	proc.Cmd.Stdin, proc.Cmd.Stdout, proc.Cmd.Stderr = files[0], files[1], files[2]
	if err := proc.Start(ns); err != nil {
		if exitedWithin(pidfd, 100) { // 126 and 127 come from Release, below
			return nil, notRunning
		}
		return nil, fmt.Errorf("exec in container %s: %w", c.Name, err)
	}
	fail := func(err error) (*Execution, error) {
		proc.Cmd.Process.Kill()
		proc.Wait()
		return nil, err
	}
	// Before any of the command's code runs, as for Run: a process added
	// later could fork outside the container's limits first.
	if err := cg.Add(proc.Pid()); err != nil {
		return fail(fmt.Errorf("exec in container %s: placing the process in the container's cgroup: %w", c.Name, err))
	}
	if err := setOomScoreAdj(proc.Pid(), rec.Config.OomScoreAdj); err != nil {
		return fail(fmt.Errorf("exec in container %s: %w", c.Name, err))
	}
	stop := context.AfterFunc(ctx, func() { proc.Cmd.Process.Kill() })
	err = proc.Release()
	stop()
	if err != nil {
		proc.Wait()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("exec in container %s: %w", c.Name, asStartError(err))
	}
	if p.TTY {
		e.wireTerminal(proc.Master(), p)
	}
	go e.reap()
	return e, nil
}

// execStarting runs in Exec once it has found the container running, before
// it starts anything (a hook for tests).
var execStarting = func() {}

// wireTerminal copies a TTY exec's terminal to p's writer and p's input
// to it.
func (e *Execution) wireTerminal(master *os.File, p *Process) {
	e.master = master
	e.readers = append(e.readers, e.master)
	out := p.Stdout
	if out == nil {
		out = io.Discard
	}
	e.copy(e.master, out)
	if p.Stdin != nil {
		go copyQuiet(e.master, p.Stdin)
	}
}

// startDirect starts the process without an exec stage (see
// initproc.PrepareExec): a thread of this process joins the container's
// namespaces and v1 cgroups and forks it there, into the unified cgroup.
func (e *Execution) startDirect(spec *initproc.ExecSpec, ns *initproc.Namespaces, cg *cgroup.Cgroup, files [3]*os.File, p *Process, oomScoreAdj int) error {
	if !spec.TTY && slices.Contains(files[:], nil) {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer null.Close()
		for i, f := range files {
			if f == nil {
				files[i] = null
			}
		}
	}
	d, err := initproc.PrepareExec(spec, ns)
	if err != nil {
		return asStartError(err)
	}
	proc, err := forkDirect(d, cg, files, func(pid int) error { return setOomScoreAdj(pid, oomScoreAdj) })
	if err != nil {
		return err
	}
	e.cmd, e.wait = proc.Cmd, proc.Wait
	if spec.TTY {
		e.wireTerminal(d.Master(), p)
	}
	return nil
}

// execSpec merges the container's settings with p and the options, as
// docker exec does.
func (r *Runtime) execSpec(rec *containerRecord, p *Process, o *execConfig) (*initproc.ExecSpec, error) {
	cfg := &rec.Config
	s := &initproc.ExecSpec{
		Args: p.Args, Env: mergeEnv(cfg.Env, p.Env), Dir: cfg.Dir, User: cfg.User, GroupAdd: cfg.GroupAdd,
		TTY: p.TTY, Detached: o.detach, NoNewPrivileges: cfg.NoNewPrivs,
	}
	if p.Dir != "" {
		s.Dir = p.Dir
	}
	if p.User != "" {
		s.User = p.User
	}
	if p.TTY && !hasEnv(s.Env, "TERM") {
		s.Env = append(s.Env, "TERM=xterm")
	}
	var err error
	if o.privileged {
		s.Capabilities = capNames(everyCapability())
	} else {
		if s.Capabilities, err = cfg.capabilities(); err != nil {
			return nil, err
		}
		if cfg.Seccomp {
			if s.SeccompFilter, err = r.seccompFilter(s.Capabilities, cfg.SeccompProfile); err != nil {
				return nil, err
			}
		}
	}
	for _, rl := range cfg.Rlimits {
		s.Rlimits = append(s.Rlimits, initproc.Rlimit{Type: rlimitTypes[rl.Name], Soft: rl.Soft, Hard: rl.Hard})
	}
	return s, nil
}

// wire makes pipes for the process's standard streams that p asks for and
// returns the child's ends (nil for a stream p leaves out), which the
// caller closes once the child started.
func (e *Execution) wire(p *Process) (files [3]*os.File, retErr error) {
	defer func() {
		if retErr != nil {
			for _, f := range files {
				if f != nil {
					f.Close()
				}
			}
		}
	}()
	if p.Stdin != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return files, err
		}
		files[0] = pr
		go func() {
			copyQuiet(pw, p.Stdin)
			pw.Close()
		}()
	}
	if p.Stdout != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return files, err
		}
		files[1] = pw
		e.readers = append(e.readers, pr)
		e.copy(pr, p.Stdout)
		if sameWriter(p.Stdout, p.Stderr) {
			// One pipe, as os/exec does, so the writer sees no two
			// goroutines at once and the two streams stay in order.
			dup, err := unix.FcntlInt(pw.Fd(), unix.F_DUPFD_CLOEXEC, 3)
			if err != nil {
				return files, err
			}
			files[2] = os.NewFile(uintptr(dup), "stderr")
			return files, nil
		}
	}
	if p.Stderr != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return files, err
		}
		files[2] = pw
		e.readers = append(e.readers, pr)
		e.copy(pr, p.Stderr)
	}
	return files, nil
}

func sameWriter(a, b io.Writer) (same bool) {
	defer func() { recover() }() // uncomparable dynamic types
	return a == b
}

// copy streams src to dst in bounded chunks until EOF, or until src stays
// idle for drainGrace after the process exited.
func (e *Execution) copy(src *os.File, dst io.Writer) {
	e.copiers.Add(1)
	go func() {
		defer e.copiers.Done()
		buf := make([]byte, 32<<10)
		failed := false
		for {
			n, err := src.Read(buf)
			if n > 0 && !failed {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					failed = true // keep draining so the process never blocks on a full pipe
				}
			}
			if err != nil {
				return // EOF; EIO from a terminal whose last slave closed; the drain deadline
			}
			if e.exited.Load() {
				src.SetReadDeadline(time.Now().Add(drainGrace))
			}
		}
	}()
}

// reap reaps the process, drains its output and records how it ended.
func (e *Execution) reap() {
	werr := e.wait()
	e.exited.Store(true)
	for _, f := range e.readers {
		f.SetReadDeadline(time.Now().Add(drainGrace))
	}
	e.copiers.Wait()
	for _, f := range e.readers {
		f.Close()
	}
	code, sig := exitStatus(e.cmd.ProcessState, werr)
	if code != 0 {
		e.err = &ExitError{Code: code, Signal: sig}
	}
	close(e.done)
}

// Pid returns the process's pid in the calling program's pid namespace.
func (e *Execution) Pid() int { return e.cmd.Process.Pid }

// Wait waits until the process exits and its output has been copied, and
// returns nil for exit status 0 or an *ExitError. It may be called at any
// time, from any goroutine, any number of times; ctx bounds the wait only.
func (e *Execution) Wait(ctx context.Context) error {
	select {
	case <-e.done:
		return e.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Signal sends sig to the process (docker exec has no equivalent; kill
// inside the container does). After the process exited it fails with an
// error wrapping ErrNotRunning.
func (e *Execution) Signal(ctx context.Context, sig Signal) error {
	select {
	case <-e.done:
		return fmt.Errorf("exec process %d: %w", e.Pid(), ErrNotRunning)
	default:
	}
	// os.Process signals through its pidfd: never a recycled pid.
	if err := e.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("exec process %d: %w", e.Pid(), ErrNotRunning)
		}
		return fmt.Errorf("signalling exec process %d: %w", e.Pid(), err)
	}
	return nil
}

// ResizeTTY sets the size of the process's terminal (what docker does on
// SIGWINCH). It fails with ErrInvalid for a process without Process.TTY.
func (e *Execution) ResizeTTY(ctx context.Context, rows, cols uint16) error {
	if e.master == nil {
		return fmt.Errorf("%w: the exec process has no terminal", ErrInvalid)
	}
	return setWinsize(e.master, rows, cols)
}

// ResizeTTY sets the size of the terminal of a container run with
// Process.TTY (what docker run -t and docker attach do on SIGWINCH),
// whichever program holds it: this one for a container it runs attached,
// the monitor for a detached one. It fails with ErrInvalid for a
// container without a terminal, and with ErrNotRunning once it exited.
func (c *Container) ResizeTTY(ctx context.Context, rows, cols uint16) error {
	if run := c.rt.owned(c.ID); run != nil && run.master != nil {
		return setWinsize(run.master, rows, cols)
	}
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	if !rec.Config.TTY {
		return fmt.Errorf("%w: container %s has no terminal", ErrInvalid, c.Name)
	}
	if !rec.State.Running {
		return fmt.Errorf("resizing %s's terminal: %w", c.Name, ErrNotRunning)
	}
	// The first process's standard input is the terminal: a copy of that
	// descriptor (nothing opened anew, whatever it now names) sets the
	// size. The process could have put anything there since, so the
	// descriptor must be a file of a devpts mount where its parent (the
	// monitor, or the program that runs it attached) opened the terminal,
	// before anything touches it: fdinfo names the mount without a call
	// into the file (a hostile FUSE file could block one).
	noTTY := fmt.Errorf("%w: resizing %s's terminal: its standard input is no terminal now", ErrInvalid, c.Name)
	pidfd, ok := rec.pinFirstProcess()
	if !ok {
		return fmt.Errorf("resizing %s's terminal: %w", c.Name, ErrNotRunning)
	}
	defer unix.Close(pidfd)
	parent := "self"
	if _, _, _, ppid := procStat(rec.State.Pid); ppid > 0 {
		parent = strconv.Itoa(ppid)
	}
	mnt := fdMount("/proc/" + strconv.Itoa(rec.State.Pid) + "/fdinfo/0")
	if mnt == "" || !devptsMount(mnt, "/proc/"+parent+"/mountinfo") {
		return noTTY
	}
	fd, err := unix.PidfdGetfd(pidfd, 0, 0)
	if errors.Is(err, unix.EBADF) || errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("resizing %s's terminal: %w", c.Name, ErrNotRunning)
	} else if err != nil {
		return fmt.Errorf("resizing %s's terminal: %w", c.Name, err)
	}
	f := os.NewFile(uintptr(fd), "tty")
	defer f.Close()
	if fdMount("/proc/self/fdinfo/"+strconv.Itoa(fd)) != mnt { // replaced between the two looks
		return noTTY
	}
	return setWinsize(f, rows, cols)
}

// fdMount is the mnt_id an fdinfo file names, or "".
func fdMount(fdinfo string) string {
	info, err := os.ReadFile(fdinfo)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(info)) {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// devptsMount reports whether the mountinfo file lists mount id mnt as a
// devpts.
func devptsMount(mnt, mountinfo string) bool {
	mounts, err := os.ReadFile(mountinfo)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(mounts)) {
		if id, rest, _ := strings.Cut(line, " "); id == mnt {
			_, after, ok := strings.Cut(rest, " - ")
			return ok && strings.HasPrefix(after, "devpts ")
		}
	}
	return false
}

// setWinsize sets the window size of the terminal f is a side of.
func setWinsize(f *os.File, rows, cols uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("resizing the terminal: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return fmt.Errorf("resizing the terminal: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resizing the terminal: %w", ierr)
	}
	return nil
}
