package berth

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SquatAbstract binds the abstract unix socket name (with its "@") the
// way an unprivileged local user can, as uid 65534, and listens on it if
// listen; the socket is closed at the end of the test. (Exported for the
// external tests.)
func SquatAbstract(t testing.TB, name string, listen bool) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: name}); err != nil {
		t.Fatalf("binding %s: %v", name, err)
	}
	if !listen {
		return
	}
	// The kernel records the credentials of the thread that listens. Only
	// this thread's effective uid changes: syscall.Setresuid would change
	// every thread of the program.
	runtime.LockOSThread()
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, ^uintptr(0), 65534, ^uintptr(0)); e != 0 {
		runtime.UnlockOSThread()
		t.Fatal(e)
	}
	lerr := syscall.Listen(fd, 8)
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e != 0 {
		panic("cannot take the thread back to root: " + e.Error()) // never hand the runtime a thread of another user
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		t.Fatal(lerr)
	}
}

// TestHostIPAMLockSquatted: the host-wide subnet lock, an abstract socket
// any local user can bind, taken by someone other than a root berth
// program is an error that says so, not a wait without end; taken by a
// root program, it is waited for.
func TestHostIPAMLockSquatted(t *testing.T) {
	if syscall.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	old := ipamLockName
	defer func() { ipamLockName = old }()
	for _, listen := range []bool{true, false} {
		ipamLockName = "@berth-ipam-test-" + newContainerID()[:12]
		SquatAbstract(t, ipamLockName, listen)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		unlock, err := hostIPAMLock(ctx)
		cancel()
		if err == nil {
			unlock()
			t.Fatalf("listen=%v: the lock was taken over a squatter", listen)
		}
		if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Errorf("listen=%v: waited for the squatter: %v after %v", listen, err, time.Since(start))
		}
		if listen && !strings.Contains(err.Error(), "uid 65534") {
			t.Errorf("the error does not name the squatter: %v", err)
		}
	}

	ipamLockName = "@berth-ipam-test-" + newContainerID()[:12]
	unlock, err := hostIPAMLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := hostIPAMLock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second take of a lock a root program holds: %v, want to wait until the deadline", err)
	}
}

// TestDropForwardWaitsForBridgeLock: the removal of berth's rules from the
// host's forward chain waits for the host-wide lock under which another
// root makes a bridge and lets it through that chain.
func TestDropForwardWaitsForBridgeLock(t *testing.T) {
	if syscall.Geteuid() != 0 {
		t.Skip("needs root for the host's forward chain")
	}
	old := ipamLockName
	defer func() { ipamLockName = old }()
	ipamLockName = "@berth-ipam-test-" + newContainerID()[:12]
	unlock, err := hostIPAMLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		dropForwardIfUnused()
		close(done)
	}()
	select {
	case <-done:
		unlock()
		t.Fatal("dropForwardIfUnused ran while a bridge was being made")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("dropForwardIfUnused still waits 5 s after the lock was let go")
	}
}

// HoldGC takes rt's garbage-collection lock exclusively, as a Prune does,
// until the returned function is called. (Exported for the external
// tests.)
func HoldGC(t testing.TB, rt *Runtime) func() {
	t.Helper()
	unlock, err := rt.store.Lock(context.Background(), "gc", true)
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}
