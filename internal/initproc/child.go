package initproc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/berth-dev/berth/internal/caps"
	"golang.org/x/sys/unix"
)

// childMain runs the stage and reports its failure; it returns only on error.
// Success is execve.
func childMain() {
	err := runStage()
	var se *SetupError
	if !errors.As(err, &se) {
		se = &SetupError{Step: "setup", Msg: err.Error()}
	}
	b, _ := json.Marshal(se)
	unix.Write(syncFd, b)
	os.Exit(1)
}

// stepError wraps a failing system call with the step and path.
func stepError(step, p string, err error) error {
	se := &SetupError{Step: step, Path: p}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		se.Errno = errno
	} else if err != nil {
		se.Msg = err.Error()
	}
	return se
}

// setUTSNames names the container's UTS namespace: its hostname and NIS
// domain name, where given.
func setUTSNames(s *Spec) error {
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return stepError("sethostname", s.Hostname, err)
		}
	}
	if s.Domainname != "" {
		if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
			return stepError("setdomainname", s.Domainname, err)
		}
	}
	return nil
}

// runStage is the container setup, in runc's order (libcontainer
// standard_init_linux.go and rootfs_linux.go): close leaked fds, sysctls,
// mounts, pivot_root, hostname, network, rlimits, tty, user, capabilities,
// no_new_privs, seccomp, execve. Each step's comment says why it sits where
// it does.
func runStage() error {
	// A parent-death signal of its own from the start, for a child
	// started into a pid namespace it joins without Go's (see Command),
	// until setupUser arms it again after the uid change; a parent that
	// died before this leaves the spec pipe at EOF, and the stage ends.
	if os.Getenv(stageOwnDeathSignal) != "" {
		unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	}
	// Before anything else, so that no fd the parent leaked (every fd without
	// CLOEXEC in the parent survives the fork and exec) is usable during setup:
	// CVE-2024-21626 chdir'ed through such an fd into the host.
	if err := closeFdsAbove(syncFd); err != nil {
		return stepError("close inherited fds", "", err)
	}
	if _, err := unix.FcntlInt(syncFd, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return stepError("sync pipe", "", err)
	}

	// Blocks until the parent's Release: by then the parent has put us in our
	// cgroup and wired the network.
	var cfg stageConfig
	if err := readStageSpec(&cfg); err != nil {
		return err
	}
	s := &cfg.Spec
	// A child started ahead of need got the parent-death signal by default;
	// a detached container must outlive its parent.
	if s.Detached {
		unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
	}
	trace := func(string) {}
	if cfg.Trace {
		trace = func(step string) {
			ts, cpu := traceClock()
			os.Stderr.WriteString("berth-trace " + step + " " + strconv.FormatInt(ts, 10) + " " + strconv.FormatInt(cpu, 10) + "\n")
		}
		os.Stderr.WriteString("berth-trace dispatch " + strconv.FormatInt(dispatchTS, 10) + " " + strconv.FormatInt(dispatchCPU, 10) + "\n")
	}
	trace("released")

	// Only now: the cgroup namespace is rooted at the cgroup we are in when
	// unsharing, and the parent moved us there before Release.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return stepError("unshare cgroup namespace", "", err)
	}
	if s.NetNS != "" {
		if err := joinNetNS(s.NetNS); err != nil {
			return err
		}
	}
	if err := joinIpcUTS(s); err != nil {
		return err
	}
	if err := writeSysctls(s); err != nil {
		return err
	}
	// Device nodes and dirs get exactly the modes asked for; the user's
	// program gets Docker's 022 back right before execve.
	unix.Umask(0)

	console := -1
	if s.TTY {
		console = 0
	}
	if err := setupRootfs(&cfg, console, false); err != nil {
		return err
	}
	trace("rootfs")
	if err := setUTSNames(s); err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return stepError("bring up lo", "", err)
	}
	for _, r := range s.Rlimits {
		if err := unix.Setrlimit(r.Type, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return stepError("setrlimit "+strconv.Itoa(r.Type), "", err)
		}
	}
	if _, err := unix.Setsid(); err != nil { // see Direct.fork
		return stepError("setsid", "", err)
	}
	if s.TTY {
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
			return stepError("TIOCSCTTY", "/dev/console", err)
		}
	}

	// The container's own /etc/passwd and /etc/group, as it will see them.
	callerGIDs := prepareUser(s)
	if err := resolveUser(s); err != nil {
		return err
	}
	if callerGIDs != nil {
		s.AdditionalGIDs = callerGIDs
	}
	trace("hostname-net-rlimits")
	// Resolve the command while we can still report cleanly, as the
	// container's user would see the filesystem (after pivot_root).
	argv0, err := lookPath(s.Args[0], s.Env)
	if err != nil {
		return err
	}

	args := s.Args
	if s.Init {
		// The init runs the program as its child (see initImage).
		argv0, args = InitPath, initArgv(argv0, s.Args)
	}
	return dropPrivilegesAndExec(s, bytesFilter(cfg.Seccomp), cfg.Caps, s.NoNewPrivileges, s.Dir, argv0, args, s.Env, trace)
}

// prepareUser fills an empty Spec.User from its numeric ids and returns
// the caller's groups, which then replace the resolved ones (the caller
// chose them; only HOME is derived).
func prepareUser(s *Spec) []uint32 {
	if s.User != "" {
		return nil
	}
	s.User = strconv.FormatUint(uint64(s.UID), 10) + ":" + strconv.FormatUint(uint64(s.GID), 10)
	return s.AdditionalGIDs
}

// dropPrivilegesAndExec is the tail both stages (Run's and Exec's) share,
// in runc's order: seccomp (early only when no_new_privs is off), user and
// capabilities, the working directory with its CVE-2024-21626 check, fds
// closed at execve, no_new_privs and seccomp, execve. user carries the
// resolved UID, GID and groups. It returns only when something failed.
func dropPrivilegesAndExec(user *Spec, filter []unix.SockFilter, keep caps.Set, noNewPrivs bool, dir, argv0 string, args, env []string, trace func(string)) error {
	// Without no_new_privs the kernel only accepts a filter from a thread with
	// CAP_SYS_ADMIN, so load it while we still have it; every later syscall of
	// ours (setgroups, setresuid, capset, prctl, chdir, execve) is one the
	// default profile allows. With no_new_privs it goes last, as in runc.
	if len(filter) > 0 && !noNewPrivs {
		if err := loadFilter(filter); err != nil {
			return stepError("load seccomp filter", "", err)
		}
	}
	if err := setupUser(user, keep); err != nil {
		return err
	}
	// After the user switch, so that a directory the user may not enter is an
	// error as it is for Docker.
	if dir == "" {
		dir = "/"
	}
	if err := unix.Chdir(dir); err != nil {
		return stepError("chdir", dir, err)
	}
	// CVE-2024-21626: a working directory reached through a host fd is outside
	// our root, and getcwd then reports an unreachable (non-absolute) path.
	if wd, err := unix.Getwd(); err != nil || !path.IsAbs(wd) {
		return &SetupError{Step: "chdir", Path: dir, Msg: "working directory is outside the container root", Errno: syscall.ENOENT}
	}
	// Every fd we still hold (the sync pipe, the Go runtime's) goes away at
	// execve; only stdio crosses into the user's program.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return stepError("close_range", "", err)
	}
	unix.Umask(0o022)
	if user.Init {
		// For the init: a signal sent as soon as the start returns waits
		// for it (see helperBlockSignals); blocked first, none that was
		// ignored can end this stage once it is not. Nothing of ours runs
		// after.
		all := unix.Sigset_t{}
		for i := range all.Val {
			all.Val[i] = ^uint64(0)
		}
		unix.PthreadSigmask(unix.SIG_SETMASK, &all, nil)
	}
	defaultIgnoredSignals()
	trace("exec")
	// The filter last, as runc loads it: only the marker's write and the
	// execve are ours to pass it (a custom profile judges them too).
	if noNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return stepError("no_new_privs", "", err)
		}
		if len(filter) > 0 {
			if err := loadFilter(filter); err != nil {
				return stepError("load seccomp filter", "", err)
			}
		}
	}

	unix.Write(syncFd, []byte{execMarker})
	err := syscall.Exec(argv0, args, env)
	return execError(argv0, err)
}

// closeFdsAbove closes every fd above last that lacks CLOEXEC: anything
// the Go runtime or this package opens has CLOEXEC, anything without it
// came from the parent by accident.
func closeFdsAbove(last int) error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd <= last {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		unix.Close(fd)
	}
	return nil
}

// decodeReport reads what a child stage wrote on its sync pipe: the exec
// marker followed by EOF means it reached execve (execed); a JSON
// SetupError is how it failed. stage and who name it in messages.
func decodeReport(stage, who string, out []byte, werr, rerr error) (execed bool, err error) {
	if len(out) > 0 && out[0] == execMarker {
		out = out[1:]
		if len(out) == 0 && rerr == nil {
			return true, nil
		}
	}
	if len(out) > 0 {
		var se SetupError
		if err := json.Unmarshal(bytes.TrimSpace(out), &se); err != nil {
			return false, fmt.Errorf("%s failed with an unreadable report %q: %w", stage, out, err)
		}
		return false, &se
	}
	if werr != nil {
		return false, fmt.Errorf("%s: sending the spec to the child: %w", stage, werr)
	}
	if rerr != nil {
		return false, fmt.Errorf("%s: reading the child's report: %w", stage, rerr)
	}
	return false, &SetupError{Step: "start", Msg: who + " exited before reaching execve without a report (see its stderr)"}
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// setupUser switches to the container's user and leaves exactly the wanted
// capabilities. The raw syscalls are deliberate: they act on this thread only,
// the one that will execve (Go's syscall.Setuid would broadcast to every
// thread, and refuses to when cgo is linked in).
func setupUser(s *Spec, keep caps.Set) error {
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return stepError("PR_SET_KEEPCAPS", "", err)
	}
	// Needs CAP_SETPCAP in the effective set: before the uid change drops it.
	if err := caps.DropBounding(keep); err != nil {
		return stepError("capability bounding set", "", err)
	}
	gids := s.AdditionalGIDs
	var gp uintptr
	if len(gids) > 0 {
		gp = uintptr(unsafe.Pointer(&gids[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), gp, 0); e != 0 {
		return stepError("setgroups", "", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(s.GID), uintptr(s.GID), uintptr(s.GID)); e != 0 {
		return stepError("setresgid "+strconv.Itoa(int(s.GID)), "", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(s.UID), uintptr(s.UID), uintptr(s.UID)); e != 0 {
		return stepError("setresuid "+strconv.Itoa(int(s.UID)), "", e)
	}
	// A uid change clears the parent-death signal; without it a container
	// running as a user would outlive its parent.
	if !s.Detached {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			return stepError("PR_SET_PDEATHSIG", "", err)
		}
	}
	// Inheritable stays empty (Docker 23+, CVE-2022-24769).
	if err := caps.SetThread(keep, keep, 0); err != nil {
		return stepError("capset", "", err)
	}
	if err := caps.ClearAmbient(); err != nil {
		return stepError("ambient capabilities", "", err)
	}
	return nil
}

// lookPath finds name as the container's shell would, in the PATH of env
// (Docker's default when env has none), with Docker's exit codes for failure.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			return "", execError(name, err)
		}
		return name, nil
	}
	pathEnv := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	var denied error
	var dirs []string // an empty PATH has no directories, as for filepath.SplitList
	if pathEnv != "" {
		dirs = strings.Split(pathEnv, ":")
	}
	for _, dir := range dirs {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", execError(name, denied)
	}
	return "", &SetupError{Step: "exec", Path: name, Msg: "executable file not found in $PATH", ExitCode: ExitNotFound}
}

func checkExecutable(p string) error {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return syscall.EISDIR
	}
	if st.Mode&0o111 == 0 {
		return syscall.EACCES
	}
	return nil
}

// execError maps an exec failure to Docker's exit codes: 127 when the file
// (or its interpreter) is missing, 126 when it exists but cannot be run.
func execError(p string, err error) error {
	se := &SetupError{Step: "exec", Path: p, ExitCode: ExitNotExecutable}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		se.Errno = errno
		if errno == syscall.ENOENT || errno == syscall.ENOTDIR {
			se.ExitCode = ExitNotFound
		}
	} else {
		se.Msg = err.Error()
	}
	return se
}

// loadFilter installs a seccomp filter on the calling thread (the one that
// will execve).
func loadFilter(f []unix.SockFilter) error {
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return e
	}
	return nil
}

// joinNetNS moves the stage (one locked thread: package initialisation
// runs on the main thread, which later calls execve) into the network
// namespace at path, before /sys is mounted so that it shows that
// namespace's interfaces.
func joinNetNS(path string) error { return joinNS(path, unix.CLONE_NEWNET, "network") }

// joinNS moves this thread into the namespace of type nstype (named kind)
// at path. A pid namespace is the one the thread's children are forked
// into.
func joinNS(path string, nstype int, kind string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open "+kind+" namespace", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, nstype); err != nil {
		return stepError("join "+kind+" namespace", path, err)
	}
	return nil
}

// joinIpcUTS moves this thread into the IPC and UTS namespaces the spec
// names, before anything is mounted (/dev/mqueue shows the IPC
// namespace of whoever mounts it).
func joinIpcUTS(s *Spec) error {
	if s.IpcNS != "" {
		if err := joinNS(s.IpcNS, unix.CLONE_NEWIPC, "IPC"); err != nil {
			return err
		}
	}
	if s.UTSNS != "" {
		return joinNS(s.UTSNS, unix.CLONE_NEWUTS, "UTS")
	}
	return nil
}

// readStageSpec reads the spec the parent writes at Release from the spec
// pipe (blocking until then) and decodes it into cfg.
func readStageSpec(cfg any) error {
	spec := os.NewFile(specFd, "spec")
	data, err := io.ReadAll(spec)
	spec.Close()
	if err != nil {
		return stepError("read spec", "", err)
	}
	if err := json.Unmarshal(data, cfg); err != nil {
		return stepError("decode spec", "", err)
	}
	return nil
}

// writeSysctls writes kernel parameters through the host's /proc, which
// this process still sees: what a parameter of a namespace shows is
// decided by the namespaces of the process opening it, the container's.
// A net.* one is refused in the caller's network namespace (s.HostNetNS),
// which a container joining another's (NetNS) may have reached: that
// other container shares the caller's, or its pid was reused.
func writeSysctls(s *Spec) error {
	if s.HostNetNS != 0 {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return stepError("stat network namespace", "/proc/thread-self/ns/net", err)
		}
		for k := range s.Sysctls {
			if strings.HasPrefix(k, "net.") && st.Ino == s.HostNetNS {
				return &SetupError{Step: "set sysctl " + k, Path: s.NetNS, Msg: "not allowed in the host's network namespace, which this container shares"}
			}
		}
	}
	for k, v := range s.Sysctls {
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			_, err = unix.Write(fd, []byte(v))
			unix.Close(fd)
		}
		if err != nil {
			return stepError("set sysctl "+k+"="+v, p, err)
		}
	}
	return nil
}

// kernelSigaction is the kernel's struct sigaction on amd64 and arm64.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// defaultIgnoredSignals gives every signal this process ignores its
// default action back, right before execve, which keeps SIG_IGN: the
// child stage starts ignoring what the program that started it ignored
// (the Go runtime then leaves those alone), and a container's processes
// would too: a shell cannot trap an ignored SIGTERM, nor is a command run
// by the init stopped by one. (A direct start's helper does the same.)
func defaultIgnoredSignals() {
	const sigIgn = 1
	for sig := uintptr(1); sig <= 64; sig++ {
		var old kernelSigaction
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, sig, 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 || old.handler != sigIgn {
			continue
		}
		dfl := kernelSigaction{}
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, sig, uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	}
}
