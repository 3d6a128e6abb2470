package initproc

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenNamespacesExited: namespaces are never opened for a process the
// pidfd says has exited, so a recycled pid cannot be joined.
func TestOpenNamespacesExited(t *testing.T) {
	needRoot(t)
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ns, err := OpenNamespaces(pid, fd)
	if err != nil {
		t.Fatalf("OpenNamespaces of a running process: %v", err)
	}
	ns.Close()
	ns.Close() // idempotent
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := OpenNamespaces(pid, fd); err == nil {
		t.Errorf("OpenNamespaces of an exited process succeeded")
	}
}

// TestExecCommandValidates rejects specs the stage cannot run.
func TestExecCommandValidates(t *testing.T) {
	for _, s := range []*ExecSpec{{}, {Args: []string{""}}, {Args: []string{"true"}, Dir: "relative"}} {
		if _, err := ExecCommand(s); err == nil {
			t.Errorf("ExecCommand(%+v) succeeded", s)
		}
	}
}
