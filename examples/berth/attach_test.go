package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAttachCommand checks docker run -d -i, attach, start -a -i and
// create -i: input typed into a detached container, its output from then
// on, its exit code as attach's; the detach keys leave it running; and
// docker's refusals.
func TestAttachCommand(t *testing.T) {
	root := containerSetup(t)
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", "made") })

	runDetached(t, root, "-i", "--name", "in", "busybox", "sh")
	res := runBerth(t, root, []byte("echo typed; echo to-stderr >&2; exit 4\n"), "attach", "in")
	if res.code != 4 || res.stdout != "typed\n" || res.stderr != "to-stderr\n" {
		t.Errorf("attach: exit %d, stdout %q, stderr %q; want 4, typed, to-stderr", res.code, res.stdout, res.stderr)
	}
	res = runBerth(t, root, nil, "attach", "in")
	if res.code != 1 || !strings.Contains(res.stderr, "You cannot attach to a stopped container, start it first") {
		t.Errorf("attach to an exited container: exit %d, %q", res.code, res.stderr)
	}
	// Started again with our input, its output from the start on.
	res = runBerth(t, root, []byte("echo again; exit 6\n"), "start", "-a", "-i", "in")
	if res.code != 6 || res.stdout != "again\n" {
		t.Errorf("start -ai: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	// Without a terminal, the detach keys are input like any other (docker
	// reads them on a terminal only).
	mustBerth(t, root, "start", "in")
	res = runBerth(t, root, []byte("echo \x10\x11 | od -An -tx1; exit 5\n"), "attach", "in")
	if res.code != 5 || !strings.Contains(res.stdout, "10 11") {
		t.Errorf("attach, ctrl-p ctrl-q in a pipe: exit %d, stdout %q, stderr %q; want the keys passed on as input and exit 5", res.code, res.stdout, res.stderr)
	}
	if res := runBerth(t, root, nil, "attach", "--detach-keys", "ctrl-1", "in"); res.code == 0 || !strings.Contains(res.stderr, "Invalid detach keys (ctrl-1) provided") {
		t.Errorf("attach --detach-keys ctrl-1: exit %d, %q", res.code, res.stderr)
	}

	// --no-stdin leaves the open input of a -i container alone.
	runDetached(t, root, "-i", "--name", "ns", "busybox", "sh", "-c", "sleep 0.5; read -t 1 x; echo \"[$x]\"")
	if res := runBerth(t, root, []byte("typed\n"), "attach", "--no-stdin", "ns"); res.stdout != "[]\n" {
		t.Errorf("attach --no-stdin: exit %d, stdout %q; want the input not passed on", res.code, res.stdout)
	}

	// Without -i the input is not attached.
	runDetached(t, root, "--name", "quiet", "busybox", "sh", "-c", "sleep 0.5; echo late; exit 2")
	res = runBerth(t, root, []byte("echo ignored\n"), "attach", "quiet")
	if res.code != 2 || res.stdout != "late\n" {
		t.Errorf("attach without -i: exit %d, stdout %q", res.code, res.stdout)
	}

	// A terminal's input must be a terminal.
	runDetached(t, root, "-i", "-t", "--name", "tty", "busybox", "sh")
	if res := runBerth(t, root, []byte("exit\n"), "attach", "tty"); res.code != 1 || !strings.Contains(res.stderr, "the input device is not a TTY") {
		t.Errorf("attach to a terminal from a pipe: exit %d, %q", res.code, res.stderr)
	}

	// create -i keeps the input open for start -ai.
	mustBerth(t, root, "create", "-i", "--name", "made", "busybox", "sh")
	res = runBerth(t, root, []byte("echo made; exit 3\n"), "start", "-ai", "made")
	if res.code != 3 || res.stdout != "made\n" {
		t.Errorf("create -i, start -ai: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

// TestStdinOnceCommand checks docker's StdinOnce from the command line:
// the input of create -i closes at the end of the first attachment's
// input, so that a piped start -ai (or attach) of `cat` ends at the end of
// the pipe, at every start; run -d -i keeps it open. Inspect shows
// docker's Config fields. (Each command has a minute: a regression must
// fail, not hang the package.)
func TestStdinOnceCommand(t *testing.T) {
	root := containerSetup(t)
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", "made", "att") })
	runBerth := func(t *testing.T, root string, stdin []byte, args ...string) result {
		t.Helper()
		done := make(chan result, 1)
		go func() { done <- runBerth(t, root, stdin, args...) }()
		select {
		case res := <-done:
			return res
		case <-time.After(time.Minute):
			t.Fatalf("berth %s still runs after a minute", strings.Join(args, " "))
			return result{}
		}
	}
	inspect := func(name string) string {
		return mustBerth(t, root, "inspect", "-f", "{{.Config.AttachStdin}} {{.Config.OpenStdin}} {{.Config.StdinOnce}}", name)
	}
	mustBerth(t, root, "create", "-i", "--name", "made", "busybox", "cat")
	for _, in := range []string{"one\n", "two\n"} {
		if res := runBerth(t, root, []byte(in), "start", "-ai", "made"); res.code != 0 || res.stdout != in {
			t.Errorf("create -i, start -ai with %q piped: exit %d, stdout %q, stderr %q", in, res.code, res.stdout, res.stderr)
		}
	}
	mustBerth(t, root, "create", "-i", "--name", "att", "busybox", "cat")
	mustBerth(t, root, "start", "att")
	if res := runBerth(t, root, []byte("attached\n"), "attach", "att"); res.code != 0 || res.stdout != "attached\n" {
		t.Errorf("create -i, start, attach with input piped: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	runDetached(t, root, "-i", "--name", "open", "busybox", "cat")
	for name, want := range map[string]string{"made": "true true true\n", "open": "false true false\n"} {
		if got := inspect(name); got != want {
			t.Errorf("inspect %s: AttachStdin OpenStdin StdinOnce = %q, want %q", name, got, want)
		}
	}
}

// TestAttachDetachKeys checks docker's detach keys on a terminal: what
// came before them reaches the container, attach exits 1 with docker's
// words, and the container runs on.
func TestAttachDetachKeys(t *testing.T) {
	root := containerSetup(t)
	runDetached(t, root, "-i", "-t", "--name", "tty", "busybox", "sh")
	for _, tc := range []struct {
		keys  []string
		input string
		file  string
	}{
		{nil, "echo before > /f\r\x10\x11echo after > /f\r", "/f"},
		{[]string{"--detach-keys", "ctrl-X,y"}, "echo a > /g\r\x18\x18y\x18yecho b >> /g\r", "/g"},
	} {
		master, slave := openTestPTY(t)
		var stderr bytes.Buffer
		cmd := exec.Command(berthBin, append(append([]string{"--root", root, "attach"}, tc.keys...), "tty")...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, master)
		// Typed only once attach made the terminal raw: before, the line
		// discipline's flow control would take ctrl-q.
		waitFor(t, func() bool {
			tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
			return err == nil && tio.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) == 0
		}, "attach to put the terminal in raw mode")
		slave.Close()
		master.Write([]byte(tc.input))
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		var err error
		select {
		case err = <-waited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			err = fmt.Errorf("still attached after 10 s: %v", <-waited)
		}
		master.Close()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || stderr.String() != "read escape sequence\n" {
			t.Errorf("attach %v: %v, stderr %q; want exit 1, docker's words", tc.keys, err, stderr.String())
		}
		want := strings.SplitN(strings.TrimPrefix(tc.input, "echo "), " ", 2)[0] + "\n"
		waitFor(t, func() bool {
			res := runBerth(t, root, nil, "exec", "tty", "cat", tc.file)
			return res.code == 0 && res.stdout == want
		}, "after detaching, "+tc.file+" holding what came before the keys only")
	}
}
