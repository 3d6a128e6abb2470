package initproc

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The re-exec contract between Command and init: the child is the calling
// binary, run with exactly this environment variable and with the spec pipe
// on fd 3 and the sync pipe on fd 4. Both must hold; an environment variable
// alone (say, leaked into some unrelated program's environment) is ignored.
const (
	stageEnv  = "_BERTH_STAGE"
	stageInit = "init"
	specFd    = 3
	syncFd    = 4
)

// init runs the child stage when this process is one. It runs before the
// importer's main and before the test runner, because every berth importer
// imports this package; otherwise it returns after one Getenv.
func init() {
	stage, ok := os.LookupEnv(stageEnv)
	if !ok {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(specFd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		os.Unsetenv(stageEnv)
		return
	}
	dispatchTS, dispatchCPU = traceClock()
	switch stage {
	case stageInit:
		// Package init already runs on the main thread; lock it for good so
		// every per-thread credential, capability and seccomp change below
		// lands on the thread that finally calls execve.
		runtime.LockOSThread()
		childMain()
	case stageExec:
		// The exec stage (exec.go): same locking, for the same reason; it
		// also joins the container's mount namespace on this thread.
		runtime.LockOSThread()
		execMain()
	default:
		fmt.Fprintf(os.Stderr, "berth: unknown child stage %q\n", stage)
	}
	os.Exit(1)
}

// dispatchTS and dispatchCPU are the monotonic time and CPU time at which
// the stage was dispatched, for the step trace (stageConfig.Trace).
var dispatchTS, dispatchCPU int64

// traceClock returns the monotonic time and the process's CPU time, both in
// microseconds.
func traceClock() (mono, cpu int64) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ts.Nano() / 1000, ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
}

// sealedExe is the calling binary copied into a sealed memfd, made once per
// process on first use. Its fd is CLOEXEC in the parent and the child is
// exec'd by the path /proc/self/fd/N, which the kernel resolves in the forked
// child before execve closes the fd: the child ends up with the memfd only as
// its /proc/self/exe, never as an open fd, and with no writable path to the
// host binary (CVE-2019-5736: a container root opening /proc/PID/exe of a
// setup process for writing).
//
// Measured on this project's machine (2 cores, kernel 6.18, while other
// test suites kept the load average near 8, so idle figures will be lower),
// copying with sendfile into the memfd and sealing:
//
//	test binary, 3.8 MB:     ~0.9-1.5 ms   (BenchmarkSealedCopy)
//	20 MB file:              ~4.8-5.5 ms   (BenchmarkSealedCopy20MB, ≈0.25 ms/MB)
//	read-only bind instead:  ~0.05 ms, any size (BenchmarkROBind: a detached
//	  clone of /proc/self/exe's mount, made read-only; 0.17-0.23 ms when
//	  it was bound onto a scratch file, remounted, opened and detached)
//
// The bind-mount seal (bindSeal) is 5-25x cheaper, and a CLI starts one
// container per process, so it is the default: the container can reach the
// binary only as the child stage's /proc/PID/exe, which lies on a read-only
// mount no container can remount. The memfd copy, self-contained and sealed
// whatever path reaches it, is the fallback where the mount is refused.
// (While the child stage runs, opening its /proc/PID/exe for writing fails
// with ETXTBSY as well; TestHostBinaryCannotBeOverwritten checks both.)
var sealedExe struct {
	once sync.Once
	f    *os.File
	cost time.Duration
	err  error
}

// exePath returns the path the child is exec'd from, sealing the binary on
// first use.
func exePath() (string, error) {
	sealedExe.once.Do(func() {
		start := time.Now()
		sealedExe.f, sealedExe.err = bindSeal()
		if sealedExe.err != nil {
			sealedExe.f, sealedExe.err = sealCopy("/proc/self/exe")
		}
		sealedExe.cost = time.Since(start)
	})
	if sealedExe.err != nil {
		return "", sealedExe.err
	}
	return fmt.Sprintf("/proc/self/fd/%d", sealedExe.f.Fd()), nil
}

// minExeFd keeps the sealed binary's fd clear of the low numbers a forked
// child's fds are dup'd onto before execve. The child also moves fds to
// the numbers just above the highest one it is handed, which can be any:
// Cmd.Start checks for that (fdPathFor).
const minExeFd = 16

func sealCopy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sealing the binary: %w", err)
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return nil, fmt.Errorf("sealing the binary: stat %s: %w", path, err)
	}
	mfd, err := unix.MemfdCreate("berth-init", unix.MFD_ALLOW_SEALING|unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sealing the binary: memfd_create: %w", err)
	}
	fd, err := unix.FcntlInt(uintptr(mfd), unix.F_DUPFD_CLOEXEC, minExeFd)
	unix.Close(mfd)
	if err != nil {
		return nil, fmt.Errorf("sealing the binary: dup: %w", err)
	}
	f := os.NewFile(uintptr(fd), "berth-init (sealed)")
	fail := func(what string, err error) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("sealing the binary: %s: %w", what, err)
	}
	if err := unix.Ftruncate(fd, st.Size); err != nil {
		return fail("ftruncate", err)
	}
	var off int64
	for off < st.Size {
		n, err := unix.Sendfile(fd, int(src.Fd()), &off, int(st.Size-off))
		if err != nil && err != unix.EINTR && err != unix.EAGAIN {
			return fail("sendfile", err)
		}
		if n == 0 && err == nil {
			return fail("sendfile", fmt.Errorf("short copy: %d of %d bytes", off, st.Size))
		}
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fail("F_ADD_SEALS", err)
	}
	return f, nil
}

// bindSeal makes the binary read-only the way runc 1.2 does, without
// copying it: a detached bind mount of /proc/self/exe (open_tree with
// OPEN_TREE_CLONE), made read-only before anything can see it. Its fd pins
// the mount; exec'ing /proc/self/fd/N runs the binary through it, so
// /proc/PID/exe of the child stage is a file on a read-only mount and
// opening it for writing fails (EROFS), whatever the container does. The
// mount is never attached anywhere (runc's bind onto a scratch file, then
// detached, would stay on the host's /tmp were the program killed in
// between). It costs a fraction of a millisecond whatever the binary's
// size, where the memfd copy costs 0.25 ms per MB; the copy remains the
// fallback where mounting is not allowed.
func bindSeal() (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/proc/self/exe", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bind-mounting the binary: %w", err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("making the binary's mount read-only: %w", err)
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, minExeFd)
	unix.Close(fd)
	if err != nil {
		return nil, err
	}
	// Belt and braces: the path the child is exec'd from must refuse writes.
	if w, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", high), unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		unix.Close(w)
		unix.Close(high)
		return nil, fmt.Errorf("the read-only binary opened for writing")
	}
	return os.NewFile(uintptr(high), "berth-init (read-only)"), nil
}
