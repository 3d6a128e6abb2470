package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1024", 1024, false},
		{"10b", 10, false},
		{"32m", 32 << 20, false},
		{"32M", 32 << 20, false},
		{"32MB", 32 << 20, false},
		{"32MiB", 32 << 20, false},
		{"1k", 1024, false},
		{"1.5g", 3 << 29, false},
		{"2G", 2 << 30, false},
		{"1t", 1 << 40, false},
		{"", 0, true},
		{"m", 0, true},
		{"-1m", 0, true},
		{"32x", 0, true},
		{"32mm", 0, true},
		{"1e3", 0, true},
		{"1İ", 0, true}, // lower-cased, longer in bytes: it panicked
		{"İİİ", 0, true},
	}
	for _, tt := range tests {
		got, err := parseMemory(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]int64{"1.5": 1_500_000_000, "0.25": 250_000_000, "2": 2_000_000_000} {
		if got, err := parseCPUs(in); err != nil || got != want {
			t.Errorf("parseCPUs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "NaN"} {
		if _, err := parseCPUs(in); err == nil {
			t.Errorf("parseCPUs(%q) succeeded, want an error", in)
		}
	}
}

func TestParseUlimit(t *testing.T) {
	tests := []struct {
		in   string
		want berth.Rlimit
		err  bool
	}{
		{"nofile=1024:2048", berth.Rlimit{Name: "nofile", Soft: 1024, Hard: 2048}, false},
		{"nproc=100", berth.Rlimit{Name: "nproc", Soft: 100, Hard: 100}, false},
		{"memlock=-1:-1", berth.Rlimit{Name: "memlock", Soft: math.MaxUint64, Hard: math.MaxUint64}, false},
		{"nofile=2048:1024", berth.Rlimit{}, true},
		{"nofile", berth.Rlimit{}, true},
		{"nofile=x", berth.Rlimit{}, true},
	}
	for _, tt := range tests {
		got, err := parseUlimit(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseUlimit(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"FROM_HOST": "h"}[k]
		return v, ok
	}
	in := "\xef\xbb\xbf# a comment\n\nA=1\n  B=two words \nC=\"quoted\"\nFROM_HOST\nNOT_SET\nEMPTY=\n"
	got, err := parseEnvFile([]byte(in), lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words ", `C="quoted"`, "FROM_HOST=h", "EMPTY="}
	if !slices.Equal(got, want) {
		t.Errorf("parseEnvFile = %q, want %q", got, want)
	}
	for _, bad := range []string{"A B=1\n", "=1\n"} {
		if _, err := parseEnvFile([]byte(bad), lookup); err == nil {
			t.Errorf("parseEnvFile(%q) succeeded, want an error", bad)
		}
	}
}

func TestSecurityOpt(t *testing.T) {
	for _, ok := range []string{"no-new-privileges", "no-new-privileges:true", "no-new-privileges=false", "seccomp=unconfined", "seccomp:unconfined", "apparmor=unconfined", "label=disable"} {
		if _, err := securityOpt(ok); err != nil {
			t.Errorf("securityOpt(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"no-new-privileges:maybe", "seccomp=/nonexistent/profile.json", "apparmor=docker-default", "bogus"} {
		if _, err := securityOpt(bad); err == nil {
			t.Errorf("securityOpt(%q) succeeded, want an error", bad)
		}
	}
}

// TestRunSeccompProfile: --security-opt seccomp=FILE runs the container
// under the profile the file holds (docker's JSON form).
func TestRunSeccompProfile(t *testing.T) {
	root := containerSetup(t)
	file := filepath.Join(t.TempDir(), "profile.json")
	profile := `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`
	if err := os.WriteFile(file, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runBerth(t, root, nil, "run", "--rm", "--security-opt", "seccomp="+file, "busybox", "sh", "-c", "mkdir /tmp/d 2>&1; true")
	if res.code != 0 || res.stdout != "mkdir: can't create directory '/tmp/d': Operation not permitted\n" {
		t.Errorf("run with a profile refusing mkdir: exit %d, %q %q", res.code, res.stdout, res.stderr)
	}
	if err := os.WriteFile(file, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--security-opt", "seccomp="+file, "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "seccomp profile") {
		t.Errorf("run with a broken profile: exit %d, %q; want 125", res.code, res.stderr)
	}
}

func TestParseTimestamp(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"10m", now.Add(-10 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"2024-05-06T07:00:00Z", time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)},
		{"2024-05-06T07:00:00.5+02:00", time.Date(2024, 5, 6, 5, 0, 0, 5e8, time.UTC)},
		{"2024-05-06T07:00:00", time.Date(2024, 5, 6, 7, 0, 0, 0, time.Local)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"1700000000.25", time.Unix(1700000000, 25e7)},
	}
	for _, tt := range tests {
		got, err := parseTimestamp(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseTimestamp(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseTimestamp("yesterday", now); err == nil {
		t.Error("parseTimestamp(\"yesterday\") succeeded, want an error")
	}
}

func TestPsColumns(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		state berth.ContainerState
		want  string
	}{
		{berth.ContainerState{Status: "running", StartedAt: now.Add(-3 * time.Second)}, "Up 3 seconds"},
		{berth.ContainerState{Status: "running", StartedAt: now.Add(-100 * time.Millisecond)}, "Up Less than a second"},
		{berth.ContainerState{Status: "running", StartedAt: now.Add(-3 * time.Second), Health: &berth.HealthState{Status: "starting"}}, "Up 3 seconds (health: starting)"},
		{berth.ContainerState{Status: "running", StartedAt: now.Add(-3 * time.Second), Health: &berth.HealthState{Status: "unhealthy"}}, "Up 3 seconds (unhealthy)"},
		{berth.ContainerState{Status: "paused", StartedAt: now.Add(-3 * time.Second), Health: &berth.HealthState{Status: "unhealthy"}}, "Up 3 seconds (Paused)"},
		{berth.ContainerState{Status: "exited", ExitCode: 0, FinishedAt: now.Add(-5 * time.Second)}, "Exited (0) 5 seconds ago"},
		{berth.ContainerState{Status: "exited", ExitCode: 137, FinishedAt: now.Add(-2 * time.Hour)}, "Exited (137) 2 hours ago"},
		{berth.ContainerState{Status: "created"}, "Created"},
		{berth.ContainerState{Status: "dead"}, "Dead"},
	}
	for _, tt := range tests {
		if got := containerStatus(tt.state, now); got != tt.want {
			t.Errorf("containerStatus(%+v) = %q, want %q", tt.state, got, tt.want)
		}
	}

	cmds := []struct {
		args          []string
		trunc, noTrun string
	}{
		{[]string{"sh", "-c", "sleep 100; echo done"}, `"sh -c 'sleep 100; e…"`, `"sh -c 'sleep 100; echo done'"`},
		{[]string{"sleep", "300"}, `"sleep 300"`, `"sleep 300"`},
		{[]string{"/docker-entrypoint.sh", "nginx"}, `"/docker-entrypoint.…"`, `"/docker-entrypoint.sh nginx"`},
		{[]string{"echo", "it's", ""}, `"echo 'it'\\''s' ''"`, `"echo 'it'\\''s' ''"`},
	}
	info := &berth.ContainerInfo{ID: strings.Repeat("ab", 32), Name: "web", Image: "busybox", Created: now.Add(-time.Minute)}
	for _, tt := range cmds {
		info.Args = tt.args
		r := newPsRow(info, false, now)
		if r.Command != tt.trunc || r.ID != strings.Repeat("ab", 6) || r.RunningFor != "About a minute ago" {
			t.Errorf("ps row for %q = %+v, want command %s, a 12-digit ID, created About a minute ago", tt.args, r, tt.trunc)
		}
		if r := newPsRow(info, true, now); r.Command != tt.noTrun || r.ID != info.ID {
			t.Errorf("ps --no-trunc row for %q = %+v, want command %s and the full ID", tt.args, r, tt.noTrun)
		}
	}
}

func TestBinarySize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 512: "512B", 1536: "1.5KiB", 1577058: "1.504MiB", 8 << 30: "8GiB"} {
		if got := binarySize(n); got != want {
			t.Errorf("binarySize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestExpandShorthands(t *testing.T) {
	fs := newFlagSet("test")
	var b1, b2, b3 bool
	var s string
	var list []string
	fs.Bool(&b1, "i", "interactive", "")
	fs.Bool(&b2, "t", "tty", "")
	fs.Bool(&b3, "d", "detach", "")
	fs.String(&s, "w", "workdir", "string", "", "")
	fs.Strings(&list, "e", "env", "")
	tests := []struct {
		in    []string
		posix bool
		want  []string
	}{
		{[]string{"-it", "img", "ls", "-la"}, true, []string{"-i", "-t", "img", "ls", "-la"}},
		{[]string{"-dit", "--rm", "img"}, true, []string{"-d", "-i", "-t", "--rm", "img"}},
		{[]string{"-eK=V", "-de", "A=1", "img"}, true, []string{"-e", "K=V", "-d", "-e", "A=1", "img"}},
		{[]string{"-w", "-it", "img"}, true, []string{"-w", "-it", "img"}},
		{[]string{"--workdir", "/x", "img", "-it"}, true, []string{"--workdir", "/x", "img", "-it"}},
		{[]string{"img", "-it"}, false, []string{"img", "-i", "-t"}},
		{[]string{"--", "-it"}, false, []string{"--", "-it"}},
	}
	for _, tt := range tests {
		got, err := fs.expandShorthands(tt.in, tt.posix)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("expandShorthands(%q, posix %v) = %q, %v; want %q", tt.in, tt.posix, got, err, tt.want)
		}
	}
	if _, err := fs.expandShorthands([]string{"-iz"}, true); err == nil || err.Error() != "unknown shorthand flag: 'z' in -iz" {
		t.Errorf("expandShorthands(-iz) error = %v, want docker's unknown shorthand message", err)
	}
}

// containerSetup is setup with busybox imported into the root.
func containerSetup(t *testing.T) string {
	t.Helper()
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	return root
}

// runDetached starts a detached container and removes it when the test
// ends; it returns the container ID.
func runDetached(t *testing.T, root string, args ...string) string {
	t.Helper()
	out := mustBerth(t, root, append([]string{"run", "-d"}, args...)...)
	id := strings.TrimSpace(out)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("run -d printed %q, want a 64-digit container ID", out)
	}
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", id) })
	return id
}

// psRows returns the rows of "berth ps ARGS" as columns, header first.
func psRows(t *testing.T, root string, args ...string) [][]string {
	t.Helper()
	out := mustBerth(t, root, append([]string{"ps"}, args...)...)
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, columns.Split(strings.TrimSpace(l), -1))
	}
	return rows
}

// psRow finds the row of the container named name.
func psRowOf(rows [][]string, name string) []string {
	for _, r := range rows[1:] {
		if r[len(r)-1] == name {
			return r
		}
	}
	return nil
}

func TestRunAttached(t *testing.T) {
	root := containerSetup(t)
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# from a file\nB=2\n\nFROM_HOST\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FROM_HOST", "h")
	t.Setenv("PASSED", "p")

	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string // a prefix of stderr, or "" for empty
	}{
		{"echo", "", []string{"run", "--rm", "busybox", "echo", "hi"}, 0, "hi\n", ""},
		{"exit code", "", []string{"run", "--rm", "busybox", "sh", "-c", "exit 7"}, 7, "", ""},
		{"stderr", "", []string{"run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"}, 0, "out\n", "err\n"},
		{"not found", "", []string{"run", "--rm", "busybox", "nosuch"}, 127, "", "Error: "},
		{"not executable", "", []string{"run", "--rm", "busybox", "/etc/passwd"}, 126, "", "Error: "},
		{"unknown image", "", []string{"run", "--rm", "nosuchimage"}, 125, "", "Unable to find image 'nosuchimage:latest' locally\n"},
		{"pull never", "", []string{"run", "--rm", "--pull", "never", "nosuchimage"}, 125, "", "Error: No such image: nosuchimage:latest\n"},
		{"bad flag", "", []string{"run", "--bogus", "busybox"}, 125, "", "Error: unknown flag: --bogus\n"},
		{"no image", "", []string{"run"}, 1, "", "Error: \"berth run\" requires at least 1 argument."},
		{"bad memory", "", []string{"run", "-m", "lots", "busybox"}, 125, "", "Error: invalid argument \"lots\" for \"-m, --memory\" flag"},
		{"env", "", []string{"run", "--rm", "-e", "A=1", "--env-file", envFile, "-e", "PASSED", "-e", "UNSET_HERE", "-w", "/tmp", "-u", "1000",
			"busybox", "sh", "-c", "echo $A $B $FROM_HOST $PASSED ${UNSET_HERE-unset}; pwd; id -u"}, 0, "1 2 h p unset\n/tmp\n1000\n", ""},
		{"flags after the image are the command's", "", []string{"run", "--rm", "busybox", "printf", "%s,", "-e", "--rm"}, 0, "-e,--rm,", ""},
		{"stdin", "piped\n", []string{"run", "--rm", "-i", "busybox", "cat"}, 0, "piped\n", ""},
		{"no stdin without -i", "piped\n", []string{"run", "--rm", "busybox", "cat"}, 0, "", ""},
		{"tty", "", []string{"run", "--rm", "-it", "busybox", "sh", "-c", "test -t 0 && test -t 1 && echo tty"}, 0, "tty\r\n", ""},
		{"entrypoint", "", []string{"run", "--rm", "--entrypoint", "echo", "busybox", "a", "b"}, 0, "a b\n", ""},
		{"hostname", "", []string{"run", "--rm", "-h", "myhost", "busybox", "hostname"}, 0, "myhost\n", ""},
		{"read-only", "", []string{"run", "--rm", "--read-only", "busybox", "touch", "/x"}, 1, "", "touch: /x: Read-only file system\n"},
		{"ulimit", "", []string{"run", "--rm", "--ulimit", "nofile=1024:2048", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"}, 0, "1024\n2048\n", ""},
		{"cap-drop", "", []string{"run", "--rm", "--cap-drop", "ALL", "busybox", "grep", "CapEff", "/proc/self/status"}, 0, "CapEff:\t0000000000000000\n", ""},
		{"group-add", "", []string{"run", "--rm", "--group-add", "4321", "--group-add", "tty", "busybox", "id", "-G"}, 0, "0 5 4321\n", ""},
		{"memory limit", "", []string{"run", "--rm", "-m", "8m", "--memory-swap", "8M", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1"}, 137, "", ""},
		{"pids limit", "", []string{"run", "--rm", "--pids-limit", "5", "busybox", "sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done; wait"}, 2, "", "sh: can't fork"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runBerth(t, root, []byte(tt.stdin), tt.args...)
			if res.code != tt.code || res.stdout != tt.stdout {
				t.Errorf("exit %d, stdout %q; want %d, %q (stderr %q)", res.code, res.stdout, tt.code, tt.stdout, res.stderr)
			}
			if tt.stderr == "" && res.stderr != "" || !strings.HasPrefix(res.stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to start with %q", res.stderr, tt.stderr)
			}
		})
	}
	if rows := psRows(t, root, "-a"); len(rows) != 1 {
		t.Errorf("ps -a after --rm runs = %q, want only the header", rows)
	}

	// Without --rm the container stays, exited, with its code.
	res := runBerth(t, root, nil, "run", "--name", "seven", "busybox", "sh", "-c", "exit 7")
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", "seven") })
	if res.code != 7 {
		t.Fatalf("run sh -c 'exit 7': exit %d, want 7 (stderr %q)", res.code, res.stderr)
	}
	if row := psRowOf(psRows(t, root, "-a"), "seven"); row == nil || !strings.HasPrefix(row[4], "Exited (7) ") {
		t.Errorf("ps -a row of seven = %q, want STATUS Exited (7) …", row)
	}
	if got := mustBerth(t, root, "wait", "seven"); got != "7\n" {
		t.Errorf("wait seven = %q, want 7", got)
	}
	res = runBerth(t, root, nil, "run", "--name", "seven", "busybox", "true")
	if res.code != 125 || !strings.HasPrefix(res.stderr, `Error: Conflict. The container name "/seven" is already in use`) {
		t.Errorf("run with a taken name: exit %d, stderr %q; want 125 and docker's Conflict message", res.code, res.stderr)
	}
}

func TestDetachedLifecycle(t *testing.T) {
	root := containerSetup(t)

	id := runDetached(t, root, "--name", "web", "-l", "tier=front", "busybox", "sleep", "300")
	rows := psRows(t, root)
	if want := []string{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"}; !slices.Equal(rows[0], want) {
		t.Errorf("ps header = %q, want %q", rows[0], want)
	}
	row := psRowOf(rows, "web")
	if row == nil || row[0] != id[:12] || row[1] != "busybox" || row[2] != `"sleep 300"` ||
		!strings.HasSuffix(row[3], " ago") || !strings.HasPrefix(row[4], "Up ") {
		t.Errorf("ps row of web = %q, want %s busybox \"sleep 300\" <age> ago Up … web", row, id[:12])
	}
	if got := mustBerth(t, root, "ps", "-q"); got != id[:12]+"\n" {
		t.Errorf("ps -q = %q, want %q", got, id[:12]+"\n")
	}
	if got := mustBerth(t, root, "ps", "-q", "--no-trunc"); got != id+"\n" {
		t.Errorf("ps -q --no-trunc = %q, want %q", got, id+"\n")
	}
	if got := mustBerth(t, root, "ps", "--format", "{{.Names}} {{.State}} {{.Labels}}"); got != "web running tier=front\n" {
		t.Errorf("ps --format = %q, want %q", got, "web running tier=front\n")
	}
	if got := mustBerth(t, root, "ps", "--format", `{{.Label "tier"}} {{.Label "none"}}- {{.Networks}} {{.LocalVolumes}}`); got != "front - bridge 0\n" {
		t.Errorf(`ps --format with .Label, .Networks, .LocalVolumes = %q, want %q`, got, "front - bridge 0\n")
	}
	// docker turns the characters \t and \n of a --format into a tab and a
	// newline; scripts cut -f the rows.
	if got := mustBerth(t, root, "ps", "--format", `{{.Names}}\t{{.State}}\n--`); got != "web\trunning\n--\n" {
		t.Errorf(`ps --format with \t and \n = %q, want %q`, got, "web\trunning\n--\n")
	}

	out := mustBerth(t, root, "stats", "--no-stream", "web")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 || !regexp.MustCompile(`^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE / LIMIT\s+MEM %\s+NET I/O\s+PIDS$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^`+id[:12]+`\s+web\s+[0-9.]+%\s+[0-9.]+[KMG]?i?B / [0-9.]+[KMGT]?i?B\s+[0-9.]+%\s+[0-9.]+[kMG]?B / [0-9.]+[kMG]?B\s+1$`).MatchString(lines[1]) {
		t.Errorf("stats --no-stream web printed:\n%s", out)
	}
	if got := mustBerth(t, root, "stats", "--no-stream", "--format", "{{.Name}}|{{.Container}}|{{.PIDs}}", "web"); got != "web|"+id[:12]+"|1\n" {
		t.Errorf("stats --format = %q", got)
	}
	if out := mustBerth(t, root, "stats", "--no-stream"); !strings.Contains(out, " web ") {
		t.Errorf("stats --no-stream (all running) lacks web:\n%s", out)
	}

	// Logs of a container that wrote to both streams.
	runDetached(t, root, "--name", "l", "busybox", "sh", "-c", "echo out; echo err >&2; sleep 0.1; echo more") // stdout and stderr are separate pipes: without the pause their order in the log is a race
	if got := mustBerth(t, root, "wait", "l"); got != "0\n" {
		t.Errorf("wait l = %q, want 0", got)
	}
	res := runBerth(t, root, nil, "logs", "l")
	if res.code != 0 || res.stdout != "out\nmore\n" || res.stderr != "err\n" {
		t.Errorf("logs l: exit %d, stdout %q, stderr %q; want out+more on stdout, err on stderr", res.code, res.stdout, res.stderr)
	}
	if res := runBerth(t, root, nil, "logs", "--tail", "1", "l"); res.stdout != "more\n" || res.stderr != "" {
		t.Errorf("logs --tail 1: stdout %q, stderr %q; want the last line only", res.stdout, res.stderr)
	}
	if res := runBerth(t, root, nil, "logs", "--tail", "0", "l"); res.stdout != "" || res.stderr != "" {
		t.Errorf("logs --tail 0: stdout %q, stderr %q; want nothing", res.stdout, res.stderr)
	}
	if res := runBerth(t, root, nil, "logs", "-t", "--since", "10m", "l"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+ out\n`).MatchString(res.stdout) {
		t.Errorf("logs -t --since 10m: stdout %q, want timestamped lines", res.stdout)
	}
	if res := runBerth(t, root, nil, "logs", "--since", "2999-01-01T00:00:00Z", "l"); res.stdout != "" || res.stderr != "" {
		t.Errorf("logs --since in the future: stdout %q, stderr %q; want nothing", res.stdout, res.stderr)
	}

	// inspect finds containers and images.
	if id := mustBerth(t, root, "inspect", "-f", "{{.ID}}", "l"); id != mustBerth(t, root, "inspect", "-f", "{{.Id}}", "l") || len(id) != 65 {
		t.Errorf("inspect -f {{.ID}} of a container = %q, want its ID as {{.Id}} gives it", id)
	}
	if got := mustBerth(t, root, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.Name}}", "l"); got != "exited 0 /l\n" {
		t.Errorf("inspect -f of l = %q, want %q", got, "exited 0 /l\n")
	}
	var inspected []struct {
		Id    string
		Path  string
		Args  []string
		Name  string
		Image string
		State struct {
			Status  string
			Running bool
			Pid     int
		}
		Config struct {
			Image  string
			Cmd    []string
			Labels map[string]string
		}
		HostConfig      struct{ AutoRemove bool }
		NetworkSettings map[string]any
	}
	out = mustBerth(t, root, "inspect", "web", "busybox")
	if err := json.Unmarshal([]byte(out), &inspected); err != nil || len(inspected) != 2 {
		t.Fatalf("inspect web busybox: %v\n%s", err, out)
	}
	got, img := inspected[0], inspected[1]
	if got.Id != id || got.Name != "/web" || got.Path != "sleep" || !slices.Equal(got.Args, []string{"300"}) ||
		got.Image != img.Id || got.Config.Image != "busybox" || got.Config.Labels["tier"] != "front" ||
		got.State.Status != "running" || !got.State.Running || got.State.Pid == 0 || got.NetworkSettings == nil {
		t.Errorf("inspect web = %+v, want docker's shape for the running container (image ID %s)", got, img.Id)
	}
	if res := runBerth(t, root, nil, "inspect", "--type", "image", "web"); res.code != 1 || res.stderr != "Error: No such image: web\n" {
		t.Errorf("inspect --type image web: exit %d, stderr %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "inspect", "--type", "container", "busybox"); res.code != 1 || res.stderr != "Error: No such container: busybox\n" {
		t.Errorf("inspect --type container busybox: exit %d, stderr %q", res.code, res.stderr)
	}

	// stop: sleep as pid 1 ignores SIGTERM, so -t 1 ends in SIGKILL.
	start := time.Now()
	if got := mustBerth(t, root, "stop", "-t", "1", "web"); got != "web\n" {
		t.Errorf("stop web printed %q, want %q", got, "web\n")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("stop -t 1 took %v", d)
	}
	if row := psRowOf(psRows(t, root, "-a"), "web"); row == nil || !regexp.MustCompile(`^Exited \((137|143)\) `).MatchString(row[4]) {
		t.Errorf("ps -a row of web after stop = %q, want Exited (137) or (143)", row)
	}
	if psRowOf(psRows(t, root), "web") != nil {
		t.Error("ps without -a still lists the stopped web")
	}
	if got := mustBerth(t, root, "rm", "web", "l"); got != "web\nl\n" {
		t.Errorf("rm web l printed %q", got)
	}
	if rows := psRows(t, root, "-a"); len(rows) != 1 {
		t.Errorf("ps -a after rm = %q, want only the header", rows)
	}

	// kill, wait, rm -f.
	runDetached(t, root, "--name", "k", "busybox", "sleep", "300")
	if got := mustBerth(t, root, "kill", "k"); got != "k\n" {
		t.Errorf("kill k printed %q", got)
	}
	if got := mustBerth(t, root, "wait", "k"); got != "137\n" {
		t.Errorf("wait k after kill = %q, want 137", got)
	}
	if res := runBerth(t, root, nil, "kill", "k"); res.code != 1 || !strings.HasPrefix(res.stderr, "Error: cannot kill container: k: ") {
		t.Errorf("kill of an exited container: exit %d, stderr %q", res.code, res.stderr)
	}
	fid := runDetached(t, root, "--name", "f", "busybox", "sleep", "300")
	if res := runBerth(t, root, nil, "rm", "f"); res.code != 1 || !strings.HasPrefix(res.stderr, "Error: ") {
		t.Errorf("rm of a running container: exit %d, stderr %q; want 1", res.code, res.stderr)
	}
	if got := mustBerth(t, root, "rm", "-f", fid[:8]); got != fid[:8]+"\n" {
		t.Errorf("rm -f by ID prefix printed %q", got)
	}
	if psRowOf(psRows(t, root, "-a"), "f") != nil {
		t.Error("ps -a still lists f after rm -f")
	}
}

func TestContainerExitCodes(t *testing.T) {
	root := containerSetup(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"rm missing", []string{"rm", "nothere"}, 1, "", "Error: No such container: nothere\n"},
		{"rm -f missing", []string{"rm", "-f", "nothere"}, 0, "", "Error: No such container: nothere\n"},
		{"stop missing", []string{"stop", "nothere"}, 1, "", "Error: No such container: nothere\n"},
		{"kill missing", []string{"kill", "nothere"}, 1, "", "Error: No such container: nothere\n"},
		{"kill bad signal", []string{"kill", "-s", "NOPE", "x"}, 1, "", "Error: invalid signal: NOPE\n"},
		{"wait missing", []string{"wait", "nothere"}, 1, "", "Error: No such container: nothere\n"},
		{"logs missing", []string{"logs", "nothere"}, 1, "", "Error: No such container: nothere\n"},
		{"logs bad tail", []string{"logs", "--tail", "x", "nothere"}, 1, "", "Error: invalid value for \"tail\""},
		{"stats missing", []string{"stats", "--no-stream", "nothere"}, 1, "", "Error: No such container: nothere\n"},
		{"inspect type container missing", []string{"inspect", "--type", "container", "nothere"}, 1, "[]\n", "Error: No such container: nothere\n"},
		{"ps empty", []string{"ps", "-a", "-q"}, 0, "", ""},
		{"run help", []string{"run", "--help"}, 0, "\nUsage:  berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runBerth(t, root, nil, tt.args...)
			if res.code != tt.code || !strings.HasPrefix(res.stdout, tt.stdout) || tt.stdout == "" && res.stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d, %q (stderr %q)", res.code, res.stdout, tt.code, tt.stdout, res.stderr)
			}
			if tt.stderr == "" && res.stderr != "" || !strings.HasPrefix(res.stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to start with %q", res.stderr, tt.stderr)
			}
		})
	}
}

// TestRunSignal checks that signals to an attached berth run go to the
// container, not only SIGTERM (a supervisor's SIGHUP to reload, SIGUSR1,
// SIGQUIT), and berth exits with the container's code.
func TestRunSignal(t *testing.T) {
	root := containerSetup(t)
	cmd := exec.Command(berthBin, "--root", root, "run", "--rm", "busybox", "sh", "-c",
		"trap 'echo got HUP' HUP; trap 'echo got USR1' USR1; trap 'echo got QUIT' QUIT; trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done")
	var stdout syncBuffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, func() bool { return strings.Contains(stdout.String(), "ready\n") }, "the container to start")
	for _, s := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGHUP, "HUP"}, {syscall.SIGUSR1, "USR1"}, {syscall.SIGQUIT, "QUIT"}} {
		cmd.Process.Signal(s.sig)
		waitFor(t, func() bool { return strings.Contains(stdout.String(), "got "+s.name+"\n") }, "the container's trap of "+s.name)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || stdout.String() != "ready\ngot HUP\ngot USR1\ngot QUIT\ngot TERM\n" {
		t.Errorf("after HUP, USR1, QUIT and TERM: %v, stdout %q; want exit 3 and the traps' output", err, stdout.String())
	}
}

// TestRunTTY runs berth run -it on a pseudo-terminal, as a user at a
// terminal does: berth must put the terminal in raw mode while attached
// and restore it afterwards.
func TestRunTTY(t *testing.T) {
	root := containerSetup(t)
	master, slave := openTestPTY(t)
	// The container's terminal gets the size of ours, as docker's does
	// (read before the typing, which comes after berth set the size).
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 77}); err != nil {
		t.Fatal(err)
	}
	out := typeOnTerminal(t, master, slave, "tty", "--root", root, "run", "--rm", "-it", "busybox", "sh", "-c", "test -t 0 && echo tty; read x; stty size; echo got:$x; exit 4")
	if !strings.Contains(out, "got:abc\r\n") {
		t.Errorf("terminal output %q, want the container to have read abc", out)
	}
	if !strings.Contains(out, "33 77\r\n") {
		t.Errorf("terminal output %q, want stty size to say 33 77", out)
	}
}

// typeOnTerminal runs the berth binary with args on the pseudo-terminal
// slave, as a user at a terminal does: once the output shows ready and
// berth has put the terminal in raw mode, it types "abc" and Enter. The
// command must exit 4 and leave the terminal settings as they were. It
// returns what the terminal showed.
func typeOnTerminal(t *testing.T, master, slave *os.File, ready string, args ...string) string {
	t.Helper()
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(berthBin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	var out syncBuffer
	copied := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				close(copied)
				return
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, func() bool { return strings.Contains(out.String(), ready) }, "the process to start on the terminal")
	waitFor(t, func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) == 0
	}, "berth to put the terminal in raw mode")
	if _, err := master.Write([]byte("abc\r")); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("berth %v: %v, want exit 4", args, err)
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Errorf("terminal settings after berth %v = %+v, want them restored to %+v", args, after, before)
	}
	slave.Close()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	return out.String()
}

// openTestPTY opens a pseudo-terminal pair and closes it when the test
// ends.
func openTestPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStartRestart: start of a stopped detached container leaves it
// running in the background with its filesystem kept; restart gives it
// a new process; start of a foreground container follows it (as -a) and
// exits with its code; start -a of several names is refused as docker
// refuses it.
func TestStartRestart(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	// Each run logs its count of runs once it has written its line.
	runDetached(t, root, "--name", "bg", "busybox", "sh", "-c", "echo x >> /runs; wc -l < /runs; exec sleep 300")
	logged := func(want string) func() bool {
		return func() bool { return mustBerth(t, root, "logs", "bg") == want }
	}
	waitFor(t, logged("1\n"), "the first run's line")
	mustBerth(t, root, "stop", "-t", "0", "bg")
	if got := mustBerth(t, root, "start", "bg"); got != "bg\n" {
		t.Errorf("start bg printed %q", got)
	}
	waitFor(t, logged("1\n2\n"), "the second run's line after the first's, kept in /runs")
	pid := strings.TrimSpace(mustBerth(t, root, "inspect", "-f", "{{.State.Pid}}", "bg"))
	if got := mustBerth(t, root, "restart", "-t", "0", "bg"); got != "bg\n" {
		t.Errorf("restart bg printed %q", got)
	}
	if got := strings.TrimSpace(mustBerth(t, root, "inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "bg")); got == "running "+pid || !strings.HasPrefix(got, "running ") {
		t.Errorf("after restart: %q, want running with a pid other than %s", got, pid)
	}

	res := runBerth(t, root, nil, "run", "--name", "fg", "busybox", "sh", "-c", "echo x >> /runs; n=$(wc -l < /runs); echo run $n; exit $n")
	if res.code != 1 || res.stdout != "run 1\n" {
		t.Fatalf("run fg: exit %d, stdout %q", res.code, res.stdout)
	}
	res = runBerth(t, root, nil, "start", "fg")
	if res.code != 2 || res.stdout != "run 2\n" {
		t.Errorf("start fg: exit %d, stdout %q, stderr %q; want its second run followed, exit 2", res.code, res.stdout, res.stderr)
	}
	res = runBerth(t, root, nil, "restart", "fg")
	if res.code != 3 || res.stdout != "run 3\n" {
		t.Errorf("restart fg: exit %d, stdout %q, stderr %q; want its third run followed, exit 3", res.code, res.stdout, res.stderr)
	}
	if got := mustBerth(t, root, "logs", "fg"); got != "run 1\nrun 2\nrun 3\n" {
		t.Errorf("logs fg = %q", got)
	}
	res = runBerth(t, root, nil, "start", "-a", "fg", "bg")
	if res.code != 1 || res.stderr != "you cannot start and attach multiple containers at once\n" {
		t.Errorf("start -a fg bg: exit %d, stderr %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "start", "nosuch"); res.code != 1 || res.stderr != "Error: No such container: nosuch\n" {
		t.Errorf("start nosuch: exit %d, stderr %q", res.code, res.stderr)
	}
	mustBerth(t, root, "rm", "fg")
}

// TestCreateCommand: create makes a container that ps -a lists as
// Created, that cp writes into, and that start -a runs and follows.
func TestCreateCommand(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	id := strings.TrimSpace(mustBerth(t, root, "create", "--name", "made", "busybox", "sh", "-c", "cat /greeting; exit 5"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("create printed %q, want a container ID", id)
	}
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", id) })
	if row := psRowOf(psRows(t, root, "-a"), "made"); row == nil || row[4] != "Created" {
		t.Errorf("ps -a row of made = %q, want status Created", row)
	}
	if psRowOf(psRows(t, root), "made") != nil {
		t.Error("ps without -a lists the created container")
	}
	src := filepath.Join(t.TempDir(), "greeting")
	if err := os.WriteFile(src, []byte("hello from cp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustBerth(t, root, "cp", src, "made:/greeting")
	res := runBerth(t, root, nil, "start", "-a", "made")
	if res.code != 5 || res.stdout != "hello from cp\n" {
		t.Errorf("start -a made: exit %d, stdout %q, stderr %q; want the copied file and exit 5", res.code, res.stdout, res.stderr)
	}
	if res := runBerth(t, root, nil, "create", "-d", "busybox"); res.code != 125 {
		t.Errorf("create -d: exit %d, want 125 (no such flag)", res.code)
	}
}

// TestPsFilter: ps --filter as docker's: one key's values OR'd, keys
// AND'ed, a status filter looking at every container, before and since
// by creation, publish by the host's port and expose by the container's
// (docker 20.10's, checked there), docker's errors.
func TestPsFilter(t *testing.T) {
	root, tarball := setup(t)
	mustBerth(t, root, "import", tarball, "busybox")
	runDetached(t, root, "--name", "web", "-l", "tier=front", "busybox", "sleep", "300")
	made := strings.TrimSpace(mustBerth(t, root, "create", "--name", "made", "busybox", "true"))
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", made) })
	if res := runBerth(t, root, nil, "run", "--name", "done", "busybox", "sh", "-c", "exit 3"); res.code != 3 {
		t.Fatalf("run done: exit %d", res.code)
	}
	t.Cleanup(func() { runBerth(t, root, nil, "rm", "-f", "done") })
	runDetached(t, root, "--name", "pub", "-p", "127.0.0.1::80", "busybox", "sleep", "300")
	_, hostPort, _ := strings.Cut(strings.TrimSpace(mustBerth(t, root, "port", "pub", "80")), ":")
	mustBerth(t, root, "commit", "--change", "EXPOSE 9000", "pub", "exposing:1")
	runDetached(t, root, "--name", "ex", "exposing:1", "sleep", "300")
	runDetached(t, root, "--name", "more", "--expose", "7000-7001/udp", "busybox", "sleep", "300")
	if got := mustBerth(t, root, "inspect", "-f", "{{json .Config.ExposedPorts}}", "ex", "more"); got != `{"9000/tcp":{}}`+"\n"+`{"7000/udp":{},"7001/udp":{}}`+"\n" {
		t.Errorf("inspect Config.ExposedPorts = %q", got)
	}
	names := func(args ...string) string {
		t.Helper()
		out := mustBerth(t, root, append(append([]string{"ps"}, args...), "--format", "{{.Names}}")...)
		lines := strings.Fields(out)
		slices.Sort(lines)
		return strings.Join(lines, " ")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--filter", "name=web"}, "web"},
		{[]string{"-a", "--filter", "name=^/?(web|made)$"}, "made web"},
		{[]string{"--filter", "status=exited"}, "done"}, // no -a: status looks at all
		{[]string{"--filter", "exited=3"}, ""},          // exited does not
		{[]string{"-a", "--filter", "exited=3"}, "done"},
		{[]string{"-a", "--filter", "status=created"}, "made"},
		{[]string{"-a", "--filter", "label=tier=front"}, "web"},
		{[]string{"-a", "--filter", "label=tier"}, "web"},
		{[]string{"-a", "--filter", "label=tier=back"}, ""},
		{[]string{"-a", "--filter", "name=web", "--filter", "name=made"}, "made web"},
		{[]string{"-a", "--filter", "name=web", "--filter", "status=exited"}, ""},
		{[]string{"-a", "--filter", "ancestor=busybox"}, "done made more pub web"},
		{[]string{"-a", "-f", "id=" + made[:12]}, "made"},
		{[]string{"-a", "--filter", "before=pub"}, "done made web"},
		{[]string{"--filter", "since=made"}, "ex more pub"}, // without -a: the running ones
		{[]string{"-a", "--filter", "since=made"}, "done ex more pub"},
		{[]string{"--filter", "publish=" + hostPort}, "pub"}, // the host's port, as docker 20.10 matches it
		{[]string{"--filter", "publish=" + hostPort + "/udp"}, ""},
		{[]string{"--filter", "publish=80"}, ""},
		{[]string{"--filter", "expose=80"}, "pub"},           // a published port is exposed
		{[]string{"--filter", "expose=8999-9001/tcp"}, "ex"}, // the image's EXPOSE
		{[]string{"--filter", "expose=7001/udp"}, "more"},    // --expose
		{[]string{"--filter", "expose=7001"}, ""},
	} {
		if got := names(c.args...); got != c.want {
			t.Errorf("ps %s: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--filter", "foo=bar"}, 1, "Error: Invalid filter 'foo'\n"},
		{[]string{"--filter", "status=xyz"}, 1, "Error: Invalid filter 'status=xyz'\n"},
		{[]string{"-f", "bogus"}, 125, "invalid argument \"bogus\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth ps --help'.\n"},
		{[]string{"--filter", "publish=8089:80"}, 1, "Error: filter for 'publish' should not contain ':': 8089:80\n"},
		{[]string{"--filter", "before=nosuch"}, 1, "Error: no such container nosuch\n"},
		{[]string{"--filter", "expose=x"}, 1, "Error: error while looking up for expose x: strconv.ParseUint: parsing \"x\": invalid syntax\n"},
	} {
		if res := runBerth(t, root, nil, append([]string{"ps"}, c.args...)...); res.code != c.code || res.stderr != c.stderr {
			t.Errorf("ps %s: exit %d, stderr %q; want %d, %q", strings.Join(c.args, " "), res.code, res.stderr, c.code, c.stderr)
		}
	}
}

// TestRunRestartPolicy: run --restart takes docker's policies and refuses
// what docker refuses (and a foreground container, which ends with the
// command); ps shows a container waiting out its back-off as Restarting,
// and inspect shows the policy and the restarts.
func TestRunRestartPolicy(t *testing.T) {
	root := containerSetup(t)
	for _, c := range []struct{ policy, extra, want string }{
		{"sometimes", "-d", "invalid restart policy 'sometimes'"},
		{"on-failure:x", "-d", "invalid restart policy format: maximum retry count must be an integer"},
		{"always:3", "-d", "maximum retry count cannot be used with restart policy 'always'"},
		{"always", "--rm", "conflicting options: cannot specify both --restart and --rm"},
		{"unless-stopped", "-i", "--restart needs -d"},
		{"no:2", "-i", "maximum retry count cannot be used with restart policy 'no'"},
	} {
		res := runBerth(t, root, nil, "run", "--restart", c.policy, c.extra, "busybox", "true")
		if res.code != 125 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("run --restart %s %s: exit %d, stderr %q; want 125 saying %q", c.policy, c.extra, res.code, res.stderr, c.want)
		}
	}
	if rows := psRows(t, root, "-a"); len(rows) != 1 {
		t.Errorf("refused runs left containers: %q", rows)
	}

	runDetached(t, root, "--name", "flaky", "--restart", "on-failure:1", "busybox", "sh", "-c", "echo run; exit 2")
	waitFor(t, func() bool { return mustBerth(t, root, "logs", "flaky") == "run\nrun\n" }, "flaky's restart")
	waitFor(t, func() bool {
		return strings.HasPrefix(mustBerth(t, root, "inspect", "-f", "{{.State.Status}}", "flaky"), "exited")
	}, "flaky to stay exited")
	got := mustBerth(t, root, "inspect", "-f", "{{.RestartCount}} {{.State.ExitCode}} {{json .HostConfig.RestartPolicy}}", "flaky")
	if got != `1 2 {"Name":"on-failure","MaximumRetryCount":1}`+"\n" {
		t.Errorf("inspect flaky = %q", got)
	}

	runDetached(t, root, "--name", "crashing", "--restart", "always", "busybox", "false")
	waitFor(t, func() bool {
		row := psRowOf(psRows(t, root), "crashing") // listed without -a, as docker lists it
		return row != nil && strings.HasPrefix(row[4], "Restarting (1) ")
	}, "ps to show crashing as Restarting (1) …")
	// Running too, as docker's inspect says of a restarting container.
	waitFor(t, func() bool {
		return mustBerth(t, root, "inspect", "-f", "{{.State.Status}} {{.State.Restarting}} {{.State.Running}}", "crashing") == "restarting true true\n"
	}, "inspect to show crashing restarting")
	mustBerth(t, root, "stop", "crashing")
	if got := mustBerth(t, root, "inspect", "-f", "{{.State.Status}} {{.State.Restarting}}", "crashing"); got != "exited false\n" {
		t.Errorf("after stop: %q, want exited", got)
	}
}

// TestRunHealthcheck: the --health-* flags give a container its check,
// which runs in the background as docker's daemon runs it; ps shows and
// filters on its health, inspect prints State.Health and the check; bad
// flags are refused as docker's client refuses them.
func TestRunHealthcheck(t *testing.T) {
	root := containerSetup(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-healthcheck", "--health-cmd", "true"}, "--no-healthcheck conflicts with --health-* options"},
		{[]string{"--health-interval", "-1s"}, "--health-interval cannot be negative"},
		{[]string{"--health-retries", "-2"}, "--health-retries cannot be negative"},
		{[]string{"--health-timeout", "soon"}, `invalid argument "soon" for "--health-timeout" flag`},
		{[]string{"--health-cmd", "true", "--health-interval", "1us"}, "health check interval 1µs is less than 1ms"},
	} {
		res := runBerth(t, root, nil, append(append([]string{"run", "-d"}, c.args...), "busybox", "true")...)
		if res.code != 125 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("run %q: exit %d, stderr %q; want 125 saying %q", c.args, res.code, res.stderr, c.want)
		}
	}
	if res := runBerth(t, root, nil, "ps", "--filter", "health=fine"); res.code == 0 || !strings.Contains(res.stderr, "Unrecognised filter value for health: fine") {
		t.Errorf("ps --filter health=fine: exit %d, stderr %q", res.code, res.stderr)
	}

	runDetached(t, root, "--name", "svc", "--health-cmd", "test -f /ready", "--health-interval", "100ms", "--health-retries", "2",
		"--health-start-period", "1m", "busybox", "sleep", "300")
	if row := psRowOf(psRows(t, root), "svc"); row == nil || !strings.HasSuffix(row[4], " (health: starting)") {
		t.Errorf("ps row of svc at the start = %q, want Up … (health: starting)", row)
	}
	runDetached(t, root, "--name", "plain", "busybox", "sleep", "300")
	mustBerth(t, root, "exec", "svc", "touch", "/ready")
	waitFor(t, func() bool {
		row := psRowOf(psRows(t, root), "svc")
		return row != nil && strings.HasSuffix(row[4], " (healthy)")
	}, "ps to show svc healthy")
	if got := mustBerth(t, root, "ps", "--filter", "health=healthy", "--format", "{{.Names}}"); got != "svc\n" {
		t.Errorf("ps --filter health=healthy = %q, want svc", got)
	}
	if got := mustBerth(t, root, "ps", "--filter", "health=none", "--format", "{{.Names}}"); got != "plain\n" {
		t.Errorf("ps --filter health=none = %q, want plain", got)
	}
	got := mustBerth(t, root, "inspect", "-f", "{{.State.Health.Status}} {{.State.Health.FailingStreak}} {{json .Config.Healthcheck}}", "svc")
	if want := `healthy 0 {"Test":["CMD-SHELL","test -f /ready"],"Interval":100000000,"StartPeriod":60000000000,"Retries":2}` + "\n"; got != want {
		t.Errorf("inspect svc = %q, want %q", got, want)
	}
	mustBerth(t, root, "exec", "svc", "rm", "/ready")
	waitFor(t, func() bool {
		return mustBerth(t, root, "inspect", "-f", "{{.State.Health.Status}}", "svc") == "unhealthy\n"
	}, "svc to turn unhealthy")
	if got := mustBerth(t, root, "inspect", "-f", "{{range .State.Health.Log}}{{.ExitCode}} {{end}}", "svc"); !strings.HasSuffix(got, "1 1 \n") {
		t.Errorf("the checks' exit codes = %q, want the last two failed", got)
	}
}

// TestRunShmSize: --shm-size sizes /dev/shm as docker's does, inspect
// shows it (docker's 64 MiB when unset), and a bad size is refused.
func TestRunShmSize(t *testing.T) {
	root := containerSetup(t)
	res := runBerth(t, root, nil, "run", "--rm", "--shm-size", "100m", "busybox", "grep", " /dev/shm ", "/proc/mounts")
	if res.code != 0 || !strings.Contains(res.stdout, "size=102400k") {
		t.Errorf("run --shm-size 100m: exit %d, %q %q; want size=102400k", res.code, res.stdout, res.stderr)
	}
	runDetached(t, root, "--name", "big", "--shm-size", "1g", "busybox", "sleep", "300")
	runDetached(t, root, "--name", "plain", "busybox", "sleep", "300")
	if got := mustBerth(t, root, "inspect", "-f", "{{.HostConfig.ShmSize}}", "big", "plain"); got != "1073741824\n67108864\n" {
		t.Errorf("inspect ShmSize = %q", got)
	}
	if res := runBerth(t, root, nil, "run", "--shm-size", "lots", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, `invalid argument "lots" for "--shm-size" flag: invalid size: 'lots'`) {
		t.Errorf("run --shm-size lots: exit %d, stderr %q", res.code, res.stderr)
	}
}

// TestRunPrivileged: --privileged gives every capability, no seccomp
// filter and a read-write /sys, and inspect shows it in HostConfig with
// the capability flags as given (ignored, as docker ignores them).
func TestRunPrivileged(t *testing.T) {
	root := containerSetup(t)
	res := runBerth(t, root, nil, "run", "--rm", "--privileged", "--cap-drop", "ALL", "busybox", "sh", "-c",
		"grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; grep -c '^CapEff:.0000000000000000' /proc/self/status; true")
	if want := "NoNewPrivs:\t0\nSeccomp:\t0\nrw\n0\n"; res.code != 0 || res.stdout != want {
		t.Errorf("run --privileged: exit %d, stdout %q, want %q (stderr %q)", res.code, res.stdout, want, res.stderr)
	}
	runDetached(t, root, "--name", "priv", "--privileged", "--cap-add", "NET_ADMIN", "busybox", "sleep", "300")
	runDetached(t, root, "--name", "plain", "busybox", "sleep", "300")
	got := mustBerth(t, root, "inspect", "-f", "{{.HostConfig.Privileged}} {{json .HostConfig.CapAdd}}", "priv", "plain")
	if want := "true [\"NET_ADMIN\"]\nfalse null\n"; got != want {
		t.Errorf("inspect Privileged and CapAdd = %q, want %q", got, want)
	}
	if got := mustBerth(t, root, "exec", "priv", "grep", "^Seccomp:", "/proc/self/status"); got != "Seccomp:\t0\n" {
		t.Errorf("exec in the privileged container: %q, want no seccomp filter", got)
	}
}

// TestRunSysctl: --sysctl sets a parameter of the container's namespaces,
// inspect shows it in HostConfig, and docker's refusals hold: a parameter
// of the host's, and a flag without a value.
func TestRunSysctl(t *testing.T) {
	root := containerSetup(t)
	res := runBerth(t, root, nil, "run", "--rm", "--sysctl", "net.core.somaxconn=1234", "busybox", "cat", "/proc/sys/net/core/somaxconn")
	if res.code != 0 || res.stdout != "1234\n" {
		t.Errorf("run --sysctl net.core.somaxconn=1234: exit %d, %q %q", res.code, res.stdout, res.stderr)
	}
	runDetached(t, root, "--name", "tuned", "--sysctl", "kernel.shmmni=1000", "busybox", "sleep", "300")
	if got := mustBerth(t, root, "inspect", "-f", "{{json .HostConfig.Sysctls}}", "tuned"); got != `{"kernel.shmmni":"1000"}`+"\n" {
		t.Errorf("inspect Sysctls = %q", got)
	}
	for _, tc := range []struct{ arg, want string }{
		{"kernel.hostname=x", `sysctl "kernel.hostname" is not allowed`},
		{"net.core.somaxconn", `invalid argument "net.core.somaxconn" for "--sysctl" flag`},
	} {
		if res := runBerth(t, root, nil, "run", "--rm", "--sysctl", tc.arg, "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("run --sysctl %s: exit %d, stderr %q; want 125 and %q", tc.arg, res.code, res.stderr, tc.want)
		}
	}
}

// TestRunDevice: --device makes the host's node in the container, and
// inspect shows HostConfig.Devices and DeviceCgroupRules as docker does
// (an empty list and null without them); a bad one exits 125.
func TestRunDevice(t *testing.T) {
	root := containerSetup(t)
	node := filepath.Join(t.TempDir(), "null")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	res := runBerth(t, root, nil, "run", "--rm", "--device", node+":/dev/mine:rw", "busybox", "stat", "-c", "%t:%T %a", "/dev/mine")
	if res.code != 0 || res.stdout != "1:3 600\n" {
		t.Errorf("run --device %s:/dev/mine:rw: exit %d, %q %q", node, res.code, res.stdout, res.stderr)
	}
	runDetached(t, root, "--name", "dev", "--device", node+":/dev/mine", "--device-cgroup-rule", "c 10:229 rw", "busybox", "sleep", "300")
	runDetached(t, root, "--name", "plain", "busybox", "sleep", "300")
	got := mustBerth(t, root, "inspect", "-f", "{{json .HostConfig.Devices}} {{json .HostConfig.DeviceCgroupRules}}", "dev", "plain")
	want := `[{"PathOnHost":"` + node + `","PathInContainer":"/dev/mine","CgroupPermissions":"rwm"}] ["c 10:229 rw"]` + "\n[] null\n"
	if got != want {
		t.Errorf("inspect HostConfig.Devices and DeviceCgroupRules:\n%s\nwant:\n%s", got, want)
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--device", node+":/etc/mine", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "/etc/mine is not under /dev") {
		t.Errorf("run --device to /etc: exit %d, stderr %q; want 125 saying it is not under /dev", res.code, res.stderr)
	}
}

// TestRunNamespaceModes: --pid, --ipc and --uts share the host's
// namespaces (or another container's pid or IPC namespace: --ipc
// container:NAME of a shareable container, with its /dev/shm), inspect
// shows them as docker does (IpcMode "private" by default), and joining a
// private container's IPC exits 125.
func TestRunNamespaceModes(t *testing.T) {
	root := containerSetup(t)
	host, _ := os.Hostname()
	res := runBerth(t, root, nil, "run", "--rm", "--pid", "host", "--uts", "host", "--ipc", "none", "busybox", "sh", "-c",
		"[ $$ != 1 ] && echo not-pid-1; hostname; [ -e /dev/shm ] || echo no-shm")
	if want := "not-pid-1\n" + host + "\nno-shm\n"; res.code != 0 || res.stdout != want {
		t.Errorf("run --pid host --uts host --ipc none: exit %d, %q (stderr %q); want %q", res.code, res.stdout, res.stderr, want)
	}
	runDetached(t, root, "--name", "shared", "busybox", "sleep", "300")
	runDetached(t, root, "--name", "joiner", "--pid", "container:shared", "--ipc", "host", "busybox", "sleep", "300")
	id := strings.TrimSpace(mustBerth(t, root, "inspect", "-f", "{{.Id}}", "shared"))
	got := mustBerth(t, root, "inspect", "-f", "{{.HostConfig.PidMode}} {{.HostConfig.IpcMode}} {{.HostConfig.UTSMode}}|", "joiner", "shared")
	if want := "container:" + id + " host |\n private |\n"; got != want {
		t.Errorf("inspect PidMode, IpcMode, UTSMode = %q, want %q", got, want)
	}
	runDetached(t, root, "--name", "donor", "--ipc", "shareable", "busybox", "sh", "-c", "echo shared > /dev/shm/f; exec sleep 300")
	if got := mustBerth(t, root, "inspect", "-f", "{{.HostConfig.IpcMode}}", "donor"); got != "shareable\n" {
		t.Errorf("inspect IpcMode of a shareable container: %q", got)
	}
	script := "for i in $(seq 3000); do [ -e /dev/shm/f ] && break; sleep 0.01; done; cat /dev/shm/f"
	if res := runBerth(t, root, nil, "run", "--rm", "--ipc", "container:donor", "busybox", "sh", "-c", script); res.code != 0 || res.stdout != "shared\n" {
		t.Errorf("run --ipc container:donor: exit %d, %q (stderr %q); want the donor's /dev/shm file", res.code, res.stdout, res.stderr)
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--ipc", "container:shared", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "non-shareable") {
		t.Errorf("run --ipc container:shared (private): exit %d, stderr %q; want 125", res.code, res.stderr)
	}
}

// TestRunLogOpts: --log-opt max-size (docker's decimal units) and
// max-file rotate the log (logs shows the newest lines), inspect shows
// them in HostConfig.LogConfig; max-file alone rotates nothing, as in
// docker; --log-driver none keeps no log; another driver or a bad option
// exits 125.
func TestRunLogOpts(t *testing.T) {
	root := containerSetup(t)
	// 1000 records of ~45 bytes: ~45 kB, eleven times the two files kept.
	mustBerth(t, root, "run", "--name", "chatty", "--log-driver", "json-file", "--log-opt", "max-size=4k", "--log-opt", "max-file=2",
		"busybox", "sh", "-c", "for i in $(seq 1 1000); do echo line $i; done")
	out := mustBerth(t, root, "logs", "--tail", "2", "chatty")
	if out != "line 999\nline 1000\n" {
		t.Errorf("logs --tail 2 of a rotated log: %q", out)
	}
	first := 0
	all := mustBerth(t, root, "logs", "chatty")
	if fmt.Sscanf(all, "line %d", &first); first < 800 || !strings.HasSuffix(all, "line 1000\n") {
		t.Errorf("logs of a log kept to 2 files of 4k: %d bytes from line %d; want the last ~180 lines", len(all), first)
	}
	mustBerth(t, root, "run", "--name", "files-only", "--log-opt", "max-file=3", "busybox", "true")
	mustBerth(t, root, "run", "--name", "silent", "--log-driver", "none", "busybox", "echo", "hi")
	got := mustBerth(t, root, "inspect", "-f", "{{json .HostConfig.LogConfig}}", "chatty", "files-only", "silent")
	want := `{"Type":"json-file","Config":{"max-file":"2","max-size":"4000"}}` + "\n" + `{"Type":"json-file","Config":{}}` + "\n" + `{"Type":"none","Config":{}}` + "\n"
	if got != want {
		t.Errorf("inspect LogConfig = %q, want %q", got, want)
	}
	if res := runBerth(t, root, nil, "logs", "silent"); res.code == 0 || !strings.Contains(res.stderr, "does not support reading") {
		t.Errorf("logs of a container run with --log-driver none: exit %d, %q", res.code, res.stderr)
	}
	for _, args := range [][]string{
		{"--log-driver", "syslog"},
		{"--log-opt", "compress=true"},
		{"--log-opt", "max-size=0"},
		{"--log-opt", "max-size=4k", "--log-opt", "max-file=0"},
		{"--log-driver", "none", "--log-opt", "max-size=4k"},
	} {
		args := append(append([]string{"run", "--rm"}, args...), "busybox", "true")
		if res := runBerth(t, root, nil, args...); res.code != 125 {
			t.Errorf("%v: exit %d, %q; want 125", args, res.code, res.stderr)
		}
	}
}

// TestRunCFSFlags: --cpu-period, --cpu-quota, --memory-reservation and
// --cpuset-mems for run and update, and --oom-score-adj for run, shown by
// inspect; --cpus with a period exits 125.
func TestRunCFSFlags(t *testing.T) {
	root := containerSetup(t)
	// --cpuset-mems needs a v1 cpuset hierarchy.
	mems, memsArgs := "", []string{}
	if self, _ := os.ReadFile("/proc/self/cgroup"); regexp.MustCompile(`(?m)^\d+:([^:]*,)?cpuset(,[^:]*)?:`).Match(self) {
		mems, memsArgs = "0", []string{"--cpuset-mems", "0"}
	}
	args := append([]string{"--name", "cfs", "-m", "64m", "--cpu-period", "50000", "--cpu-quota", "25000", "--memory-reservation", "32m", "--oom-score-adj", "300"}, memsArgs...)
	runDetached(t, root, append(args, "busybox", "sleep", "300")...)
	show := func() string {
		return mustBerth(t, root, "inspect", "-f", "{{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} {{.HostConfig.MemoryReservation}} {{.HostConfig.CpusetMems}} {{.HostConfig.OomScoreAdj}}", "cfs")
	}
	if got, want := show(), "50000 25000 33554432 "+mems+" 300\n"; got != want {
		t.Errorf("inspect after run = %q, want %q", got, want)
	}
	mustBerth(t, root, "update", "--memory-reservation", "48m", "--cpu-quota", "40000", "cfs")
	if got := show(); got != "50000 40000 50331648 "+mems+" 300\n" {
		t.Errorf("inspect after update = %q", got)
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--cpus", "1", "--cpu-period", "50000", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "Conflicting options") {
		t.Errorf("run --cpus --cpu-period: exit %d, %q", res.code, res.stderr)
	}
}

// TestRunInit: --init runs the command under berth's init as PID 1, the
// command's exit code passes through, and inspect shows HostConfig.Init
// (null without it, as docker prints it).
func TestRunInit(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("skipping: the init exists for amd64 only (GOARCH %s)", runtime.GOARCH)
	}
	root := containerSetup(t)
	res := runBerth(t, root, nil, "run", "--rm", "--init", "busybox", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; exit 3")
	if res.code != 3 || !strings.HasPrefix(res.stdout, "/dev/.berth-init /bin/sh sh -c ") {
		t.Errorf("run --init: exit %d, PID 1 %q (stderr %q); want 3 and the init", res.code, res.stdout, res.stderr)
	}
	runDetached(t, root, "--name", "inited", "--init", "busybox", "sleep", "300")
	runDetached(t, root, "--name", "plain", "busybox", "sleep", "300")
	if got := mustBerth(t, root, "inspect", "-f", "{{.HostConfig.Init}}", "inited", "plain"); got != "true\n<nil>\n" {
		t.Errorf("inspect HostConfig.Init = %q", got)
	}
}

// TestUpdateCommand: update changes the limits its flags give (short
// ones too), keeps the others, sets a restart policy, and fails as docker
// does without flags, for a bad value or a missing container.
func TestUpdateCommand(t *testing.T) {
	root := containerSetup(t)
	runDetached(t, root, "--name", "svc", "-m", "64m", "--cpus", "0.5", "-c", "256", "busybox", "sleep", "300")
	limits := func() string {
		return mustBerth(t, root, "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}", "svc")
	}
	if got := limits(); got != "67108864 500000000 256 <nil> no\n" {
		t.Errorf("inspect after run -m 64m --cpus 0.5 -c 256 = %q", got)
	}
	// A zero keeps the container's value, as docker update's does.
	if got := mustBerth(t, root, "update", "-m", "96m", "-c", "512", "--cpus", "0", "--pids-limit", "40", "--restart", "unless-stopped", "svc"); got != "svc\n" {
		t.Errorf("update printed %q", got)
	}
	if got := limits(); got != "100663296 500000000 512 40 unless-stopped\n" {
		t.Errorf("inspect after update = %q", got)
	}
	mustBerth(t, root, "update", "--pids-limit", "0", "svc") // lifts it, as docker's
	if self, _ := os.ReadFile("/proc/self/cgroup"); regexp.MustCompile(`(?m)^\d+:([^:]*,)?cpuset(,[^:]*)?:`).Match(self) {
		mustBerth(t, root, "update", "--cpuset-cpus", "0", "svc")
		if got := mustBerth(t, root, "inspect", "-f", "{{.HostConfig.CpusetCpus}}", "svc"); got != "0\n" {
			t.Errorf("inspect after update --cpuset-cpus 0 = %q", got)
		}
	}
	if got := limits(); got != "100663296 500000000 512 <nil> unless-stopped\n" {
		t.Errorf("inspect after update --pids-limit 0 = %q", got)
	}
	if res := runBerth(t, root, nil, "update", "--memory", "lots", "svc"); res.code != 125 || !strings.Contains(res.stderr, `invalid argument "lots" for "-m, --memory" flag`) {
		t.Errorf("update --memory lots: exit %d, stderr %q; want 125 as docker's client", res.code, res.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"update", "svc"}, "You must provide one or more flags when using this command."},
		{[]string{"update", "-m", "1m", "svc"}, "the minimum is 6 MiB"},
		{[]string{"update", "-m", "64m", "nosuch"}, "No such container: nosuch"},
	} {
		if res := runBerth(t, root, nil, c.args...); res.code != 1 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("berth %s: exit %d, stderr %q; want 1 saying %q", strings.Join(c.args, " "), res.code, res.stderr, c.want)
		}
	}
	if got := mustBerth(t, root, "inspect", "-f", "{{.HostConfig.Memory}}", "svc"); got != "100663296\n" {
		t.Errorf("a refused update changed the memory limit: %q", got)
	}
}

// TestRenameCommand: rename (and container rename) changes a detached
// container's name for later commands, from another process than the one
// that started it; a missing container or a taken name exits 1.
func TestRenameCommand(t *testing.T) {
	root := containerSetup(t)
	runDetached(t, root, "--name", "first", "busybox", "sleep", "300")
	runDetached(t, root, "--name", "other", "busybox", "sleep", "300")
	mustBerth(t, root, "rename", "first", "second")
	mustBerth(t, root, "container", "rename", "second", "third")
	if got := mustBerth(t, root, "inspect", "-f", "{{.Name}}", "third"); got != "/third\n" {
		t.Errorf("inspect of the renamed container: %q", got)
	}
	if got := mustBerth(t, root, "ps", "--format", "{{.Names}}"); got != "other\nthird\n" && got != "third\nother\n" {
		t.Errorf("ps after the renames: %q", got)
	}
	if res := runBerth(t, root, nil, "rename", "first", "x"); res.code != 1 || !strings.Contains(res.stderr, "No such container: first") {
		t.Errorf("rename of the old name: exit %d, %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "rename", "third", "other"); res.code != 1 || !strings.Contains(res.stderr, "already in use") {
		t.Errorf("rename to a taken name: exit %d, %q", res.code, res.stderr)
	}
	mustBerth(t, root, "stop", "-t", "0", "third")
	if got := mustBerth(t, root, "ps", "-a", "--filter", "name=third", "--format", "{{.Names}} {{.Status}}"); !strings.HasPrefix(got, "third Exited") {
		t.Errorf("the renamed container after its stop: %q", got)
	}
}

// TestRunCIDFileAndLabelFile: --cidfile gets the container's ID (from run,
// run -d and create), a second run with the same file exits 125 before
// making a container, and a failed run leaves no file; --label-file's
// labels come before --label's, which win.
func TestRunCIDFileAndLabelFile(t *testing.T) {
	root := containerSetup(t)
	dir := t.TempDir()
	cid := filepath.Join(dir, "cid")
	mustBerth(t, root, "run", "--cidfile", cid, "--name", "attached", "busybox", "true")
	b, err := os.ReadFile(cid)
	if id := strings.TrimSpace(mustBerth(t, root, "inspect", "-f", "{{.Id}}", "attached")); err != nil || string(b) != id {
		t.Errorf("--cidfile of an attached run: %q, %v; want %s", b, err, id)
	}
	if res := runBerth(t, root, nil, "run", "--cidfile", cid, "--name", "second", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "container ID file found") {
		t.Errorf("run with an existing --cidfile: exit %d, %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "inspect", "second"); res.code != 1 {
		t.Errorf("the refused run made a container: %q", res.stdout)
	}
	created := filepath.Join(dir, "created")
	id := strings.TrimSpace(mustBerth(t, root, "create", "--cidfile", created, "busybox", "true"))
	if b, err := os.ReadFile(created); err != nil || string(b) != id {
		t.Errorf("--cidfile of create: %q, %v; want %s", b, err, id)
	}
	failed := filepath.Join(dir, "failed")
	if res := runBerth(t, root, nil, "run", "-d", "--cidfile", failed, "--name", "attached", "busybox", "true"); res.code != 125 {
		t.Errorf("run -d with a taken name: exit %d", res.code)
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Errorf("the --cidfile of a failed run: %v; want none", err)
	}

	labels := filepath.Join(dir, "labels")
	if err := os.WriteFile(labels, []byte("# comment\ntier=web\nempty\n\nowner=file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustBerth(t, root, "create", "--name", "labelled", "--label-file", labels, "--label", "owner=flag", "busybox", "true")
	if got := mustBerth(t, root, "inspect", "-f", "{{json .Config.Labels}}", "labelled"); got != `{"empty":"","owner":"flag","tier":"web"}`+"\n" {
		t.Errorf("labels from --label-file and --label: %s", got)
	}
}

// TestLogsUntilFlag: logs --until leaves out later lines.
func TestLogsUntilFlag(t *testing.T) {
	root := containerSetup(t)
	mustBerth(t, root, "run", "--name", "talker", "busybox", "sh", "-c", "echo early; sleep 1; echo late")
	first := mustBerth(t, root, "logs", "-t", "talker")
	ts, _, _ := strings.Cut(first, " ")
	early, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatalf("logs -t: %q", first)
	}
	if got := mustBerth(t, root, "logs", "--until", early.Add(500*time.Millisecond).Format(time.RFC3339Nano), "talker"); got != "early\n" {
		t.Errorf("logs --until half a second after the first line: %q", got)
	}
}

// TestEventsCommand: events --since --until prints what happened in
// docker's form, filtered by container and event, and --format as docker's.
func TestEventsCommand(t *testing.T) {
	root := containerSetup(t)
	since := time.Now().Add(-time.Second).Format(time.RFC3339Nano)
	id := strings.TrimSpace(mustBerth(t, root, "run", "-d", "--name", "evweb", "--label", "tier=web", "busybox", "true"))
	mustBerth(t, root, "wait", "evweb")
	mustBerth(t, root, "rm", "evweb")
	until := time.Now().Format(time.RFC3339Nano)
	got := mustBerth(t, root, "events", "--since", since, "--until", until, "--filter", "container=evweb")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	want := []string{
		" container create " + id + " (image=busybox, name=evweb, tier=web)",
		" container start " + id + " (image=busybox, name=evweb, tier=web)",
		" container die " + id + " (exitCode=0, image=busybox, name=evweb, tier=web)",
		" container destroy " + id + " (name=evweb)",
	}
	if len(lines) != len(want) {
		t.Fatalf("events --filter container=evweb:\n%s", got)
	}
	for i, l := range lines {
		ts, rest, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || " "+rest != want[i] {
			t.Errorf("event line %q, want a time and %q", l, want[i])
		}
	}
	if got := mustBerth(t, root, "events", "--since", since, "--until", until, "--filter", "event=die", "--format", "{{.Type}} {{.Status}} {{.Actor.Attributes.exitCode}}"); got != "container die 0\n" {
		t.Errorf("events --filter event=die --format: %q", got)
	}
	if got := mustBerth(t, root, "events", "--since", since, "--until", until, "--filter", "label=tier=web", "--format", "{{.Action}}"); got != "create\nstart\ndie\n" {
		t.Errorf("events --filter label=tier=web: %q", got)
	}
	if got := mustBerth(t, root, "events", "--since", since, "--until", until, "--filter", "label=tier=db"); got != "" {
		t.Errorf("events --filter label=tier=db: %q", got)
	}
	if res := runBerth(t, root, nil, "events", "--filter", "bogus=1", "--until", until); res.code == 0 {
		t.Errorf("events with an unknown filter: exit 0")
	}
}
