package initproc

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runHelper execs the helper with argv and the filter bytes, and returns
// what the program printed and the errno the helper reported (0 if none).
func runHelper(t *testing.T, filter []byte, argv ...string) (string, syscall.Errno) {
	return runHelperMask(t, ^uint64(0), filter, argv...)
}

// runHelperMask is runHelper with a capability mask for the helper.
func runHelperMask(t *testing.T, mask uint64, filter []byte, argv ...string) (string, syscall.Errno) {
	t.Helper()
	outR, outW := mustPipe(t)
	defer outR.Close()
	h := startHelper(t, argv, outW)
	outW.Close()
	h.payload.Write(helperPayload(mask, filter, false, false))
	h.payload.Write([]byte{helperGo})
	h.payload.Close()
	out, _ := io.ReadAll(outR)
	status, _ := io.ReadAll(h.status)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(h.pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if len(status) == 4 {
		return string(out), syscall.Errno(binary.NativeEndian.Uint32(status))
	}
	if len(status) != 0 {
		t.Fatalf("status pipe: %q", status)
	}
	return string(out), 0
}

func TestHelperExecs(t *testing.T) {
	bb := busyboxPath(t)
	out, errno := runHelper(t, nil, bb, "echo", "hello", "world")
	if errno != 0 || out != "hello world\n" {
		t.Fatalf("got %q, errno %v", out, errno)
	}
}

func TestHelperLoadsFilterAndNoNewPrivs(t *testing.T) {
	bb := busyboxPath(t)
	out, errno := runHelper(t, filterBytes(allowAllFilter()), bb, "cat", "/proc/self/status")
	if errno != 0 {
		t.Fatal(errno)
	}
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	// A filter that fails uname with EPERM must reach the program: uname
	// runs (it prints its line, empty without uname(2)) and learns nothing.
	out, errno = runHelper(t, filterBytes(denyUnameFilter()), bb, "uname", "-s")
	if errno != 0 || out == "" || strings.Contains(out, "Linux") {
		t.Fatalf("uname under a filter denying it printed %q (errno %v)", out, errno)
	}
}

func TestHelperReportsExecFailure(t *testing.T) {
	_, errno := runHelper(t, nil, "/nonexistent/program", "program")
	if errno != syscall.ENOENT {
		t.Fatalf("errno %v, want ENOENT", errno)
	}
	_, errno = runHelper(t, make([]byte, 0xfff0), "/bin/true", "true")
	if errno != syscall.E2BIG {
		t.Fatalf("oversized filter: errno %v, want E2BIG", errno)
	}
	// A length that is not whole instructions is refused, not rounded
	// down (which, below 8 bytes, would be no filter at all).
	// (An allow-all filter and 4 bytes more: rounded down, it would load.)
	for _, filter := range [][]byte{make([]byte, 1), make([]byte, 7), append(filterBytes(allowAllFilter()), 0, 0, 0, 0)} {
		marker := t.TempDir() + "/ran"
		_, errno = runHelper(t, filter, busyboxPath(t), "touch", marker)
		if errno != syscall.EINVAL {
			t.Errorf("filter of %d bytes: errno %v, want EINVAL", len(filter), errno)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("filter of %d bytes: the program ran", len(filter))
		}
	}
	// Flags it does not know are refused too.
	payload := helperPayload(^uint64(0), nil, false, false)
	payload[16] = 4
	if errno, ran := helperWithPayload(t, append(payload, helperGo)); errno != syscall.EINVAL || ran {
		t.Errorf("unknown flag: errno %v, ran %v; want EINVAL and not run", errno, ran)
	}
}

// helperWithPayload runs the helper with `touch MARKER` and payload
// written whole on its fd 3, and returns the errno it reported and
// whether the program ran.
func helperWithPayload(t *testing.T, payload []byte) (syscall.Errno, bool) {
	t.Helper()
	marker := t.TempDir() + "/ran"
	h := startHelper(t, []string{busyboxPath(t), "touch", marker}, nil)
	h.payload.Write(payload)
	h.payload.Close()
	status, _ := io.ReadAll(h.status)
	var ws syscall.WaitStatus
	syscall.Wait4(h.pid, &ws, 0, nil)
	_, statErr := os.Stat(marker)
	var errno syscall.Errno
	if len(status) == 4 {
		errno = syscall.Errno(binary.NativeEndian.Uint32(status))
	}
	return errno, statErr == nil
}

func busyboxPath(t *testing.T) string {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("skipping: /bin/busybox (Debian busybox-static) is needed")
	}
	return "/bin/busybox"
}

// A caller that dies before its go-ahead (the pipe closes without the last
// byte) must never get the program run, filter or not; nor does a byte
// other than a go-ahead, or more than one, run it.
func TestHelperNeedsGoAhead(t *testing.T) {
	whole := helperPayload(^uint64(0), filterBytes(allowAllFilter()), false, false)
	for _, payload := range [][]byte{
		nil,
		make([]byte, 8),
		whole[:20], // the header cut short
		whole[:30], // the filter cut short
		helperPayload(^uint64(0), nil, false, false),
		whole,
		append(whole[:len(whole):len(whole)], 'X'),
		append(whole[:len(whole):len(whole)], helperGo, helperGo),
	} {
		errno, ran := helperWithPayload(t, payload)
		if errno != syscall.EPIPE {
			t.Errorf("payload of %d bytes without go-ahead: errno %v, want EPIPE", len(payload), errno)
		}
		if ran {
			t.Errorf("payload of %d bytes without go-ahead: the program ran", len(payload))
		}
	}
}

// A root helper drops its bounding set to the mask, and the program gets
// only those capabilities.
func TestHelperDropsBoundingSet(t *testing.T) {
	bb := busyboxPath(t)
	keep := uint64(1)<<unix.CAP_CHOWN | uint64(1)<<unix.CAP_KILL
	out, errno := runHelperMask(t, keep, nil, bb, "cat", "/proc/self/status")
	if errno != 0 {
		t.Fatal(errno)
	}
	for _, want := range []string{"CapBnd:\t0000000000000021", "CapEff:\t0000000000000021", "CapPrm:\t0000000000000021"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// Signals the forking program ignores reach the program at their defaults
// (a PID 1 ignoring SIGTERM would make every Stop time out), and its
// signal mask is empty. (Nothing here blocks a signal first: the fork
// starts the helper with the Go thread's mask, which is empty, so the
// helper's own unblocking is not what SigBlk shows.)
func TestHelperResetsSignals(t *testing.T) {
	bb := busyboxPath(t)
	signal.Ignore(syscall.SIGTERM, syscall.SIGUSR1)
	defer func() {
		// Reset alone leaves SIGTERM ignored, and with it every process
		// the later tests start.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGUSR1)
		signal.Reset(syscall.SIGTERM, syscall.SIGUSR1)
	}()
	out, errno := runHelper(t, nil, bb, "cat", "/proc/self/status")
	if errno != 0 {
		t.Fatal(errno)
	}
	for _, want := range []string{"SigIgn:\t0000000000000000", "SigBlk:\t0000000000000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// With helperBlockSignals the helper execs with every signal blocked (but
// SIGKILL and SIGSTOP, which cannot be): the init's way to keep a signal
// sent right after the start.
func TestHelperBlocksSignals(t *testing.T) {
	bb := busyboxPath(t)
	outR, outW := mustPipe(t)
	defer outR.Close()
	h := startHelper(t, []string{bb, "cat", "/proc/self/status"}, outW)
	outW.Close()
	h.payload.Write(helperPayload(^uint64(0), nil, false, true))
	h.payload.Write([]byte{helperGo})
	h.payload.Close()
	out, _ := io.ReadAll(outR)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(h.pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if want := "SigBlk:\tfffffffffffbfeff"; !strings.Contains(string(out), want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
}

// The helper applies the filter and the capability mask as soon as it has
// them, before the go-ahead: that is what lets it overlap the caller's
// last steps. The program still waits for the go-ahead.
func TestHelperFiltersBeforeGoAhead(t *testing.T) {
	marker := t.TempDir() + "/ran"
	h := startHelper(t, []string{busyboxPath(t), "touch", marker}, nil)
	pid := h.pid
	keep := uint64(1) << unix.CAP_KILL
	h.payload.Write(helperPayload(keep, filterBytes(allowAllFilter()), false, false))
	var status string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if status = string(b); strings.Contains(status, "Seccomp:\t2") {
			break
		}
	}
	for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1", "CapBnd:\t0000000000000020"} {
		if !strings.Contains(status, want) {
			t.Errorf("before the go-ahead, the helper's status lacks %q:\n%s", want, status)
		}
	}
	// Still the helper (named after the fd it was exec'd from), not the
	// program.
	if strings.Contains(status, "Name:\tbusybox") {
		t.Errorf("before the go-ahead, the program runs:\n%s", status)
	}
	h.payload.Write([]byte{helperGo})
	h.payload.Close()
	report, _ := io.ReadAll(h.status)
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
	if len(report) != 0 || ws.ExitStatus() != 0 {
		t.Fatalf("after the go-ahead: status pipe %v, exit %v", report, ws)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("after the go-ahead the program did not run: %v", err)
	}
}

// The payload may arrive in any pieces: a header byte by byte, the filter
// in odd chunks, the go-ahead later still.
func TestHelperSplitPayload(t *testing.T) {
	outR, outW := mustPipe(t)
	defer outR.Close()
	h := startHelper(t, []string{busyboxPath(t), "cat", "/proc/self/status"}, outW)
	outW.Close()
	payload := helperPayload(^uint64(0), filterBytes(allowAllFilter()), false, false)
	for i := 0; i < len(payload); {
		n := 1
		if i >= 24 {
			n = 5
		}
		n = min(n, len(payload)-i)
		h.payload.Write(payload[i : i+n])
		i += n
		time.Sleep(200 * time.Microsecond)
	}
	time.Sleep(time.Millisecond)
	h.payload.Write([]byte{helperGo})
	h.payload.Close()
	out, _ := io.ReadAll(outR)
	report, _ := io.ReadAll(h.status)
	var ws syscall.WaitStatus
	syscall.Wait4(h.pid, &ws, 0, nil)
	if len(report) != 0 || ws.ExitStatus() != 0 {
		t.Fatalf("status pipe %v, exit %v", report, ws)
	}
	if !strings.Contains(string(out), "Seccomp:\t2") {
		t.Errorf("the program runs without the filter:\n%s", out)
	}
}

// With orphanKill the program dies with the thread that forked the
// helper; without, it outlives it. The thread ends only once the program
// runs: the signal must outlast the helper's execve.
func TestHelperOrphanKill(t *testing.T) {
	fd := needHelper(t)
	bb := busyboxPath(t)
	for _, orphanKill := range []bool{true, false} {
		type started struct {
			pid, tid int
			err      error
		}
		ch := make(chan started)
		onThrowawayThread(func() {
			s, err := startOrphanHelper(fd, bb, orphanKill)
			ch <- started{pid: s, tid: unix.Gettid(), err: err}
		})
		s := <-ch
		if s.err != nil {
			t.Fatal(s.err)
		}
		// Wait for the thread to be gone.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(s.tid)); os.IsNotExist(err) {
				break
			}
		}
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(s.tid)); !os.IsNotExist(err) {
			syscall.Kill(s.pid, syscall.SIGKILL)
			t.Fatalf("the forking thread %d did not exit", s.tid)
		}
		if !orphanKill {
			time.Sleep(20 * time.Millisecond)
			stat, _ := os.ReadFile("/proc/" + strconv.Itoa(s.pid) + "/stat")
			if f := strings.Fields(string(stat)); len(f) < 3 || f[2] == "Z" {
				t.Errorf("without orphanKill the program died with the thread: %q", stat)
			}
			syscall.Kill(s.pid, syscall.SIGKILL)
		}
		// The program sleeps 30 s: kill it after 10 rather than wait.
		timer := time.AfterFunc(10*time.Second, func() { syscall.Kill(s.pid, syscall.SIGKILL) })
		start := time.Now()
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(s.pid, &ws, 0, nil)
		timer.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if orphanKill && (!ws.Signaled() || ws.Signal() != syscall.SIGKILL || time.Since(start) > 5*time.Second) {
			t.Errorf("with orphanKill the program ended with %v after %v, want SIGKILL at once", ws, time.Since(start))
		}
	}
}

// startOrphanHelper starts the helper with `sleep 30` from the calling
// thread, as Start does (waiting for the arming before the go-ahead with
// orphanKill), and returns once the program runs.
func startOrphanHelper(fd int, bb string, orphanKill bool) (int, error) {
	h, err := forkHelper(fd, []string{bb, "sleep", "30"}, nil)
	if err != nil {
		return 0, err
	}
	defer h.payload.Close()
	defer h.status.Close()
	h.payload.Write(helperPayload(^uint64(0), nil, orphanKill, false))
	if orphanKill {
		h.status.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 8)
		n, _ := h.status.Read(b)
		if armed, errno, ok := helperStatus(b[:n]); !armed || errno != 0 || !ok {
			syscall.Kill(h.pid, syscall.SIGKILL)
			return 0, fmt.Errorf("the helper did not report its arming: %q", b[:n])
		}
	}
	h.payload.Write([]byte{helperGo})
	h.payload.Close()
	if rest, _ := io.ReadAll(h.status); len(rest) != 0 { // EOF at the program's execve
		syscall.Kill(h.pid, syscall.SIGKILL)
		return 0, fmt.Errorf("the helper reported %q", rest)
	}
	return h.pid, nil
}

// helperProc is an exec helper started by forkHelper: payload is its fd 3,
// status the read end of its fd 4.
type helperProc struct {
	pid             int
	payload, status *os.File
}

// forkHelper starts the exec helper (the memfd fd) with argv, its stdout
// on stdout (nil: this process's), and returns it before writing it
// anything.
func forkHelper(fd int, argv []string, stdout *os.File) (helperProc, error) {
	payloadR, payloadW, err := os.Pipe()
	if err != nil {
		return helperProc{}, err
	}
	defer payloadR.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		payloadW.Close()
		return helperProc{}, err
	}
	defer statusW.Close()
	out := uintptr(1)
	if stdout != nil {
		out = stdout.Fd()
	}
	pid, err := syscall.ForkExec("/proc/self/fd/"+strconv.Itoa(fd), argv, &syscall.ProcAttr{
		Env:   []string{"PATH=/bin"},
		Files: []uintptr{0, out, 2, payloadR.Fd(), statusW.Fd()},
	})
	if err != nil {
		payloadW.Close()
		statusR.Close()
		return helperProc{}, err
	}
	return helperProc{pid: pid, payload: payloadW, status: statusR}, nil
}

// startHelper is forkHelper for a test, which it fails if the helper does
// not start; the pipes are closed when the test ends.
func startHelper(t *testing.T, argv []string, stdout *os.File) helperProc {
	t.Helper()
	h, err := forkHelper(needHelper(t), argv, stdout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.payload.Close()
		h.status.Close()
	})
	return h
}

// onThrowawayThread runs f in a goroutine locked to a thread that ends
// with it. Never the main thread, which the Go runtime keeps.
func onThrowawayThread(f func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			f() // never unlocked: the thread ends with this goroutine
			return
		}
		// The main thread, which is locked now: another goroutine that
		// locks itself gets another thread.
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			f()
		}()
		<-done
		runtime.UnlockOSThread()
	}()
}

func TestHelperStatus(t *testing.T) {
	errno := binary.NativeEndian.AppendUint32(nil, uint32(syscall.ENOENT))
	for _, c := range []struct {
		in    []byte
		armed bool
		errno syscall.Errno
		ok    bool
	}{
		{nil, false, 0, true},
		{[]byte{helperArmed}, true, 0, true},
		{errno, false, syscall.ENOENT, true},
		{append([]byte{helperArmed}, errno...), true, syscall.ENOENT, true},
		{[]byte{'X'}, false, 0, false},
		{[]byte{helperArmed, 1}, false, 0, false},
		{errno[:3], false, 0, false},
	} {
		armed, errno, ok := helperStatus(c.in)
		if armed != c.armed || errno != c.errno || ok != c.ok {
			t.Errorf("helperStatus(%q) = %v, %v, %v; want %v, %v, %v", c.in, armed, errno, ok, c.armed, c.errno, c.ok)
		}
	}
}
