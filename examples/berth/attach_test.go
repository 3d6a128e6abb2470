package main

import (
	"strings"
	"testing"
)

// TestAttachCommand checks docker run -d -i, attach, start -a -i and
// create -i: input typed into a detached container, its output from then
// on, its exit code as attach's; the detach keys leave it running; and
// docker's refusals.
func TestAttachCommand(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", "in", "tty", "made", "quiet") })

	mustBerth(t, root, "run", "-d", "-i", "--name", "in", "busybox", "sh")
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

	// The detach keys: the container runs on, and what came before
	// them reached it.
	mustBerth(t, root, "start", "in")
	res = runBerth(t, root, []byte("echo before > /f\n\x10\x11echo after > /f\n"), "attach", "in")
	if res.code != 1 || res.stderr != "read escape sequence\n" {
		t.Errorf("attach, ctrl-p ctrl-q: exit %d, stderr %q; want 1, docker's words", res.code, res.stderr)
	}
	if got := mustBerth(t, root, "exec", "in", "cat", "/f"); got != "before\n" {
		t.Errorf("after detaching: /f is %q, want only what came before the keys", got)
	}
	res = runBerth(t, root, []byte("echo a > /g\n\x18\x18y\x18yecho b >> /g\n"), "attach", "--detach-keys", "ctrl-x,y", "in")
	if res.code != 1 || mustBerth(t, root, "exec", "in", "cat", "/g") != "a\n" {
		t.Errorf("attach --detach-keys ctrl-x,y: exit %d, stderr %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "attach", "--detach-keys", "ctrl-1", "in"); res.code == 0 || !strings.Contains(res.stderr, "Invalid detach keys (ctrl-1) provided") {
		t.Errorf("attach --detach-keys ctrl-1: exit %d, %q", res.code, res.stderr)
	}

	// Without -i the input is not attached; --no-stdin drops it too.
	mustBerth(t, root, "run", "-d", "--name", "quiet", "busybox", "sh", "-c", "sleep 0.5; echo late; exit 2")
	res = runBerth(t, root, []byte("echo ignored\n"), "attach", "quiet")
	if res.code != 2 || res.stdout != "late\n" {
		t.Errorf("attach without -i: exit %d, stdout %q", res.code, res.stdout)
	}

	// A terminal's input must be a terminal.
	mustBerth(t, root, "run", "-d", "-i", "-t", "--name", "tty", "busybox", "sh")
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
