package main

import (
	"os"
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
