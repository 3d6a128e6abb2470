package initproc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/caps"
	"golang.org/x/sys/unix"
)

// A direct start makes a container without a child stage, so that no Go
// runtime starts per container (the child stage's start-up was most of a
// container's start-up CPU). A locked OS thread of the calling program
// does the child stage's work on itself: namespaces (unshare works per
// thread), the root filesystem, pivot_root, hostname, loopback, the user's
// ids, the working directory, the capability bounding set. It then forks
// the exec helper (helperImage, written for the moment in the container's
// /dev) into new pid and cgroup namespaces. The caller writes the helper
// its capability mask and seccomp filter at once; the helper drops the
// capabilities, sets no_new_privs and loads the filter while the thread
// deletes that file and mounts the container's /proc for the new pid
// namespace, and execs the user's program only on the go-ahead that
// follows.
//
// The thread is tainted (its mount namespace, root and fd table are the
// container's) and never runs another goroutine: it parks for as long as
// the container lives, because the parent-death signal of an attached
// container follows the thread that forked it, then exits.
//
// What the direct start cannot do sends a container to the child stage:
// rlimits (per process, so the thread cannot set them for the child
// alone), a container without no_new_privs (its filter would need
// CAP_SYS_ADMIN in the helper), an architecture without a helper, and a
// kernel whose procfs lacks the pidns option (Linux 6.18).

// DirectSupported reports whether spec can be started directly. A mount
// at /dev, or at the exec helper's path in it, would hide the helper the
// fork executes (see checkHelper): such a container starts in the child
// stage, as runc starts every container.
func DirectSupported(spec *Spec) bool {
	for _, m := range spec.Mounts {
		// A file bind in /proc (procFiles) would lie under the procfs the
		// direct start mounts after the fork, and one at or under
		// /sys/fs/cgroup under the cgroup filesystems.
		d := path.Clean("/" + m.Destination)
		if d == "/dev" || d == helperPath || inProc(d) || d == "/sys/fs/cgroup" || strings.HasPrefix(d, "/sys/fs/cgroup/") {
			return false
		}
	}
	// Sysctls are written once the network is wired, which the child
	// stage is released after.
	return spec.NoNewPrivileges && len(spec.Rlimits) == 0 && len(spec.Sysctls) == 0 && DirectAvailable()
}

// DirectAvailable reports whether this host and architecture start
// containers directly at all (DirectSupported then depends on the spec
// alone): with it, a child stage started ahead of need would go unused.
func DirectAvailable() bool {
	return helperELF() != nil && procPidnsOption()
}

// procPidnsOption reports whether procfs takes a pid namespace fd as the
// pidns option, which mounting the container's /proc from outside its pid
// namespace needs.
var procPidnsOption = sync.OnceValue(func() bool {
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fs)
	ns, err := unix.Open("/proc/thread-self/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(ns)
	return unix.FsconfigSetFd(fs, "pidns", ns) == nil
})

// Direct is a container being started directly: PrepareDirect has made its
// namespaces and root filesystem on a locked thread, which waits for Start.
type Direct struct {
	cfg  stageConfig // for an exec, the fields fork uses
	exec bool        // joins a running container (PrepareExec)
	prep func() error
	// netReady, when set, gets the thread's own network namespace once
	// loopback is up in it (see PrepareDirect).
	netReady func(ns *os.File)
	ownFiles bool // the thread has its own fd table (fork unshared it)
	tid      int
	argv0    string
	tty      *os.File // Run: the console; Exec: the terminal's slave
	// master is an exec's terminal, from the container's own devpts.
	master *os.File

	req  chan *startReq // nil request: abort
	resp chan error
	once sync.Once
}

// Placement moves the thread that forks a container's process into the
// container's v1 cgroups and out again, both on the thread itself (a
// thread moving itself spares the kernel a global lock: see
// cgroup.ThreadMove). Join may leave the thread in some of them on
// failure; LeaveSelf takes it out of as many as it can without opening a
// file, as the thread is then in the container's mount namespace.
type Placement interface {
	Join() error
	LeaveSelf()
}

type startReq struct {
	files    [3]*os.File
	cgroupFD int
	place    Placement
	filterR  *os.File
	statusW  *os.File
	pid      int
	placed   chan struct{} // closed once the thread is done with place
	done     chan struct{} // closed once the container's process has been waited for
	left     chan struct{} // closed once the thread has left the container's mount namespace
}

// PrepareDirect validates spec, writes its Files and makes the container's
// namespaces and root filesystem on a new locked thread. tty, for a
// container with a terminal, is the pty slave Start will pass as stdio.
// The caller then places the thread (Tid) in the container's cgroups and
// network, and calls Start or Abort.
//
// netReady, if not nil, is called from the thread as soon as the thread
// has its own network namespace (spec.NetNS empty) with loopback up,
// before the root filesystem is made, with an open file of that namespace
// (the callee closes it), so that the caller can wire the network
// meanwhile. It must not block. When PrepareDirect returns, it has been
// called or never will be.
//
// lateFiles, if not nil, gives spec.Files (which must then be empty) once
// they are known: the thread calls it, and may wait in it, after it has
// made the namespaces, the overlay, /dev and /sys, just before it binds
// the files, so that what they hold (a network's addresses) is worked out
// meanwhile. Its error ends the start.
func PrepareDirect(spec *Spec, tty *os.File, netReady func(ns *os.File), lateFiles func() (map[string][]byte, error)) (*Direct, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	if lateFiles != nil && (len(spec.Files) > 0 || spec.StateDir == "") {
		return nil, errors.New("initproc: late files need an empty Spec.Files and a Spec.StateDir")
	}
	cfg, _, err := stageConfigFor(spec) // no rlimits here: no warnings
	if err != nil {
		return nil, err
	}
	if lateFiles != nil {
		cfg.lateFiles = func() ([]fileMount, error) {
			files, err := lateFiles()
			if err != nil {
				return nil, err
			}
			return writeFiles(&Spec{Files: files, StateDir: spec.StateDir})
		}
	}
	d := &Direct{tty: tty, cfg: cfg, netReady: netReady}
	d.prep = d.prepare
	return d, d.launch()
}

// launch starts the thread, which runs d.prep and waits for Start.
func (d *Direct) launch() error {
	runtimeFDs() // before the first fork, from the shared table
	d.req, d.resp = make(chan *startReq), make(chan error)
	go OnOwnThread(d.thread)
	return <-d.resp
}

// Tid is the thread that holds the container's namespaces until Start,
// for placing it in the container's v1 cgroups.
func (d *Direct) Tid() int { return d.tid }

// Abort ends an unstarted direct start; its thread exits and its
// namespaces and mounts go with it.
func (d *Direct) Abort() {
	d.once.Do(func() { d.req <- nil })
}

// Start forks the container's process with stdio as its standard streams,
// inside the unified cgroup cgroupFD when it is not -1 and inside the v1
// cgroups place moves the thread into (if place is not nil: the thread
// joins them just before the fork and leaves them right after, as far as
// LeaveSelf can; the cgroup namespace is rooted at the cgroups of the
// thread, and of cgroupFD, at the fork). afterFork runs once the process
// exists and the thread has left, before the process runs anything of the
// user's, or with pid 0 when the fork failed, before the thread ends; an
// error from it (a limit it could not set) ends the process before it
// runs anything of the user's and is Start's.
// Start returns once the user's program runs, or why it could not. A
// *SetupError with ExitCode 126 or 127 means the program was not
// executable or not found.
func (d *Direct) Start(stdio [3]*os.File, cgroupFD int, place Placement, afterFork func(pid int) error) (_ *Process, retErr error) {
	if d.exec && d.tty != nil {
		stdio = [3]*os.File{d.tty, d.tty, d.tty}
		defer func() {
			d.tty.Close() // the child has it
			if retErr != nil {
				d.master.Close()
			}
		}()
	}
	filterR, filterW, err := os.Pipe()
	if err != nil {
		d.Abort()
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		filterR.Close()
		filterW.Close()
		d.Abort()
		return nil, err
	}
	defer statusR.Close()
	r := &startReq{files: stdio, cgroupFD: cgroupFD, place: place, filterR: filterR, statusW: statusW, placed: make(chan struct{}), done: make(chan struct{}), left: make(chan struct{})}
	d.once.Do(func() { d.req <- r })
	err = <-d.resp // forked
	// Only the helper holds these ends now: a write to a helper that died
	// fails instead of waiting for a reader that is not there.
	filterR.Close()
	statusW.Close()
	if err != nil {
		filterW.Close()
		afterFork(0) // no process; the caller finishes the thread's way out all the same
		close(r.done)
		return nil, err
	}
	// The helper drops its capabilities and loads its filter while the
	// thread leaves the cgroups and mounts its /proc and this program
	// finishes placing it (afterFork): it runs nothing of the user's
	// before the go-ahead below.
	// A Run's fork sets Pdeathsig itself, but into a pid namespace it
	// joins (see helperPayload).
	orphanKill := (d.exec || d.cfg.Spec.PidNS != "") && !d.cfg.Spec.Detached
	blockSignals := d.cfg.Spec.Init && !d.exec // the helper execs the init
	_, werr := filterW.Write(helperPayload(helperMask(d.cfg.Caps, d.cfg.Spec.UID), d.cfg.Seccomp, orphanKill, blockSignals))
	proc, _ := os.FindProcess(r.pid) // a handle on a pidfd; it never fails on Linux
	// The thread is out of the cgroups, as far as it could go itself.
	<-r.placed
	// Wait returns once the thread has let go of the container's mount
	// namespace, so that its overlay is unmounted by then (for Remove,
	// Commit, cp right after the exit).
	p := &Process{Cmd: &Cmd{Process: proc}, onWait: func() {
		close(r.done)
		if !d.cfg.Spec.Detached {
			<-r.left
		}
	}}
	placeErr := afterFork(r.pid)
	if err := <-d.resp; err != nil || placeErr != nil { // /proc replaced
		filterW.Close()
		p.Cmd.Process.Kill()
		p.Wait()
		if err == nil {
			err = placeErr
		}
		return nil, err
	}
	var status []byte
	var rerr error
	if orphanKill && werr == nil {
		// Go ahead only once the parent-death signal is armed: a program
		// killed before that would leave the process running. The helper
		// armed it before its filter, so this rarely waits.
		buf := make([]byte, 8)
		n, err := statusR.Read(buf)
		status, rerr = buf[:n], err
		if armed, _, _ := helperStatus(status); !armed {
			werr = errors.New("the helper did not arm its parent-death signal")
		}
	}
	if werr == nil {
		_, werr = filterW.Write([]byte{helperGo})
	}
	filterW.Close()
	if rerr == nil {
		rest, err := io.ReadAll(statusR)
		status, rerr = append(status, rest...), err
	}
	armed, errno, ok := helperStatus(status)
	switch {
	case ok && errno != 0:
		if blockSignals {
			return p, execError(InitPath, errno) // the helper execs the init
		}
		return p, execError(d.argv0, errno)
	case !ok || armed != orphanKill || werr != nil || rerr != nil:
		return p, fmt.Errorf("container start: the exec helper did not report (write %v, read %v, %q)", werr, rerr, status)
	}
	return p, nil
}

// thread is the locked thread's life; see the comment at the top.
func (d *Direct) thread() {
	d.tid = unix.Gettid()
	if err := d.prep(); err != nil {
		d.resp <- err
		return
	}
	d.resp <- nil
	r := <-d.req
	if r == nil {
		return
	}
	var pid int
	var err error
	if r.place != nil {
		if err = r.place.Join(); err != nil {
			err = fmt.Errorf("placing the process in the container's cgroup: %w", err)
		}
	}
	if err == nil {
		pid, err = d.fork(r)
	}
	r.pid = pid
	if err == nil {
		// Forked: the caller writes the helper its payload while this
		// thread leaves the cgroups.
		d.resp <- nil
	}
	if r.place != nil {
		r.place.LeaveSelf()
	}
	close(r.placed)
	// This thread's copy of the fd table holds every fd the program had at
	// the fork, the write ends of the container's pipes and of other
	// containers' among them; parked with them, it would keep those pipes
	// from ever reporting EOF. Only the Go runtime's own fds stay. (Never
	// in a table the thread failed to make its own: that one is the
	// program's.) The held tasks files LeaveSelf wrote through are among
	// them.
	if d.ownFiles {
		closeAllBut(runtimeFDs())
	}
	if err != nil {
		d.resp <- err
		// Exit only once the caller has taken this thread out of the
		// container's cgroups: an exiting thread lingers in them a moment,
		// and the caller's cleanup would find them busy.
		<-r.done
		return
	}
	if d.exec {
		d.resp <- nil // the container's /proc is there already
	} else {
		d.resp <- d.replaceProc(pid)
	}
	if !d.cfg.Spec.Detached {
		<-r.done
		leaveMountNamespace()
		close(r.left)
	}
}

// prepare is runStage up to the point where the child stage would drop
// its privileges, on this thread.
func (d *Direct) prepare() error {
	s := &d.cfg.Spec
	// The network namespace first, on its own: whoever wires it (veths,
	// addresses, the name server) starts on another CPU while this thread
	// makes the other namespaces and the root filesystem.
	if s.NetNS == "" {
		if err := enterNewNetNS(); err != nil {
			return err
		}
	} else if err := joinNetNS(s.NetNS); err != nil {
		return err
	} else if err := loopbackUp(); err != nil {
		return stepError("bring up lo", "", err)
	}
	if s.NetNS == "" && d.netReady != nil {
		// Opened here, on the thread, which is alive: the namespace is
		// pinned before anything else can happen to the thread.
		ns, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return stepError("open the network namespace", "/proc/thread-self/ns/net", err)
		}
		d.netReady(ns)
	}
	if err := joinIpcUTS(s); err != nil {
		return err
	}
	if s.PidNS != "" {
		// The fork's pid namespace (fork leaves CLONE_NEWPID out).
		if err := joinNS(s.PidNS, unix.CLONE_NEWPID, "pid"); err != nil {
			return err
		}
	}
	flags := unix.CLONE_FS | unix.CLONE_NEWNS
	if s.IpcNS == "" {
		flags |= unix.CLONE_NEWIPC
	}
	if s.UTSNS == "" {
		flags |= unix.CLONE_NEWUTS
	}
	if err := unix.Unshare(flags); err != nil {
		return stepError("unshare namespaces", "", err)
	}
	unix.Umask(0)
	console := -1
	if d.tty != nil {
		console = int(d.tty.Fd())
	}
	// No procfs in the container's tree until its own (replaceProc): an
	// image's symlinks (/etc/passwd → /proc/self/root/etc/passwd) would
	// reach the host's files through the host's.
	if err := setupRootfs(&d.cfg, console, true); err != nil {
		return err
	}
	if err := setUTSNames(s); err != nil {
		return err
	}
	callerGIDs := prepareUser(s)
	if err := resolveUser(s); err != nil {
		return err
	}
	if callerGIDs != nil {
		s.AdditionalGIDs = callerGIDs
	}
	var err error
	if d.argv0, err = lookPath(s.Args[0], s.Env); err != nil {
		return err
	}
	// The working directory, resolved inside the root with no magic links
	// (CVE-2024-21626): the child only does chdir("."), as the user, which
	// checks that the user may enter it.
	if err := enterWorkdir(s.Dir); err != nil {
		return err
	}
	if err := limitCaps(d.cfg.Caps, s.UID); err != nil {
		return err
	}
	unix.Umask(0o022)
	return nil
}

// enterWorkdir makes dir ("" is "/"), resolved inside this thread's root
// with no magic links (CVE-2024-21626), this thread's working directory.
// The child only does chdir("."), as the user, which checks that the user
// may enter it.
func enterWorkdir(dir string) error {
	if dir == "" {
		dir = "/"
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open root", "/", err)
	}
	wd, err := openIn(root, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	unix.Close(root)
	if err != nil {
		return stepError("chdir", dir, err)
	}
	defer unix.Close(wd)
	// Nothing under /proc can be one: for a Run it is still an empty
	// directory (see replaceProc), for an Exec the container's procfs.
	var fs unix.Statfs_t
	if err := unix.Fstatfs(wd, &fs); err != nil || fs.Type == unix.PROC_SUPER_MAGIC {
		return &SetupError{Step: "chdir", Path: dir, Msg: "the working directory is on /proc", Errno: unix.EINVAL}
	}
	if err := unix.Fchdir(wd); err != nil {
		return stepError("chdir", dir, err)
	}
	return nil
}

// limitCaps leaves this thread's inheritable and ambient sets empty and,
// for a process that will not run as root, its bounding set at keep, which
// is what a child gets; the thread keeps its effective capabilities for
// what it does after the fork. A root process's helper drops its bounding
// set itself (helperMask): until then it holds every capability, which
// keeps the container's processes, root but with fewer, from ptracing it.
func limitCaps(keep caps.Set, uid uint32) error {
	if uid != 0 {
		if err := caps.DropBounding(keep); err != nil {
			return stepError("capability bounding set", "", err)
		}
	}
	if err := clearInheritable(); err != nil {
		return stepError("capset", "", err)
	}
	if err := caps.ClearAmbient(); err != nil {
		return stepError("ambient capabilities", "", err)
	}
	return nil
}

// fork starts the exec helper as the container's first process.
func (d *Direct) fork(r *startReq) (int, error) {
	s := &d.cfg.Spec
	// A private copy of the fd table, every fd in it close-on-exec: nothing
	// of the program's crosses into the container but the stdio below.
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return 0, stepError("unshare files", "", err)
	}
	d.ownFiles = true
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, stepError("close_range", "", err)
	}
	sys := &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: s.AdditionalGIDs},
	}
	if sys.Credential.Groups == nil {
		sys.Credential.Groups = []uint32{}
	}
	if !d.exec {
		sys.Cloneflags = unix.CLONE_NEWPID | unix.CLONE_NEWCGROUP
		if s.PidNS != "" || s.PidHost {
			// The caller's, or the one prepare joined, where the helper
			// arms the parent-death signal (helperPayload).
			sys.Cloneflags = unix.CLONE_NEWCGROUP
		}
		if !s.Detached && s.PidNS == "" {
			sys.Pdeathsig = syscall.SIGKILL
		}
	}
	// A session of its own, a terminal or not (runc's setsid): left in
	// the caller's, the container kept the caller's controlling terminal,
	// and with it /dev/tty, where it could read what the user types and,
	// where TIOCSTI is allowed, type commands into the caller's shell.
	sys.Setsid = true
	if s.TTY {
		sys.Setctty, sys.Ctty = true, 0
	}
	if r.cgroupFD >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, r.cgroupFD
	}
	files := []uintptr{r.files[0].Fd(), r.files[1].Fd(), r.files[2].Fd(), r.filterR.Fd(), r.statusW.Fd()}
	argv := append([]string{d.argv0}, s.Args...)
	if s.Init && !d.exec {
		// The helper execs the init, which runs the program as its child.
		argv = append([]string{InitPath}, initArgv(d.argv0, s.Args)...)
	}
	exe := helperPath // a Run's container has no /proc yet
	if d.exec {
		// The container's /proc, the child's own fds: the helper's fd must
		// not be one the fork moves the others to (see fdPathFor).
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f)
		}
		path, release, err := fdPathForFds("/proc/self/fd/"+strconv.Itoa(helperFD()), fds)
		if err != nil {
			return 0, stepError("place the exec helper's fd", "", err)
		}
		defer release()
		exe = path
	}
	attr := &syscall.ProcAttr{Dir: ".", Env: s.Env, Files: files, Sys: sys}
	pid, err := syscall.ForkExec(exe, argv, attr)
	// ETXTBSY: a process another thread of this program forked while the
	// helper's file was open for writing holds that fd until its own exec,
	// a moment (Go's golang.org/issue/22315).
	for try := 0; err == syscall.ETXTBSY && try < 50; try++ {
		time.Sleep(time.Millisecond)
		pid, err = syscall.ForkExec(exe, argv, attr)
	}
	if err != nil {
		// The child's steps that can fail: the credentials, chdir(".") as
		// the user (EACCES: the user may not enter the working directory)
		// and the helper's exec.
		se := &SetupError{Step: "start the container process (user, working directory, exec helper)", Path: s.Dir}
		if errno, ok := err.(syscall.Errno); ok {
			se.Errno = errno
		} else {
			se.Msg = err.Error()
		}
		return 0, se
	}
	return pid, nil
}

// replaceProc deletes the helper's file and mounts the container's /proc,
// for its pid namespace, masked as Docker does (unless privileged).
func (d *Direct) replaceProc(pid int) error {
	pidfd, err := unix.PidfdOpen(pid, 0) // this thread has no procfs to find its namespaces in
	if err != nil {
		return stepError("open pidfd", "", err)
	}
	defer unix.Close(pidfd)
	pidns, err := namespaceOf(pidfd, pidfdGetPidNamespace)
	if err != nil {
		return stepError("open pid namespace", "", err)
	}
	defer unix.Close(pidns)
	// The helper runs from its own mapping now; nothing of it stays in the
	// container's tree.
	if err := unix.Unlink(helperPath); err != nil {
		return stepError("remove the exec helper", helperPath, err)
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open root", "/", err)
	}
	defer unix.Close(root)
	target, err := openIn(root, "/proc", unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		return stepError("mount proc", "/proc", err)
	}
	defer unix.Close(target)
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return stepError("mount proc", "/proc", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetFd(fs, "pidns", pidns); err != nil {
		return stepError("mount proc (pidns)", "/proc", err)
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return stepError("mount proc", "/proc", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return stepError("mount proc", "/proc", err)
	}
	defer unix.Close(mnt)
	if err := unix.MoveMount(mnt, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return stepError("mount proc", "/proc", err)
	}
	if len(d.cfg.Spec.CgroupFS) > 0 {
		// The cgroup filesystems show the mounting thread's cgroup
		// namespace: the process's, which the fork made.
		cgns, err := namespaceOf(pidfd, pidfdGetCgroupNamespace)
		if err != nil {
			return stepError("open cgroup namespace", "", err)
		}
		err = unix.Setns(cgns, unix.CLONE_NEWCGROUP)
		unix.Close(cgns)
		if err != nil {
			return stepError("join cgroup namespace", "", err)
		}
		if err := mountCgroups(&d.cfg.Spec, ""); err != nil {
			return err
		}
	}
	if d.cfg.Spec.Privileged {
		return nil
	}
	return maskPaths(root, "/proc/")
}

// clearInheritable empties this thread's inheritable capabilities and
// keeps its effective and permitted ones.
func clearInheritable() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	if data[0].Inheritable == 0 && data[1].Inheritable == 0 {
		return nil
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	return unix.Capset(&hdr, &data[0])
}

// runtimeFDs lists the fds the Go runtime uses by number from any thread
// (its epoll instance and the eventfd that wakes it), found once as this
// process's anonymous eventpoll and eventfd files. A thread with its own
// fd table must keep them: the runtime writes to the eventfd from
// whichever thread hands off its P, and a failed write is fatal.
var runtimeFDs = sync.OnceValue(func() []int {
	// A pipe is pollable: making one starts the runtime's poller if
	// nothing has yet.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	names, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var keep []int
	for _, e := range names {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && (l == "anon_inode:[eventpoll]" || l == "anon_inode:[eventfd]") {
			keep = append(keep, fd)
		}
	}
	sort.Ints(keep)
	return keep
})

// closeAllBut closes every fd from 3 up except keep (sorted).
func closeAllBut(keep []int) {
	from := uint(3)
	for _, k := range keep {
		if uint(k) > from {
			unix.CloseRange(from, uint(k)-1, 0)
		}
		if uint(k)+1 > from {
			from = uint(k) + 1
		}
	}
	unix.CloseRange(from, ^uint(0), 0)
}

// OnOwnThread runs fn on the current goroutine locked to an OS thread that
// is neither the process's main thread nor the parent of any process, and
// never unlocks it: the Go runtime ends the thread when the goroutine
// returns, so whatever fn changes about it (namespaces, fd table) goes
// with it. The main thread is the exception Go cannot end (it parks it
// forever instead), and /proc/self shows its namespaces and fds. A thread
// with children is avoided because a child's parent-death signal (armed
// per thread, by os/exec callers as much as by berth) fires when the
// thread ends: whatever else the program started from that thread would
// be killed. In either case the job moves to another thread while this
// one stays locked, so that the new goroutine cannot land on it.
func OnOwnThread(fn func()) {
	runtime.LockOSThread()
	if tid := unix.Gettid(); tid != unix.Getpid() && childless(tid) {
		fn() // never unlocked: the thread must die with what fn changed
		return
	}
	locked := make(chan struct{})
	go OnOwnThread(func() {
		close(locked)
		fn()
	})
	<-locked
	runtime.UnlockOSThread() // untouched
}

// childless reports whether thread tid of this process has no child. A
// kernel without the children file (CONFIG_PROC_CHILDREN) cannot say, and
// every thread passes.
func childless(tid int) bool {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/children")
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && len(b) == 0
}

// The pidfd ioctls that open a process's namespaces (Linux 6.11), which
// x/sys/unix does not define yet: _IO(0xFF, 1), _IO(0xFF, 3) and
// _IO(0xFF, 5).
const (
	pidfdGetCgroupNamespace = 0xFF01
	pidfdGetMntNamespace    = 0xFF03
	pidfdGetPidNamespace    = 0xFF05
)

// pidfdNamespace opens a namespace of process pid (req one of the pidfd
// ioctls above) through a pidfd, which needs no procfs.
func pidfdNamespace(pid int, req uintptr) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pidfd)
	return namespaceOf(pidfd, req)
}

// namespaceOf opens a namespace of the process of pidfd (req one of the
// pidfd ioctls above).
func namespaceOf(pidfd int, req uintptr) (int, error) {
	ns, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(pidfd), req, 0)
	if e != 0 {
		return -1, e
	}
	return int(ns), nil
}

// leaveMountNamespace moves this thread into the mount namespace of the
// process's main thread (the host's), dropping its hold on a container's.
// It is best effort: the thread ends soon after anyway.
func leaveMountNamespace() {
	ns, err := pidfdNamespace(os.Getpid(), pidfdGetMntNamespace)
	if err != nil {
		return
	}
	unix.Setns(ns, unix.CLONE_NEWNS)
	unix.Close(ns)
}
