package initproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// exitCode runs cmd and returns its exit code (-1 if a signal killed it).
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return 0
}

// TestInitExit: the init exits as its child does, 128+N for a signal N,
// and 127 or 126 when the program cannot be run.
func TestInitExit(t *testing.T) {
	bb, init := busyboxPath(t), initFile(t)
	for _, tc := range []struct {
		argv []string
		want int
	}{
		{[]string{bb, "sh", "-c", "exit 3"}, 3},
		{[]string{bb, "true"}, 0},
		{[]string{bb, "sh", "-c", "kill -9 $$"}, 137},
		{[]string{bb, "sh", "-c", "kill -TERM $$"}, 143},
		{[]string{"/nonexistent", "x"}, 127},
		{[]string{"/etc/passwd", "x"}, 126},
	} {
		if got := exitCode(t, exec.Command(init, tc.argv...)); got != tc.want {
			t.Errorf("init %q: exit %d, want %d", tc.argv, got, tc.want)
		}
	}
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
	cmd.Process.Signal(syscall.SIGTTOU)
	time.Sleep(50 * time.Millisecond)
	if childrenOf(cmd.Process.Pid) == "" {
		t.Error("SIGTTOU reached the child")
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
	time.Sleep(800 * time.Millisecond)
	if kids := strings.Fields(childrenOf(cmd.Process.Pid)); len(kids) != 1 {
		t.Errorf("the init's children 0.8 s in: %v, want only its own child: an orphan's zombie was not reaped", kids)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Errorf("init as PID 1: %v, want exit 5", err)
	}
}
