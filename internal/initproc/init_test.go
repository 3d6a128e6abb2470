package initproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// initFile writes the init program to a temporary file.
func initFile(t *testing.T) string {
	t.Helper()
	img := initImage()
	if img == nil {
		t.Skip("skipping: the init exists for amd64 only")
	}
	p := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(p, img, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// exitCode runs cmd and returns its exit code (-1 if a signal killed it)
// and what it wrote to stderr.
func exitCode(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatal(err)
	return 0, ""
}

// TestInitExit: the init exits as its child does, 128+N for a signal N,
// and 127 or 126, saying so, when the program cannot be run.
func TestInitExit(t *testing.T) {
	bb, init := busyboxPath(t), initFile(t)
	for _, tc := range []struct {
		argv   []string
		want   int
		stderr string
	}{
		{[]string{bb, "sh", "-c", "exit 3"}, 3, ""},
		{[]string{bb, "true"}, 0, ""},
		{[]string{bb, "sh", "-c", "kill -9 $$"}, 137, ""},
		{[]string{bb, "sh", "-c", "kill -TERM $$"}, 143, ""},
		{[]string{"/nonexistent", "x"}, 127, "berth-init: exec /nonexistent failed\n"},
		{[]string{"/etc/passwd", "x"}, 126, "berth-init: exec /etc/passwd failed\n"},
	} {
		if got, stderr := exitCode(t, exec.Command(init, tc.argv...)); got != tc.want || stderr != tc.stderr {
			t.Errorf("init %q: exit %d, stderr %q; want %d, %q", tc.argv, got, stderr, tc.want, tc.stderr)
		}
	}
}

// TestInitWithoutSigtimedwait: where a seccomp filter refuses
// rt_sigtimedwait, the init still reaps and ends with its child (it
// blocks in wait4 instead), rather than spinning.
func TestInitWithoutSigtimedwait(t *testing.T) {
	bb, init := busyboxPath(t), initFile(t)
	deny := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_RT_SIGTIMEDWAIT, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	h := startHelper(t, []string{init, init, bb, "sh", "-c", "sleep 0.2; exit 6"}, nil)
	h.payload.Write(helperPayload(^uint64(0), filterBytes(deny), false, true))
	h.payload.Write([]byte{helperGo})
	h.payload.Close()
	start := time.Now()
	stuck := time.AfterFunc(5*time.Second, func() { unix.Kill(h.pid, unix.SIGKILL) })
	defer stuck.Stop()
	var ru unix.Rusage
	var ws unix.WaitStatus
	if _, err := unix.Wait4(h.pid, &ws, 0, &ru); err != nil {
		t.Fatal(err)
	}
	if !ws.Exited() || ws.ExitStatus() != 6 {
		t.Errorf("init under the filter: status %v, want exit 6", ws)
	}
	if cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()); cpu > time.Since(start)/2 {
		t.Errorf("the init used %v of CPU in %v: it spun", cpu, time.Since(start))
	}
}

// procState is the state letter of process pid ("S", "T", "Z").
func procState(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/stat")
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && len(b) > i+2 {
		return string(b[i+2])
	}
	return ""
}

// childrenOf lists the children of process pid (its main thread's).
func childrenOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return strings.TrimSpace(string(b))
}

// TestInitForwardsSignals: a signal the init gets reaches its child (a
// sleep, which dies of it), and the init exits with 128+N; SIGTTOU is
// not forwarded.
func TestInitForwardsSignals(t *testing.T) {
	bb, init := busyboxPath(t), initFile(t)
	cmd := exec.Command(init, bb, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for childrenOf(cmd.Process.Pid) == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	child := childrenOf(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTTOU)
	time.Sleep(50 * time.Millisecond)
	if st := procState(child); st != "S" {
		t.Errorf("the child is in state %q after the init got SIGTTOU, want S: it reached the child (stopping it)", st)
		if pid, err := strconv.Atoi(child); err == nil {
			syscall.Kill(pid, syscall.SIGCONT) // so that SIGTERM can end it
		}
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("after SIGTERM: %v, want exit 143", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the init took %v to end after SIGTERM", d)
	}
}

// TestInitReaps: as PID 1 of a pid namespace the init reaps the orphans
// the kernel gives it, and its own child's end ends it.
func TestInitReaps(t *testing.T) {
	bb, init := busyboxPath(t), initFile(t)
	// The inner sh exits at once, orphaning a sleep that ends 0.1 s later:
	// its zombie would stay a child of the init until reaped.
	cmd := exec.Command(init, bb, "sh", "-c", bb+` sh -c "`+bb+` sleep 0.1 &"; `+bb+` sleep 1.5; exit 5`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// From 0.3 s (the orphan has ended) until 1.3 s (before the command
	// ends), its zombie must be gone at some point.
	time.Sleep(300 * time.Millisecond)
	var kids []string
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if kids = strings.Fields(childrenOf(cmd.Process.Pid)); len(kids) == 1 {
			break
		}
	}
	if len(kids) != 1 {
		t.Errorf("the init's children: %v, want only its own child: an orphan's zombie was not reaped", kids)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Errorf("init as PID 1: %v, want exit 5", err)
	}
}
