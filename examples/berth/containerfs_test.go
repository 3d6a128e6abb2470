package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
)

func TestSplitCpArg(t *testing.T) {
	for _, tc := range []struct{ arg, container, path string }{
		{"c1:/etc/passwd", "c1", "/etc/passwd"},
		{"c1:rel", "c1", "rel"},
		{"/abs/with:colon", "", "/abs/with:colon"},
		{"./local:x", "", "./local:x"},
		{"plain", "", "plain"},
		{"-", "", "-"},
	} {
		c, p := splitCpArg(tc.arg)
		if c != tc.container || p != tc.path {
			t.Errorf("splitCpArg(%q) = %q, %q; want %q, %q", tc.arg, c, p, tc.container, tc.path)
		}
	}
}

func TestWriteTop(t *testing.T) {
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.Local)
	var buf bytes.Buffer
	writeTop(&buf, []berth.ProcessInfo{
		{PID: 4242, PPID: 4200, User: "root", TTY: "?", Cmd: "sh -c sleep 1000", StartTime: now.Add(-100 * time.Second), CPUTime: 50 * time.Second},
		{PID: 4243, PPID: 4242, User: "1000", TTY: "pts/0", Cmd: "sleep 1000", StartTime: now.AddDate(0, 0, -2), CPUTime: 26*time.Hour + 61*time.Second},
	}, now)
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	want := [][]string{
		{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"},
		{"root", "4242", "4200", "50", "11:58", "?", "00:00:50", "sh -c sleep 1000"},
		{"1000", "4243", "4242", "54", "Mar02", "pts/0", "1-02:01:01", "sleep 1000"},
	}
	if len(lines) != len(want) {
		t.Fatalf("top printed %q", buf.String())
	}
	for i, l := range lines {
		if got := columns.Split(strings.TrimSpace(l), -1); !slices.Equal(got, want[i]) {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
}

// tarEntries lists a tar's entry names.
func tarEntries(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

func TestContainerFSCommands(t *testing.T) {
	root := containerSetup(t)
	runDetached(t, root, "--name", "fs1", "busybox", "sh", "-c", "echo hi > /hello; mkdir /d; echo y > /d/y; touch /ready; sleep 1000")
	deadline := time.Now().Add(10 * time.Second)
	for runBerth(t, root, nil, "cp", "fs1:/ready", "-").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the container did not get ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	host := t.TempDir()

	// Host to container and back: a file and a tree.
	if err := os.WriteFile(filepath.Join(host, "f.txt"), []byte("from the host\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(host, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "a"), []byte("A"), 0o644)
	os.WriteFile(filepath.Join(tree, "sub", "b"), []byte("B"), 0o600)
	os.Symlink("a", filepath.Join(tree, "link"))
	mustBerth(t, root, "cp", filepath.Join(host, "f.txt"), "fs1:/tmp/")
	mustBerth(t, root, "cp", tree, "fs1:/copied")
	out := filepath.Join(t.TempDir(), "out")
	os.Mkdir(out, 0o755)
	mustBerth(t, root, "cp", "fs1:/tmp/f.txt", out)
	mustBerth(t, root, "cp", "fs1:/copied", filepath.Join(out, "back"))
	if b, err := os.ReadFile(filepath.Join(out, "f.txt")); err != nil || string(b) != "from the host\n" {
		t.Errorf("file round trip: %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(out, "f.txt")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("file round trip mode: %v, %v", st, err)
	}
	for rel, want := range map[string]string{"a": "A", "sub/b": "B"} {
		if b, err := os.ReadFile(filepath.Join(out, "back", rel)); err != nil || string(b) != want {
			t.Errorf("tree round trip %s: %q, %v", rel, b, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(out, "back", "link")); err != nil || l != "a" {
		t.Errorf("tree round trip link: %q, %v", l, err)
	}

	// Tars on stdin and stdout.
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "stdin.txt", Size: 3, Mode: 0o644})
	tw.Write([]byte("in\n"))
	tw.Close()
	if res := runBerth(t, root, in.Bytes(), "cp", "-", "fs1:/tmp"); res.code != 0 {
		t.Fatalf("cp - fs1:/tmp: exit %d: %s", res.code, res.stderr)
	}
	if got := tarEntries(t, []byte(mustBerth(t, root, "cp", "fs1:/tmp/stdin.txt", "-"))); !slices.Equal(got, []string{"stdin.txt"}) {
		t.Errorf("cp fs1:/tmp/stdin.txt - = %q", got)
	}
	if got := tarEntries(t, []byte(mustBerth(t, root, "cp", "fs1:/d", "-"))); !slices.Equal(got, []string{"d/", "d/y"}) {
		t.Errorf("cp fs1:/d - = %q, want [d/ d/y]", got)
	}

	// Errors, with docker's messages.
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"cp", "a", "b"}, "must specify at least one container source"},
		{[]string{"cp", "fs1:/a", "fs1:/b"}, "copying between containers is not supported"},
		{[]string{"cp", "nosuch:/a", "-"}, "No such container: nosuch"},
		{[]string{"cp", "fs1:/nothing", "-"}, "not found"},
		{[]string{"cp", filepath.Join(host, "f.txt"), "fs1:/nodir/"}, "does not exist"},
	} {
		res := runBerth(t, root, nil, tc.args...)
		if res.code != 1 || !strings.Contains(res.stderr, tc.msg) {
			t.Errorf("berth %q: exit %d, stderr %q; want 1 (docker's) and %q", tc.args, res.code, res.stderr, tc.msg)
		}
	}

	diff := mustBerth(t, root, "diff", "fs1")
	for _, l := range []string{"A /hello", "A /d", "A /d/y", "A /copied", "A /copied/sub/b", "C /tmp", "A /tmp/f.txt"} {
		if !slices.Contains(strings.Split(diff, "\n"), l) {
			t.Errorf("diff lacks %q:\n%s", l, diff)
		}
	}

	top := strings.Split(strings.TrimRight(mustBerth(t, root, "top", "fs1"), "\n"), "\n")
	if got := columns.Split(strings.TrimSpace(top[0]), -1); !slices.Equal(got, []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}) {
		t.Errorf("top header = %q", got)
	}
	if !slices.ContainsFunc(top[1:], func(l string) bool { return strings.HasSuffix(l, "sleep 1000") && strings.HasPrefix(l, "root") }) {
		t.Errorf("top lacks the sleep:\n%s", strings.Join(top, "\n"))
	}

	exported := filepath.Join(t.TempDir(), "fs1.tar")
	mustBerth(t, root, "export", "-o", exported, "fs1")
	b, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	names := tarEntries(t, b)
	for _, n := range []string{"hello", "d/", "d/y", "bin/busybox", "copied/sub/b", "proc/"} {
		if !slices.Contains(names, n) {
			t.Errorf("export lacks %q", n)
		}
	}
	if got := tarEntries(t, []byte(mustBerth(t, root, "export", "fs1"))); len(got) != len(names) {
		t.Errorf("export to stdout has %d entries, -o %d", len(got), len(names))
	}

	mustBerth(t, root, "kill", "fs1")
	mustBerth(t, root, "wait", "fs1")
	if res := runBerth(t, root, nil, "top", "fs1"); res.code != 1 || !strings.Contains(res.stderr, "is not running") {
		t.Errorf("top of a stopped container: exit %d, %q", res.code, res.stderr)
	}
	// The stopped container: its files are still there for cp, diff and export.
	if got := tarEntries(t, []byte(mustBerth(t, root, "cp", "fs1:/hello", "-"))); !slices.Equal(got, []string{"hello"}) {
		t.Errorf("cp from the stopped container = %q", got)
	}
	if res := runBerth(t, root, in.Bytes(), "cp", "-", "fs1:/"); res.code != 0 {
		t.Errorf("cp into the stopped container: exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(mustBerth(t, root, "diff", "fs1"), "A /stdin.txt\n") {
		t.Error("diff of the stopped container lacks what cp put there")
	}
	if got := tarEntries(t, []byte(mustBerth(t, root, "export", "fs1"))); !slices.Contains(got, "stdin.txt") {
		t.Error("export of the stopped container lacks what cp put there")
	}
}
