package main

import (
	"regexp"
	"strings"
	"testing"
)

var imageIDLine = regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`)

func TestCommitPauseUnpause(t *testing.T) {
	root := containerSetup(t)
	id := runDetached(t, root, "--name", "src", "busybox", "sh", "-c", "echo committed > /f && echo ready && exec sleep 300")
	waitFor(t, func() bool { return strings.Contains(mustBerth(t, root, "logs", "src"), "ready") }, "the container to write /f")

	if out := mustBerth(t, root, "pause", "src"); out != "src\n" {
		t.Errorf("pause printed %q, want the name", out)
	}
	if row := psRowOf(psRows(t, root), "src"); row == nil || !strings.HasSuffix(row[4], "(Paused)") {
		t.Errorf("ps row of a paused container: %q", row)
	}
	res := runBerth(t, root, nil, "pause", "src")
	if res.code != 1 || !strings.Contains(res.stderr, "already paused") {
		t.Errorf("pause of a paused container: exit %d, stderr %q; want 1 and the reason", res.code, res.stderr)
	}
	// Committing a paused container leaves it paused.
	out := mustBerth(t, root, "commit", "-m", "paused commit", "src")
	if !imageIDLine.MatchString(out) {
		t.Errorf("commit printed %q, want sha256:<id>", out)
	}
	res = runBerth(t, root, nil, "unpause", "src", "nosuch")
	if res.code != 1 || res.stdout != "src\n" || !strings.Contains(res.stderr, "Error: No such container: nosuch") {
		t.Errorf("unpause src nosuch: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if row := psRowOf(psRows(t, root), "src"); row == nil || strings.Contains(row[4], "Paused") {
		t.Errorf("ps row after unpause: %q", row)
	}

	out = mustBerth(t, root, "commit", "-c", `CMD ["cat", "/f"]`, "--change", "ENV X=1", "-m", "the message", "-a", "Ann <ann@example.com>", id[:12], "committed:v1")
	if !imageIDLine.MatchString(out) {
		t.Fatalf("commit printed %q, want sha256:<id>", out)
	}
	imgID := strings.TrimSpace(out)
	if got := mustBerth(t, root, "inspect", "--format", "{{.ID}}", "committed:v1"); got != imgID+"\n" {
		t.Errorf("inspect --format {{.ID}} = %q, want %q", got, imgID+"\n")
	}
	if got := mustBerth(t, root, "inspect", "--format", "{{.Id}} {{.Author}} {{json .Config.Cmd}} {{json .Config.Env}} {{json .RepoTags}}", "committed:v1"); got != imgID+` Ann <ann@example.com> ["cat","/f"] ["X=1"] ["committed:v1"]`+"\n" {
		t.Errorf("inspect of the committed image: %q", got)
	}
	if got := mustBerth(t, root, "run", "--rm", "committed:v1"); got != "committed\n" {
		t.Errorf("running the committed image printed %q", got)
	}
	if got := mustBerth(t, root, "commit", "-p=false", "src"); !imageIDLine.MatchString(got) {
		t.Errorf("commit -p=false printed %q", got)
	}

	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"commit", "-c", "RUN echo no", "src"}, "RUN is not allowed"},
		{[]string{"commit", "nosuch"}, "No such container: nosuch"},
		{[]string{"commit", "src", "bad@@ref"}, "bad@@ref"},
		{[]string{"commit"}, `"berth commit" requires at least 1 argument`},
	} {
		res := runBerth(t, root, nil, tc.args...)
		if res.code != 1 || !strings.Contains(res.stderr, tc.stderr) {
			t.Errorf("berth %s: exit %d, stderr %q; want 1 (docker's) and %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.stderr)
		}
	}

	mustBerth(t, root, "stop", "-t", "0", "src")
	res = runBerth(t, root, nil, "pause", "src")
	if res.code != 1 || !strings.Contains(res.stderr, "not running") {
		t.Errorf("pause of a stopped container: exit %d, stderr %q", res.code, res.stderr)
	}
	if got := mustBerth(t, root, "commit", "src", "stopped"); !imageIDLine.MatchString(got) {
		t.Errorf("commit of a stopped container printed %q", got)
	}
}
