package main

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExecCommand(t *testing.T) {
	root := containerSetup(t)
	id := runDetached(t, root, "--name", "target", "-e", "FROM_RUN=r", "-w", "/tmp", "busybox", "sleep", "300")
	mustBerth(t, root, "run", "--name", "stopped", "busybox", "true")
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", "stopped") })
	t.Setenv("PASSED", "p")

	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string // a prefix of stderr, or "" for empty
	}{
		{"echo", "", []string{"exec", "target", "echo", "hi"}, 0, "hi\n", ""},
		{"by id", "", []string{"exec", id[:12], "hostname"}, 0, id[:12] + "\n", ""},
		{"exit code", "", []string{"exec", "target", "sh", "-c", "echo out; echo err >&2; exit 7"}, 7, "out\n", "err\n"},
		{"flags", "", []string{"exec", "-e", "A=1", "-e", "PASSED", "-w", "/etc", "-u", "user", "target", "sh", "-c", "echo $A $PASSED $FROM_RUN $(pwd) $(id -u)"}, 0, "1 p r /etc 1000\n", ""},
		{"default dir", "", []string{"exec", "target", "pwd"}, 0, "/tmp\n", ""},
		{"stdin", "hello\n", []string{"exec", "-i", "target", "cat"}, 0, "hello\n", ""},
		{"no stdin without -i", "hello\n", []string{"exec", "target", "cat"}, 0, "", ""},
		{"privileged", "", []string{"exec", "--privileged", "target", "sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status"}, 0, "", ""},
		{"not found", "", []string{"exec", "target", "nosuch"}, 126, "", "Error: "}, // docker exec's code too
		{"not executable", "", []string{"exec", "target", "/etc/passwd"}, 126, "", "Error: "},
		{"not running", "", []string{"exec", "stopped", "true"}, 1, "", "Error: container stopped: container is not running\n"},
		{"no such container", "", []string{"exec", "nosuch", "true"}, 1, "", "Error: No such container: nosuch\n"},
		{"no command", "", []string{"exec", "target"}, 1, "", "Error: \"berth exec\" requires at least 2 arguments."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runBerth(t, root, []byte(tt.stdin), tt.args...)
			if res.code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", res.code, tt.code, res.stderr)
			}
			if tt.name == "privileged" {
				if strings.Contains(res.stdout, "CapEff:\t00000000a80425fb") || !strings.Contains(res.stdout, "Seccomp:\t0") {
					t.Errorf("--privileged: %q, want more than the default capabilities and no seccomp", res.stdout)
				}
				return
			}
			if res.stdout != tt.stdout {
				t.Errorf("stdout %q, want %q", res.stdout, tt.stdout)
			}
			if (tt.stderr == "") != (res.stderr == "") || !strings.HasPrefix(res.stderr, tt.stderr) {
				t.Errorf("stderr %q, want prefix %q", res.stderr, tt.stderr)
			}
		})
	}
}

// TestExecDetached: berth exec -d returns at once and the process outlives
// the berth program that started it.
func TestExecDetached(t *testing.T) {
	root := containerSetup(t)
	runDetached(t, root, "--name", "target", "busybox", "sleep", "300")
	start := time.Now()
	if out := mustBerth(t, root, "exec", "-d", "target", "sh", "-c", "echo lost; exec sleep 777"); out != "" {
		t.Errorf("exec -d printed %q", out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exec -d took %v", d)
	}
	waitFor(t, func() bool {
		return strings.Contains(runBerth(t, root, nil, "exec", "target", "ps").stdout, "sleep 777")
	}, "the detached process to show in the container")
	mustBerth(t, root, "stop", "-t", "1", "target")
}

// TestExecTTY runs berth exec -it on a pseudo-terminal: the process gets a
// terminal of the container's, ours goes raw while attached and is
// restored after.
func TestExecTTY(t *testing.T) {
	root := containerSetup(t)
	runDetached(t, root, "--name", "target", "busybox", "sleep", "300")
	master, slave := openTestPTY(t)
	unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 77})
	out := typeOnTerminal(t, master, slave, "33 77", "--root", root, "exec", "-it", "target", "sh", "-c", "busybox tty; busybox stty size; read x; echo got:$x; exit 4")
	if !strings.HasPrefix(out, "/dev/pts/") || !strings.Contains(out, "got:abc\r\n") {
		t.Errorf("terminal output %q, want a /dev/pts name and the process to have read abc", out)
	}
}
