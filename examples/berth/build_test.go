package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	dir := t.TempDir()
	df := "FROM busybox\nARG MSG=default\nCOPY hello.txt /hello.txt\nRUN echo $MSG && cat /hello.txt > /out\nCMD [\"cat\", \"/out\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "build.Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runBerth(t, root, nil, "build", "-t", "built:1", "-f", filepath.Join(dir, "build.Dockerfile"), "--build-arg", "MSG=flag", dir)
	if res.code != 0 {
		t.Fatalf("build: exit %d\n%s", res.code, res.stderr)
	}
	for _, want := range []string{"#1 [stage-0] FROM busybox", "[stage-0] RUN echo $MSG", "#4 flag", "writing image sha256:", "naming to built:1 done"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, res.stderr)
		}
	}
	if got := mustBerth(t, root, "run", "--rm", "built:1"); got != "hello\n" {
		t.Errorf("run printed %q", got)
	}
	res = runBerth(t, root, nil, "build", "-f", filepath.Join(dir, "build.Dockerfile"), "--build-arg", "MSG=flag", dir)
	if !strings.Contains(res.stderr, "CACHED") {
		t.Errorf("second build not cached:\n%s", res.stderr)
	}
	id := strings.TrimSpace(mustBerth(t, root, "build", "-q", "-f", filepath.Join(dir, "build.Dockerfile"), "--build-arg", "MSG=flag", dir))
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("build -q printed %q", id)
	}
	res = runBerth(t, root, nil, "build", "--no-cache", "-f", filepath.Join(dir, "build.Dockerfile"), dir)
	if res.code != 0 || strings.Contains(res.stderr, "CACHED") {
		t.Errorf("--no-cache: exit %d\n%s", res.code, res.stderr)
	}
}

func TestBuildSecretAndProgress(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	dir := t.TempDir()
	df := "FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /len && echo step-output\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(secret, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runBerth(t, root, nil, "build", "-t", "sec:1", "--progress=plain", "--secret", "id=tok,src="+secret, dir)
	if res.code != 0 {
		t.Fatalf("build: exit %d\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "#2 step-output") {
		t.Errorf("plain progress lacks the step's output:\n%s", res.stderr)
	}
	if got := mustBerth(t, root, "run", "--rm", "sec:1", "cat", "/len"); strings.TrimSpace(got) != "5" {
		t.Errorf("the RUN saw a secret of %q bytes, want 5", got)
	}
	res = runBerth(t, root, nil, "build", "--no-cache", "--progress=tty", "--secret", "id=tok,src="+secret, dir)
	if res.code != 0 {
		t.Fatalf("build --progress=tty: exit %d\n%s", res.code, res.stderr)
	}
	for _, want := range []string{"\x1b[2K[+] Building", "[+] Built", " => [stage-0] RUN --mount", "\x1b[", " => writing image sha256:"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("tty progress lacks %q:\n%q", want, res.stderr)
		}
	}
	if res := runBerth(t, root, nil, "build", "--secret", "tok", dir); res.code == 0 || !strings.Contains(res.stderr, "invalid --secret") {
		t.Errorf("a malformed --secret: exit %d, %s", res.code, res.stderr)
	}
}

// TestBuildDockerForms: the forms of docker build's flags that scripts
// use: -f relative to the working directory (not to the context), -f -
// for a Dockerfile on stdin, and --build-arg NAME without a value, which
// takes the environment's value or, unset, leaves the ARG's default.
func TestBuildDockerForms(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	work, ctxDir := t.TempDir(), t.TempDir()
	df := "FROM busybox\nARG MSG=default\nRUN echo $MSG > /msg\nCMD [\"cat\", \"/msg\"]\n"
	if err := os.MkdirAll(filepath.Join(work, "ci"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "ci", "app.Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(stdin string, env []string, args ...string) result {
		t.Helper()
		cmd := exec.Command(berthBin, append([]string{"--root", root, "build"}, args...)...)
		cmd.Dir = work
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "MSG=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		res := result{stdout: stdout.String(), stderr: stderr.String()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			res.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tc := range []struct {
		name, stdin string
		env         []string
		args        []string
		want        string
	}{
		{"-f from the working directory", "", nil, []string{"-t", "f:1", "-f", "ci/app.Dockerfile", ctxDir}, "default\n"},
		{"-f -", df, nil, []string{"-t", "f:2", "-f", "-", "--build-arg", "MSG=stdin", ctxDir}, "stdin\n"},
		{"--build-arg from the environment", "", []string{"MSG=fromenv"}, []string{"-t", "f:3", "-f", "ci/app.Dockerfile", "--build-arg", "MSG", ctxDir}, "fromenv\n"},
		{"--build-arg unset keeps the default", "", nil, []string{"-t", "f:4", "-f", "ci/app.Dockerfile", "--build-arg", "MSG", ctxDir}, "default\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := build(tc.stdin, tc.env, tc.args...); res.code != 0 {
				t.Fatalf("build %v: exit %d\n%s", tc.args, res.code, res.stderr)
			}
			if got := mustBerth(t, root, "run", "--rm", tc.args[1]); got != tc.want {
				t.Errorf("run %s printed %q, want %q", tc.args[1], got, tc.want)
			}
		})
	}
}

// TestHistory: history lists a built image's steps newest first, the
// image's ID on the newest and <missing> on the others (as docker shows a
// BuildKit build), each layer's size, 0B for a step without one, the
// command cut to 45 characters unless --no-trunc; -q and --format as
// docker's.
func TestHistory(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	dir := t.TempDir()
	long := strings.Repeat("a", 60)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nRUN head -c 5000 /dev/zero > /"+long+"\nENV A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(mustBerth(t, root, "build", "-q", "-t", "hist:1", dir))
	lines := strings.Split(strings.TrimSuffix(mustBerth(t, root, "history", "hist:1"), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "IMAGE ") || !strings.HasPrefix(lines[1], id[7:19]+" ") ||
		!strings.Contains(lines[1], "ENV A=1") || !strings.Contains(lines[1], " 0B ") ||
		!strings.HasPrefix(lines[2], "<missing> ") || !strings.Contains(lines[2], "RUN /bin/sh -c head -c 5000 /dev/zero > /aaa…") || strings.Contains(lines[2], " 0B ") ||
		!strings.HasPrefix(lines[3], "<missing> ") || !strings.Contains(lines[3], "Imported from") {
		t.Errorf("history:\n%s", strings.Join(lines, "\n"))
	}
	if got := mustBerth(t, root, "history", "-q", "--no-trunc", "hist:1"); got != id+"\n<missing>\n<missing>\n" {
		t.Errorf("history -q --no-trunc: %q", got)
	}
	if got := mustBerth(t, root, "image", "history", "--no-trunc", "--format", "{{.CreatedBy}}", "hist:1"); !strings.Contains(got, long) {
		t.Errorf("history --no-trunc --format: %q", got)
	}
	if res := runBerth(t, root, nil, "history", "nothere"); res.code != 1 || !strings.Contains(res.stderr, "No such image: nothere") {
		t.Errorf("history of a missing image: exit %d, %q", res.code, res.stderr)
	}
}
