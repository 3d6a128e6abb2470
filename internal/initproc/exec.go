package initproc

// The exec stage (docker exec): a process started inside every namespace
// and the cgroup of a running container.
//
// The parent opens the namespaces of the container's first process and, on
// a goroutine locked to its OS thread, joins its pid, net, uts, ipc and
// cgroup namespaces with setns, starts the child from that thread (the
// child is then inside all of them), and returns the thread to the host's
// namespaces before unlocking it. The thread does not join the mount
// namespace: the sealed binary's path (/proc/self/fd/N of the parent) must
// resolve in the host's. The child joins it itself, first thing after its
// Release, from its locked main thread (runExecStage), with the
// namespace's fd as an inherited file. chroot into /proc/PID/root would not
// do: the process would stay in the host's mount namespace and see none of
// the container's mounts made after its start.
//
// Why the thread is restored rather than left locked to die with its
// goroutine: Go hands a locked goroutine whichever thread it runs on, and
// that thread may earlier have started an attached container or exec,
// whose parent-death signal (armed per thread) then fires when the thread
// ends. Leaving the thread to die killed unrelated containers in the
// tests. Restoring needs no more privilege than joining; if it ever
// fails, the thread is parked for good instead (see Start), never reused.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"syscall"

	"github.com/berth-dev/berth/internal/caps"
	"golang.org/x/sys/unix"
)

// The exec stage's inherited fds, after the spec pipe (3) and the sync
// pipe (4) of the Run stage's contract.
const (
	stageExec = "exec"
	mntNsFd   = 5 // the container's mount namespace
	ptySockFd = 6 // a unix socket the pty master goes back on (ExecSpec.TTY)
)

// ExecSpec describes a process to start in a running container. Unlike
// Spec, every field is final: the caller merges the container's settings
// (environment, user, capabilities, seccomp, rlimits) in.
type ExecSpec struct {
	// Args is the command; Args[0] is looked up in Env's PATH inside the
	// container. Required.
	Args []string
	// Env is the complete environment; HOME is added from the user's
	// passwd entry when missing.
	Env []string
	// Dir is the working directory inside the container; it must exist.
	// Empty means "/".
	Dir string
	// User is "name", "uid", "uid:gid", "name:group" or "uid:group",
	// resolved from the container's /etc/passwd and /etc/group. Empty means
	// root.
	User string
	// GroupAdd means what it means in Spec (the container's).
	GroupAdd []string
	// TTY gives the process a pseudo-terminal from the container's own
	// devpts; the parent gets the master from ExecProcess.Master.
	TTY bool
	// Detached lets the process outlive the thread, and the program, that
	// started it: no parent-death signal is armed. It still dies with the
	// container (its pid namespace and cgroup).
	Detached bool
	// Capabilities, NoNewPrivileges, SeccompFilter and Rlimits mean what
	// they mean in Spec.
	Capabilities    []string
	NoNewPrivileges bool
	SeccompFilter   []unix.SockFilter
	Rlimits         []Rlimit
}

// execStageConfig is what travels over the spec pipe to the exec stage.
type execStageConfig struct {
	Spec    ExecSpec
	Caps    caps.Set
	Seccomp []byte
}

// Namespaces holds open fds of a process's pid, net, uts, ipc, cgroup and
// mount namespaces. The caller must call Close.
type Namespaces struct {
	fds map[string]int // by /proc/PID/ns name
}

// joinOrder is the order the parent's thread joins namespaces in; "mnt" is
// joined by the child.
var joinOrder = []struct {
	name string
	flag int
}{
	{"pid", unix.CLONE_NEWPID}, {"net", unix.CLONE_NEWNET}, {"uts", unix.CLONE_NEWUTS},
	{"ipc", unix.CLONE_NEWIPC}, {"cgroup", unix.CLONE_NEWCGROUP},
}

// OpenNamespaces opens the namespaces of process pid, which pidfd (a
// pidfd_open of pid the caller checked is the right process) pins: once
// every fd is open, the process is checked not to have exited, so the fds
// cannot belong to another process that reused the pid meanwhile.
func OpenNamespaces(pid, pidfd int) (_ *Namespaces, retErr error) {
	n := &Namespaces{fds: map[string]int{}}
	defer func() {
		if retErr != nil {
			n.Close()
		}
	}()
	for _, name := range []string{"pid", "net", "uts", "ipc", "cgroup", "mnt"} {
		p := "/proc/" + strconv.Itoa(pid) + "/ns/" + name
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", p, err)
		}
		n.fds[name] = fd
	}
	if exited(pidfd) {
		return nil, fmt.Errorf("process %d: %w", pid, syscall.ESRCH)
	}
	return n, nil
}

// OpenNamespace opens the namespace kind ("pid", "net", ...) of process
// pid, which pidfd pins: it fails (ESRCH) if the process has exited by
// the time the namespace is open, when pid may name another process.
func OpenNamespace(pid, pidfd int, kind string) (*os.File, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/ns/" + kind
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	if exited(pidfd) {
		unix.Close(fd)
		return nil, fmt.Errorf("process %d: %w", pid, syscall.ESRCH)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// exited reports whether the process of pidfd has exited (a zombie
// included), or cannot be asked.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	k, err := unix.Poll(fds, 0)
	return err != nil || k > 0
}

// Close closes the fds. It is idempotent.
func (n *Namespaces) Close() {
	for name, fd := range n.fds {
		unix.Close(fd)
		delete(n.fds, name)
	}
}

// ExecProcess is a prepared or running exec child. Cmd is exposed so the
// caller can set Stdin, Stdout and Stderr before Start (leave them nil with
// ExecSpec.TTY: the child replaces them with the terminal). Its methods are
// not safe for concurrent use, except Wait against the others.
type ExecProcess struct {
	// Cmd runs the sealed binary. Do not change Path, Args, Env, ExtraFiles
	// or SysProcAttr.
	Cmd *Cmd
	// Warnings lists adjustments made to the spec (clamped rlimits).
	Warnings []string

	tty          bool
	config       []byte
	specR, specW *os.File
	syncR, syncW *os.File
	sockP, sockC *os.File // the pty socket's parent and child ends
	master       *os.File
	released     bool
}

// check reports what makes spec unusable, for either way of starting it.
func (spec *ExecSpec) check() error {
	if len(spec.Args) == 0 || spec.Args[0] == "" {
		return errors.New("initproc: ExecSpec.Args is empty")
	}
	if spec.Dir != "" && !path.IsAbs(spec.Dir) {
		return fmt.Errorf("initproc: ExecSpec.Dir %q is not absolute", spec.Dir)
	}
	return nil
}

// ExecCommand prepares, without starting, the exec child for spec.
func ExecCommand(spec *ExecSpec) (_ *ExecProcess, retErr error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	exe, err := exePath()
	if err != nil {
		return nil, err
	}
	p := &ExecProcess{tty: spec.TTY}
	defer func() {
		if retErr != nil {
			p.closeAll()
		}
	}()
	cfg := execStageConfig{Spec: *spec}
	if cfg.Caps, err = capSet(spec.Capabilities); err != nil {
		return nil, err
	}
	cfg.Spec.Rlimits, p.Warnings = clampRlimits(spec.Rlimits)
	cfg.Seccomp = filterBytes(spec.SeccompFilter)
	cfg.Spec.SeccompFilter = nil
	if p.config, err = json.Marshal(&cfg); err != nil {
		return nil, fmt.Errorf("encoding the exec spec: %w", err)
	}
	if p.specR, p.specW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.syncR, p.syncW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if spec.TTY {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("socketpair for the terminal: %w", err)
		}
		p.sockP, p.sockC = os.NewFile(uintptr(fds[0]), "pty socket"), os.NewFile(uintptr(fds[1]), "pty socket")
	}
	p.Cmd = &Cmd{
		Path: exe,
		Args: []string{"berth-exec"},
		Env:  []string{stageEnv + "=" + stageExec, "GOMAXPROCS=1", "GOGC=off"},
		// fds 3 to 6; the mount namespace's fd is added by Start. A nil
		// entry leaves the fd closed in the child.
		ExtraFiles: []*os.File{p.specR, p.syncW, nil, p.sockC},
		// No SysProcAttr.Pdeathsig: the forked child checks getppid against
		// the parent's pid to close a race, and getppid is 0 in the
		// container's pid namespace, so every child SIGKILLed itself. The
		// stage arms the signal itself (runExecStage).
	}
	return p, nil
}

// Start joins the namespaces of ns on a locked OS thread, starts the child
// from it and restores the thread. The child blocks until Release, having
// done nothing but start the Go runtime: place it in the container's cgroup
// (Pid) before that. Unless ExecSpec.Detached, the child is SIGKILLed when
// that thread exits, which Go threads do only when a goroutine exits while
// locked to one, as for Command. ns may be closed once Start returns.
func (p *ExecProcess) Start(ns *Namespaces) error {
	mnt, ok := ns.fds["mnt"]
	if !ok {
		return errors.New("initproc: Namespaces are closed")
	}
	// The os.File gets its own duplicate: an *os.File closes its fd when it
	// is garbage collected, and wrapping ns's fd would close that number a
	// second time, later, when it may belong to anything else in the
	// program (a pipe of another container's start, say).
	dup, err := unix.FcntlInt(uintptr(mnt), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return fmt.Errorf("duplicating the mount namespace fd: %w", err)
	}
	mntFile := os.NewFile(uintptr(dup), "mnt namespace")
	defer mntFile.Close()
	p.Cmd.ExtraFiles[mntNsFd-3] = mntFile
	errc := make(chan error, 1)
	onOtherThread(func() {
		restore, err := ns.join()
		if err == nil {
			if err = p.Cmd.Start(); err != nil {
				err = fmt.Errorf("starting the exec child: %w", err)
			}
		}
		if rerr := restore(); rerr != nil {
			if err == nil {
				p.Cmd.Process.Kill()
				p.Cmd.Wait()
			}
			errc <- fmt.Errorf("returning a thread to the host's namespaces: %w", rerr)
			// Still locked and in the container's namespaces: park it for
			// good; exiting could kill other children started from it.
			select {}
		}
		errc <- err
	})
	err = <-errc
	// The child holds its own copies; ours would keep the pipes from ever
	// reporting EOF.
	for _, f := range []*os.File{p.specR, p.syncW, p.sockC} {
		if f != nil {
			f.Close()
		}
	}
	p.specR, p.syncW, p.sockC = nil, nil, nil
	if err != nil {
		p.closeAll()
	}
	return err
}

// onOtherThread runs fn on a goroutine locked to an OS thread other than
// the program's main thread, and unlocks it after. While fn runs, the
// thread may be in a container's namespaces, and the process's own
// /proc/self/ns and /proc/self/net show the main thread's.
func onOtherThread(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			fn()
			runtime.UnlockOSThread()
			return
		}
		// While this goroutine holds the main thread, a goroutine that locks
		// a thread gets another one.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			fn()
			runtime.UnlockOSThread()
		}()
		<-locked
		runtime.UnlockOSThread()
	}()
}

// join enters the namespaces on the calling thread, which the caller has
// locked, and returns the function that puts the thread back where it was
// (also after a failure part way).
func (n *Namespaces) join() (restore func() error, err error) {
	var saved []int // fds of the thread's own namespaces, in joinOrder
	var joined int
	restore = func() error {
		var first error
		for i := joined - 1; i >= 0; i-- {
			if err := unix.Setns(saved[i], joinOrder[i].flag); err != nil && first == nil {
				first = fmt.Errorf("setns %s: %w", joinOrder[i].name, err)
			}
		}
		for _, fd := range saved {
			unix.Close(fd)
		}
		return first
	}
	for _, ns := range joinOrder {
		name := ns.name
		if name == "pid" {
			name = "pid_for_children" // what setns changes for this thread
		}
		fd, err := unix.Open("/proc/thread-self/ns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return restore, fmt.Errorf("opening this thread's %s namespace: %w", name, err)
		}
		saved = append(saved, fd)
	}
	for _, ns := range joinOrder {
		if err := unix.Setns(n.fds[ns.name], ns.flag); err != nil {
			return restore, fmt.Errorf("joining the container's %s namespace: %w", ns.name, err)
		}
		joined++
	}
	return restore, nil
}

// Pid returns the child's pid in the caller's pid namespace; valid after
// Start.
func (p *ExecProcess) Pid() int { return p.Cmd.Process.Pid }

// Master returns the master side of the process's terminal (ExecSpec.TTY),
// in non-blocking mode, after a successful Release; the caller owns it.
func (p *ExecProcess) Master() *os.File { return p.master }

// Release lets the started child join the mount namespace and set itself
// up, and waits until it execve's the command (nil) or fails: a
// *SetupError, with ExitCode 127 or 126 when the command was not found or
// not executable. Either way the caller must call Wait. To bound Release,
// kill Cmd.Process.
func (p *ExecProcess) Release() error {
	if p.released {
		return errors.New("initproc: Release called twice")
	}
	p.released = true
	_, werr := p.specW.Write(p.config)
	p.specW.Close()
	p.specW = nil
	if p.tty {
		m, err := recvFd(p.sockP)
		p.sockP.Close()
		p.sockP = nil
		if err == nil {
			p.master = m
		}
	}
	out, rerr := io.ReadAll(p.syncR)
	p.syncR.Close()
	p.syncR = nil
	execed, err := decodeReport("exec setup", "the exec stage", out, werr, rerr)
	if execed && (!p.tty || p.master != nil) {
		return nil
	}
	if p.master != nil {
		p.master.Close()
		p.master = nil
	}
	if execed { // reached execve without handing over its terminal
		return &SetupError{Step: "start", Msg: "the exec stage exited before reaching execve without a report (see its stderr)"}
	}
	return err
}

// Wait waits for the process to exit, like Cmd.Wait. Call it once.
func (p *ExecProcess) Wait() error {
	err := p.Cmd.Wait()
	p.closeAll()
	return err
}

func (p *ExecProcess) closeAll() {
	for _, f := range []*os.File{p.specR, p.specW, p.syncR, p.syncW, p.sockP, p.sockC} {
		if f != nil {
			f.Close()
		}
	}
}

// recvFd receives one fd sent with SCM_RIGHTS (sendFd) and returns it in
// non-blocking mode, so that os.File uses the poller and deadlines work.
func recvFd(sock *os.File) (*os.File, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("receiving the terminal: %w", err)
	}
	if n == 0 && oobn == 0 {
		return nil, errors.New("receiving the terminal: the exec child closed the socket")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receiving the terminal: bad control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receiving the terminal: %d fds, %v", len(fds), err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "/dev/ptmx (container)"), nil
}

// execMain is the exec stage's main; it returns only on error.
func execMain() {
	err := runExecStage()
	var se *SetupError
	if !errors.As(err, &se) {
		se = &SetupError{Step: "setup", Msg: err.Error()}
	}
	b, _ := json.Marshal(se)
	unix.Write(syncFd, b)
	os.Exit(1)
}

// runExecStage sets the process up in the container's mount namespace, in
// the Run stage's order for the steps they share (rlimits, tty, user,
// capabilities, working directory, no_new_privs, seccomp, execve).
func runExecStage() error {
	// Before anything else: no fd the parent leaked may be usable here
	// (CVE-2024-21626).
	if err := closeFdsAbove(ptySockFd); err != nil {
		return stepError("close inherited fds", "", err)
	}
	for _, fd := range []int{syncFd, mntNsFd, ptySockFd} {
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC) // ptySockFd may be closed
	}
	// Die with the thread that started us (see ExecCommand). Had it died
	// already, the spec pipe reads short and we exit below.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return stepError("PR_SET_PDEATHSIG", "", err)
	}
	// Container processes share our pid namespace from the start: keep
	// them out of our /proc/PID files (and ptrace) while we are root with
	// every capability. execve makes the user's program dumpable again.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return stepError("PR_SET_DUMPABLE", "", err)
	}
	// Blocks until the parent's Release: by then we are in the container's
	// cgroup.
	var cfg execStageConfig
	if err := readStageSpec(&cfg); err != nil {
		return err
	}
	s := &cfg.Spec
	if s.Detached {
		unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
	}

	// The mount namespace, on this (locked main) thread only: the thread
	// that will execve. setns wants an fs_struct of our own.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return stepError("unshare(CLONE_FS)", "", err)
	}
	if err := unix.Setns(mntNsFd, unix.CLONE_NEWNS); err != nil {
		return stepError("join the container's mount namespace", "", err)
	}
	unix.Close(mntNsFd)
	// setns put our root and cwd at the namespace's root, which is the
	// container's (it pivoted); make sure of the cwd all the same.
	if err := unix.Chdir("/"); err != nil {
		return stepError("chdir", "/", err)
	}

	for _, r := range s.Rlimits {
		if err := unix.Setrlimit(r.Type, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return stepError("setrlimit "+strconv.Itoa(r.Type), "", err)
		}
	}
	user := &Spec{User: s.User, GroupAdd: s.GroupAdd, Env: s.Env, Detached: s.Detached}
	if user.User == "" {
		user.User = "0"
	}
	if err := resolveUser(user); err != nil {
		return err
	}
	if s.TTY {
		if err := execTerminal(user.UID); err != nil {
			return err
		}
	} else if _, err := unix.Setsid(); err != nil { // see Direct.fork
		return stepError("setsid", "", err)
	}
	argv0, err := lookPath(s.Args[0], user.Env)
	if err != nil {
		return err
	}

	return dropPrivilegesAndExec(user, bytesFilter(cfg.Seccomp), cfg.Caps, s.NoNewPrivileges, s.Dir, argv0, s.Args, user.Env, func(string) {})
}

// execTerminal gives the process a terminal of the container's own devpts
// instance, as docker does, so that tty(1) names a /dev/pts entry the
// container has: it opens the container's ptmx, sends the master to the
// parent, and makes the slave its stdio and controlling terminal.
func execTerminal(uid uint32) error {
	// Not /dev/ptmx, a symlink the container may have changed: its devpts
	// mount's own ptmx, checked to be one.
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open", "/dev/pts/ptmx", err)
	}
	defer unix.Close(master)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(master, &fs); err != nil || fs.Type != unix.DEVPTS_SUPER_MAGIC {
		return &SetupError{Step: "open", Path: "/dev/pts/ptmx", Msg: "not on a devpts filesystem"}
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return stepError("unlock pty", "/dev/pts/ptmx", err)
	}
	// The peer by ioctl, not by a path the container could swap.
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if e != 0 {
		return stepError("TIOCGPTPEER", "/dev/pts/ptmx", e)
	}
	slave := int(r)
	defer unix.Close(slave)
	// The user owns its terminal, as with docker (the group stays tty's,
	// from the devpts mount's gid=5).
	if err := unix.Fchown(slave, int(uid), -1); err != nil {
		return stepError("chown terminal", "", err)
	}
	if err := unix.Sendmsg(ptySockFd, []byte{0}, unix.UnixRights(master), nil, 0); err != nil {
		return stepError("send terminal", "", err)
	}
	unix.Close(ptySockFd)
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return stepError("dup terminal", "", err)
		}
	}
	if _, err := unix.Setsid(); err != nil {
		return stepError("setsid", "", err)
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return stepError("TIOCSCTTY", "", err)
	}
	return nil
}
