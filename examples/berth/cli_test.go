package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/berthtest"
)

// berthBin is the berth binary TestMain builds for the tests to drive.
var berthBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	berthBin = filepath.Join(dir, "berth")
	build := exec.Command("go", "build", "-o", berthBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as README builds it
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building berth: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// Each test removes its root when it ends; a bridge left to linger
	// (WithBridgeLinger) would be deleted by a process writing into a root
	// being removed. Tests check that commands leave nothing behind.
	os.Setenv("BERTH_BRIDGE_LINGER", "0")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary produced.
type result struct {
	stdout, stderr string
	code           int
}

// runBerth runs the binary on root with args and stdin.
func runBerth(t *testing.T, root string, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(berthBin, append([]string{"--root", root}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running berth %v: %v", args, err)
	}
	return res
}

// mustBerth runs the binary and fails the test unless it exits 0.
func mustBerth(t *testing.T, root string, args ...string) string {
	t.Helper()
	res := runBerth(t, root, nil, args...)
	if res.code != 0 {
		t.Fatalf("berth %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// setup skips unless the test can use berth for real, and writes the
// busybox root filesystem tar.
func setup(t *testing.T) (root, busyboxTar string) {
	t.Helper()
	berthtest.Skip(t)
	tarball := filepath.Join(t.TempDir(), "busybox.tar")
	if err := os.WriteFile(tarball, berthtest.BusyboxTar(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(t.TempDir(), "root"), tarball
}

// columns splits a table line at docker's 3-space column padding.
var columns = regexp.MustCompile(`\s{3,}`)

// imageLines returns the rows of "berth images" as columns, header first.
func imageLines(t *testing.T, root string, args ...string) [][]string {
	t.Helper()
	out := mustBerth(t, root, append([]string{"images"}, args...)...)
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, columns.Split(strings.TrimSpace(l), -1))
	}
	return rows
}

func TestImageLifecycle(t *testing.T) {
	root, tarball := setup(t)

	id := strings.TrimSpace(mustBerth(t, root, "import", "-m", "from the test", tarball, "busybox:latest"))
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("import printed %q, want an image ID", id)
	}
	short := strings.TrimPrefix(id, "sha256:")[:12]

	rows := imageLines(t, root)
	if want := []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}; !slices.Equal(rows[0], want) {
		t.Errorf("images header = %q, want %q", rows[0], want)
	}
	if len(rows) != 2 || rows[1][0] != "busybox" || rows[1][1] != "latest" || rows[1][2] != short ||
		!strings.HasSuffix(rows[1][3], " ago") || !regexp.MustCompile(`^[0-9.]+[kMG]?B$`).MatchString(rows[1][4]) {
		t.Errorf("images rows = %q, want busybox latest %s <age> ago <size>", rows[1:], short)
	}
	if got := mustBerth(t, root, "images", "-q"); got != short+"\n" {
		t.Errorf("images -q = %q, want %q", got, short+"\n")
	}
	if got := mustBerth(t, root, "images", "--no-trunc", "-q"); got != id+"\n" {
		t.Errorf("images --no-trunc -q = %q, want %q", got, id+"\n")
	}

	mustBerth(t, root, "tag", "busybox", "example.com/team/app:v1")
	if got := mustBerth(t, root, "images", "-q"); got != short+"\n" {
		t.Errorf("images -q after tag = %q, want the one ID once", got)
	}
	if rows := imageLines(t, root, "example.com/team/app"); len(rows) != 2 || rows[1][0] != "example.com/team/app" || rows[1][1] != "v1" {
		t.Errorf("images example.com/team/app = %q, want only that repository", rows)
	}

	var inspected []struct {
		Id       string
		RepoTags []string
		Created  string
		RootFS   struct {
			Type   string
			Layers []string
		}
	}
	out := mustBerth(t, root, "inspect", "busybox")
	if err := json.Unmarshal([]byte(out), &inspected); err != nil {
		t.Fatalf("inspect output is not a JSON array: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "[\n    {\n        \"Id\"") {
		t.Errorf("inspect output is not indented 4 spaces like docker:\n%s", out)
	}
	if len(inspected) != 1 {
		t.Fatalf("inspect returned %d objects, want 1", len(inspected))
	}
	got := inspected[0]
	if got.Id != id {
		t.Errorf("inspect Id = %q, want %q", got.Id, id)
	}
	if want := []string{"busybox:latest", "example.com/team/app:v1"}; !slices.Equal(got.RepoTags, want) {
		t.Errorf("inspect RepoTags = %q, want %q", got.RepoTags, want)
	}
	if got.RootFS.Type != "layers" || len(got.RootFS.Layers) != 1 || !strings.HasPrefix(got.RootFS.Layers[0], "sha256:") {
		t.Errorf("inspect RootFS = %+v, want one layer diff ID", got.RootFS)
	}
	if got := mustBerth(t, root, "inspect", "-f", "{{.Id}}", "busybox"); got != id+"\n" {
		t.Errorf("inspect -f {{.Id}} = %q, want %q", got, id+"\n")
	}
	if got := mustBerth(t, root, "inspect", "--type", "image", "--format", "{{json .RootFS.Layers}} {{lower .Os}}", short); got != fmt.Sprintf("[%q] linux\n", inspected[0].RootFS.Layers[0]) {
		t.Errorf("inspect --format with json and lower = %q", got)
	}

	archive := filepath.Join(t.TempDir(), "busybox.tar")
	mustBerth(t, root, "save", "-o", archive, "busybox:latest")
	if fi, err := os.Stat(archive); err != nil || fi.Size() == 0 {
		t.Fatalf("save -o wrote no archive: %v", err)
	}

	out = mustBerth(t, root, "rmi", "busybox", "example.com/team/app:v1")
	if want := "Untagged: busybox:latest\nUntagged: example.com/team/app:v1\nDeleted: " + id + "\n"; out != want {
		t.Errorf("rmi printed:\n%s\nwant:\n%s", out, want)
	}
	if rows := imageLines(t, root); len(rows) != 1 {
		t.Errorf("images after rmi = %q, want only the header", rows)
	}

	if got := mustBerth(t, root, "load", "-i", archive); got != "Loaded image: busybox:latest\n" {
		t.Errorf("load printed %q, want %q", got, "Loaded image: busybox:latest\n")
	}
	if got := mustBerth(t, root, "images", "-q", "busybox"); got != short+"\n" {
		t.Errorf("images -q busybox after load = %q, want %q", got, short+"\n")
	}

	// save to stdout and load from stdin round-trip too.
	saved := mustBerth(t, root, "save", "busybox")
	root2 := filepath.Join(t.TempDir(), "root2")
	if res := runBerth(t, root2, []byte(saved), "load"); res.code != 0 || res.stdout != "Loaded image: busybox:latest\n" {
		t.Errorf("load from stdin: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	// An untagged import from stdin lists as <none> <none>.
	rootfs, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	res := runBerth(t, root2, rootfs, "import", "-")
	if res.code != 0 {
		t.Fatalf("import -: exit %d, stderr %q", res.code, res.stderr)
	}
	untagged := strings.TrimPrefix(strings.TrimSpace(res.stdout), "sha256:")[:12]
	if rows := imageLines(t, root2); !slices.ContainsFunc(rows, func(r []string) bool {
		return len(r) == 5 && r[0] == "<none>" && r[1] == "<none>" && r[2] == untagged
	}) {
		t.Errorf("images = %q, want a <none> <none> %s row", rows, untagged)
	}
}

func TestPushPull(t *testing.T) {
	root, tarball := setup(t)
	reg := berthtest.StartRegistry(t)

	mustBerth(t, root, "import", tarball, "busybox")
	ref := reg.Host + "/test/busybox:1.0"
	mustBerth(t, root, "tag", "busybox", ref)
	pushed := mustBerth(t, root, "push", ref)
	wantPush := regexp.MustCompile(`(?m)^The push refers to repository \[` + regexp.QuoteMeta(reg.Host) + `/test/busybox\]\n[0-9a-f]{12}: Pushed\n1\.0: digest: sha256:[0-9a-f]{64} size: [0-9]+\n$`)
	if !wantPush.MatchString(pushed) {
		t.Errorf("push printed:\n%s\nwant lines like docker's", pushed)
	}

	other := filepath.Join(t.TempDir(), "other")
	out := mustBerth(t, other, "pull", ref)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	digest := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(pushed)
	for _, want := range []string{
		"1.0: Pulling from test/busybox",
		"Digest: " + digest,
		"Status: Downloaded newer image for " + ref,
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	if !slices.ContainsFunc(lines, regexp.MustCompile(`^[0-9a-f]{12}: Pull complete$`).MatchString) {
		t.Errorf("pull output has no \"<layer>: Pull complete\" line:\n%s", out)
	}
	if last := lines[len(lines)-1]; last != ref {
		t.Errorf("pull's last line = %q, want the reference %q", last, ref)
	}

	out = mustBerth(t, other, "pull", ref)
	if !strings.Contains(out, "Status: Image is up to date for "+ref+"\n") || !strings.Contains(out, ": Already exists\n") {
		t.Errorf("second pull printed:\n%s\nwant \"Already exists\" and \"Image is up to date\"", out)
	}
	if got := mustBerth(t, other, "pull", "-q", ref); got != ref+"\n" {
		t.Errorf("pull -q = %q, want %q", got, ref+"\n")
	}
	if got, want := mustBerth(t, other, "images", "-q"), mustBerth(t, root, "images", "-q", ref); got != want {
		t.Errorf("pulled image ID %q, pushed image ID %q", got, want)
	}

	res := runBerth(t, other, nil, "pull", reg.Host+"/test/nothere:latest")
	if res.code != exitFailure || !strings.HasPrefix(res.stderr, "Error: ") {
		t.Errorf("pull of a missing image: exit %d, stderr %q; want %d and an Error: line", res.code, res.stderr, exitFailure)
	}
}

// TestExitCodes checks the exit codes and messages scripts rely on.
func TestExitCodes(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")

	tests := []struct {
		name       string
		args       []string
		code       int
		stderr     string // a prefix of stderr, or "" for empty
		stdoutPart string
	}{
		{"--version", []string{"--version"}, 0, "", "berth version "},
		{"version", []string{"version"}, 0, "", "Client:\n Version:"},
		{"unknown flag", []string{"pull", "--bogus", "busybox"}, 125, "Error: unknown flag: --bogus\nSee 'berth pull --help'.", ""},
		{"unknown shorthand", []string{"images", "-z"}, 125, "Error: unknown shorthand flag: 'z' in -z", ""},
		{"too few arguments", []string{"tag", "busybox"}, 1, "Error: \"berth tag\" requires exactly 2 arguments.", ""},
		{"unknown command", []string{"frobnicate"}, 1, "Error: 'frobnicate' is not a berth command.", ""},
		{"help", []string{"--help"}, 0, "", "Commands:"},
		{"help command", []string{"help", "images"}, 0, "", "Usage:  berth images [OPTIONS]"},
		{"command help", []string{"rmi", "--help"}, 0, "", "-f, --force"},
		{"tag missing source", []string{"tag", "nothere", "x"}, 1, "Error: No such image: nothere\n", ""},
		{"save missing", []string{"save", "-o", filepath.Join(t.TempDir(), "x.tar"), "nothere"}, 1, "Error: No such image: nothere\n", ""},
		{"push missing", []string{"push", "127.0.0.1:1/nothere"}, 1, "Error: An image does not exist locally with the tag: 127.0.0.1:1/nothere\n", ""},
		{"inspect missing", []string{"inspect", "nothere"}, 1, "Error: No such object: nothere\n", "[]\n"},
		{"inspect type image missing", []string{"inspect", "--type", "image", "nothere"}, 1, "Error: No such image: nothere\n", "[]\n"},
		{"inspect some missing", []string{"inspect", "-f", "{{.Os}}", "busybox", "nothere"}, 1, "Error: No such object: nothere\n", "linux\n"},
		{"inspect bad type", []string{"inspect", "--type", "secret", "busybox"}, 1, "Error: \"secret\" is not a valid value for --type\n", ""},
		{"inspect bad template", []string{"inspect", "-f", "{{.Id", "busybox"}, 64, "Template parsing error: ", ""},
		{"rmi missing", []string{"rmi", "nothere"}, 1, "Error: No such image: nothere\n", ""},
		{"rmi -f missing", []string{"rmi", "-f", "nothere"}, 0, "Error: No such image: nothere\n", ""},
		{"load missing file", []string{"load", "-i", "/nonexistent.tar"}, 1, "Error: open /nonexistent.tar: ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runBerth(t, root, nil, tt.args...)
			if res.code != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", res.code, tt.code, res.stderr)
			}
			if tt.stderr == "" && res.stderr != "" || !strings.HasPrefix(res.stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to start with %q", res.stderr, tt.stderr)
			}
			if !strings.Contains(res.stdout, tt.stdoutPart) {
				t.Errorf("stdout = %q, want it to contain %q", res.stdout, tt.stdoutPart)
			}
		})
	}
}
