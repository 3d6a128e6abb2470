package main

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/berthtest"
)

// listCase is one listing and what it prints: its lines, sorted, joined
// by spaces.
type listCase struct {
	args []string
	want string
}

// checkLists runs each case on root and compares its sorted lines.
func checkLists(t *testing.T, root string, cases []listCase) {
	t.Helper()
	for _, c := range cases {
		lines := strings.Fields(mustBerth(t, root, c.args...))
		slices.Sort(lines)
		if got := strings.Join(lines, " "); got != c.want {
			t.Errorf("berth %s: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
}

// listError is a listing that fails, with its exit code and stderr.
type listError struct {
	args   []string
	code   int
	stderr string
}

func checkListErrors(t *testing.T, root string, cases []listError) {
	t.Helper()
	for _, c := range cases {
		if res := runBerth(t, root, nil, c.args...); res.code != c.code || res.stderr != c.stderr || res.stdout != "" {
			t.Errorf("berth %s: exit %d, stdout %q, stderr %q; want %d, %q", strings.Join(c.args, " "), res.code, res.stdout, res.stderr, c.code, c.stderr)
		}
	}
}

// TestListImagesFilter: images --filter as docker 20.10's (checked
// there): dangling, reference (path patterns on the familiar reference or
// its repository, the references shown narrowed to the matching ones),
// label (every value), before and since by creation; one key's values
// OR'd, keys AND'ed; the REPOSITORY argument one more reference; the
// errors docker prints; --digests' column.
func TestListImagesFilter(t *testing.T) {
	root := containerSetup(t) // busybox:latest, imported
	mustBerth(t, root, "tag", "busybox", "busybox:other")
	mustBerth(t, root, "tag", "busybox", "example.com/team/app:v1")
	mustBerth(t, root, "create", "--name", "c", "busybox", "true")
	mustBerth(t, root, "commit", "--change", "LABEL tier=web", "--change", "LABEL env=prod", "c", "labeled:1")
	untagged := strings.TrimPrefix(strings.TrimSpace(mustBerth(t, root, "commit", "--change", "LABEL tier=db", "c")), "sha256:")[:12]
	busybox := strings.TrimSpace(mustBerth(t, root, "images", "-q", "busybox"))

	refs := []string{"images", "--format", "{{.Repository}}:{{.Tag}}"}
	with := func(args ...string) []string { return append(slices.Clone(refs), args...) }
	checkLists(t, root, []listCase{
		{[]string{"images", "-f", "dangling=true", "-q"}, untagged}, // the CI idiom
		{with("-f", "dangling=true"), "<none>:<none>"},
		{with("-f", "dangling=false"), "busybox:latest busybox:other example.com/team/app:v1 labeled:1"},
		{with("-f", "dangling=true", "-f", "dangling=false"), "<none>:<none>"}, // "true" wins, as in docker
		{with("-f", "reference=busybox"), "busybox:latest busybox:other"},
		{with("-f", "reference=busybox:oth*"), "busybox:other"}, // the other tags of the image are not shown
		{with("-f", "reference=*/team/*"), "example.com/team/app:v1"},
		{with("-f", "reference=*"), "busybox:latest busybox:other labeled:1"}, // * stops at "/"
		{with("-f", "reference=busybox:latest", "-f", "reference=lab*"), "busybox:latest labeled:1"},
		{with("labeled", "-f", "reference=busybox:other"), "busybox:other labeled:1"}, // the argument is one more reference
		{with("-f", "reference=nothing"), ""},
		{with("-f", "label=tier"), "<none>:<none> labeled:1"},
		{with("-f", "label=tier=web"), "labeled:1"},
		{with("-f", "label=tier=web", "-f", "label=env=prod"), "labeled:1"},
		{with("-f", "label=tier=web", "-f", "label=env=dev"), ""}, // labels must all match
		{with("-f", "label=tier", "-f", "dangling=false"), "labeled:1"},
		{with("-f", "before=labeled:1"), "busybox:latest busybox:other example.com/team/app:v1"},
		{with("-f", "since=labeled:1"), "<none>:<none>"},
		{with("-f", "since="+busybox), "<none>:<none> labeled:1"},
		{with("-f", "since=busybox", "-f", "reference=lab*"), "labeled:1"},
		{[]string{"images", "-q", "-f", "before=labeled:1"}, busybox},
		{[]string{"image", "ls", "-q", "--filter", "label=env=prod"}, strings.TrimSpace(mustBerth(t, root, "images", "-q", "labeled"))},
	})

	rows := imageLines(t, root, "--digests", "busybox:latest")
	if want := [][]string{{"REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"}, {"busybox", "latest", "<none>", busybox}}; len(rows) != 2 || !slices.Equal(rows[0], want[0]) || !slices.Equal(rows[1][:4], want[1]) {
		t.Errorf("images --digests busybox:latest = %q, want %q and the creation and size", rows, want)
	}
	// --digests adds the column to a table that lacks it, not to a plain template.
	if got := mustBerth(t, root, "images", "--digests", "--format", "table {{.Tag}}", "busybox:latest"); !regexp.MustCompile(`^TAG\s+DIGEST\nlatest\s+<none>\n$`).MatchString(got) {
		t.Errorf("images --digests --format 'table {{.Tag}}' = %q", got)
	}
	if got := mustBerth(t, root, "images", "--digests", "--format", "{{.Tag}}", "busybox:latest"); got != "latest\n" {
		t.Errorf("images --digests --format {{.Tag}} = %q", got)
	}

	checkListErrors(t, root, []listError{
		{[]string{"images", "-f", "x=1"}, 1, "Error: Invalid filter 'x'\n"},
		{[]string{"images", "-f", "bogus"}, 125, "invalid argument \"bogus\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth images --help'.\n"},
		{[]string{"image", "ls", "--filter", "bogus"}, 125, "invalid argument \"bogus\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth image ls --help'.\n"},
		{[]string{"images", "-f", "dangling=1"}, 1, "Error: Invalid filter 'dangling=[1]'\n"},
		{[]string{"images", "-f", "before=nothere"}, 1, "Error: No such image: nothere:latest\n"},
		{[]string{"images", "-f", "since=nothere:v2"}, 1, "Error: No such image: nothere:v2\n"},
		{[]string{"images", "-f", "reference=["}, 1, "Error: syntax error in pattern\n"},
	})
}

// TestListImagesDigests: a pulled image's digest in docker's DIGEST
// column, and in {{.Digest}}.
func TestListImagesDigests(t *testing.T) {
	root, tarball := setup(t)
	reg := berthtest.StartRegistry(t)
	ref := reg.Host + "/test/busybox:1.0"
	mustBerth(t, root, "import", tarball, ref)
	pushed := mustBerth(t, root, "push", ref)
	digest := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(pushed)
	mustBerth(t, root, "rmi", ref)
	mustBerth(t, root, "pull", "-q", ref)

	rows := imageLines(t, root, "--digests")
	if len(rows) != 2 || !slices.Equal(rows[1][:3], []string{reg.Host + "/test/busybox", "1.0", digest}) {
		t.Errorf("images --digests = %q, want the repository, 1.0 and %s", rows, digest)
	}
	if got := mustBerth(t, root, "images", "--format", "{{.Tag}} {{.Digest}}"); got != "1.0 "+digest+"\n" {
		t.Errorf("images --format '{{.Tag}} {{.Digest}}' = %q, want the digest", got)
	}
	if rows := imageLines(t, root); len(rows[0]) != 5 {
		t.Errorf("images without --digests has the columns %q", rows[0])
	}
}

// TestListVolumesFilter: volume ls --filter (dangling: no container,
// running or not, uses the volume; name a pattern; label every value;
// driver) and --format, as docker 20.10's.
func TestListVolumesFilter(t *testing.T) {
	root := containerSetup(t)
	mustBerth(t, root, "volume", "create", "--label", "k=v", "--label", "z=1", "named1")
	mustBerth(t, root, "volume", "create", "other")
	mustBerth(t, root, "create", "--name", "user", "-v", "other:/d", "busybox", "true") // never runs

	ls := []string{"volume", "ls", "-q"}
	with := func(args ...string) []string { return append(slices.Clone(ls), args...) }
	checkLists(t, root, []listCase{
		{with(), "named1 other"},
		{with("-f", "dangling=true"), "named1"},
		{with("-f", "dangling=1"), "named1"},
		{with("-f", "dangling=false"), "other"},
		{with("-f", "dangling=0"), "other"},
		{with("-f", "name=med"), "named1"},
		{with("-f", "name=^oth"), "other"},
		{with("-f", "name=^oth", "-f", "name=1$"), "named1 other"},
		{with("-f", "name=^ther"), ""},
		{with("-f", "label=k"), "named1"},
		{with("-f", "label=k=v", "-f", "label=z=1"), "named1"},
		{with("-f", "label=k=v", "-f", "label=z=2"), ""}, // labels must all match
		{with("-f", "label=k=w"), ""},
		{with("-f", "driver=local"), "named1 other"},
		{with("-f", "driver=nfs"), ""},
		{with("-f", "driver=local", "-f", "dangling=false"), "other"},
	})

	out := mustBerth(t, root, "volume", "ls", "-f", "name=named1", "--format", `{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}} {{.Label "z"}} {{.Mountpoint}}`)
	if !regexp.MustCompile(`^named1 local local k=v,z=1 1 /\S+/volumes/named1/_data\n$`).MatchString(out) {
		t.Errorf("volume ls --format: %q", out)
	}
	if out := mustBerth(t, root, "volume", "ls", "--format", "table {{.Name}}\t{{.Labels}}"); !regexp.MustCompile(`^VOLUME NAME\s+LABELS\nnamed1\s+k=v,z=1\nother\s*\n$`).MatchString(out) {
		t.Errorf("volume ls --format table: %q", out)
	}
	if out := mustBerth(t, root, "volume", "ls", "-f", "dangling=true"); out != "DRIVER    VOLUME NAME\nlocal     named1\n" {
		t.Errorf("volume ls -f dangling=true: %q", out)
	}

	checkListErrors(t, root, []listError{
		{[]string{"volume", "ls", "-f", "x=1"}, 1, "Error: Invalid filter 'x'\n"},
		{[]string{"volume", "ls", "-f", "dangling=maybe"}, 1, "Error: Invalid filter 'dangling=[maybe]'\n"},
		{[]string{"volume", "ls", "-f", "bogus"}, 125, "invalid argument \"bogus\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth volume ls --help'.\n"},
	})
}

// TestListNetworksFilter: network ls --filter as docker 20.10's: name and
// id patterns, label (every value), driver, scope, type (builtin: the
// default network), dangling (no container, running or not, joins it;
// never the default network); docker's errors.
func TestListNetworksFilter(t *testing.T) {
	root := containerSetup(t)
	front := strings.TrimSpace(mustBerth(t, root, "network", "create", "--label", "team=a", "--label", "tier=1", "front"))
	mustBerth(t, root, "network", "create", "back")
	mustBerth(t, root, "create", "--name", "user", "--network", "back", "busybox", "true") // never runs

	ls := []string{"network", "ls", "--format", "{{.Name}}"}
	with := func(args ...string) []string { return append(slices.Clone(ls), args...) }
	checkLists(t, root, []listCase{
		{with(), "back bridge front"},
		{with("-f", "dangling=true"), "front"},
		{with("-f", "dangling=1"), "front"},
		{with("-f", "dangling=false"), "back bridge"},
		{with("-f", "name=ron"), "front"},
		{with("-f", "name=^b"), "back bridge"},
		{with("-f", "name=^b", "-f", "name=t$"), "back bridge front"},
		{with("-f", "id="+front[20:40]), "front"}, // docker's id filter is a pattern, not a prefix
		{with("-f", "id=^"+front[:12]), "front"},
		{with("-f", "id=zz"), ""},
		{with("-f", "label=team"), "front"},
		{with("-f", "label=team=a", "-f", "label=tier=1"), "front"},
		{with("-f", "label=team=a", "-f", "label=tier=2"), ""}, // labels must all match
		{with("-f", "driver=bridge"), "back bridge front"},
		{with("-f", "driver=null"), ""},
		{with("-f", "scope=local"), "back bridge front"},
		{with("-f", "scope=swarm"), ""},
		{with("-f", "type=builtin"), "bridge"},
		{with("-f", "type=custom"), "back front"},
		{with("-f", "type=custom", "-f", "dangling=false"), "back"},
	})
	if got := mustBerth(t, root, "network", "ls", "-q", "--no-trunc", "-f", "dangling=true"); got != front+"\n" {
		t.Errorf("network ls -q --no-trunc -f dangling=true: %q, want %q", got, front+"\n")
	}

	checkListErrors(t, root, []listError{
		{[]string{"network", "ls", "-f", "x=1"}, 1, "Error: Invalid filter 'x'\n"},
		{[]string{"network", "ls", "-f", "type=foo"}, 1, "Error: invalid filter: 'type'='foo'\n"},
		{[]string{"network", "ls", "-f", "dangling=maybe"}, 1, "Error: invalid value for filter 'dangling', must be \"true\" (or \"1\"), or \"false\" (or \"0\")\n"},
		{[]string{"network", "ls", "-f", "dangling=true", "-f", "dangling=false"}, 1, "Error: got more than one value for filter key \"dangling\"\n"},
		{[]string{"network", "ls", "-f", "bogus"}, 125, "invalid argument \"bogus\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth network ls --help'.\n"},
	})
}

// TestListPsLastSize: ps -n, -l and -s as docker 20.10's: the newest
// containers that pass the filters whatever their state, and the SIZE
// column, "<writable> (virtual <writable + image>)"; several label
// filters must all match.
func TestListPsLastSize(t *testing.T) {
	root := containerSetup(t)
	mustBerth(t, root, "create", "--name", "first", "busybox", "true")
	mustBerth(t, root, "run", "--name", "wrote", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /f && mkdir /d && head -c 5000 /dev/zero > /d/g && ln /f /d/h")
	runDetached(t, root, "--name", "up", "busybox", "sleep", "300")
	mustBerth(t, root, "create", "--name", "last", "-l", "a=1", "-l", "b=2", "busybox", "true")

	ps := []string{"ps", "--format", "{{.Names}}"}
	with := func(args ...string) []string { return append(slices.Clone(ps), args...) }
	for _, c := range []listCase{
		{with(), "up"},
		{with("-n", "2"), "last up"},
		{with("--last", "3"), "last up wrote"},
		{with("-n", "1", "-f", "name=wrote"), "wrote"}, // the newest that pass the filter
		{with("-l"), "last"},
		{with("--latest", "-f", "name=^(first|wrote)$"), "wrote"},
		{with("-l", "-n", "3"), "last up wrote"}, // -n wins
		{with("-n", "0"), "up"},
		{with("-a", "-f", "label=a=1", "-f", "label=b=2"), "last"},
		{with("-a", "-f", "label=a=1", "-f", "label=b=3"), ""}, // labels must all match, as in docker
	} {
		// Newest first, as docker lists them.
		if got := strings.Join(strings.Fields(mustBerth(t, root, c.args...)), " "); got != c.want {
			t.Errorf("berth %s: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}

	image := strings.TrimSpace(mustBerth(t, root, "images", "--format", "{{.Size}}", "busybox"))
	sizes := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(mustBerth(t, root, "ps", "-a", "--format", "{{.Names}}={{.Size}}")), "\n") {
		name, size, _ := strings.Cut(l, "=")
		sizes[name] = size
	}
	// 105 kB of files, the hard link counted once, as docker counts it.
	if want := "0B (virtual " + image + ")"; sizes["first"] != want || sizes["up"] != want || sizes["last"] != want {
		t.Errorf("ps --format {{.Size}}: %q, want %q for the containers that wrote nothing", sizes, want)
	}
	if !regexp.MustCompile(`^105kB \(virtual [0-9.]+MB\)$`).MatchString(sizes["wrote"]) || sizes["wrote"] == "105kB (virtual "+image+")" {
		t.Errorf("ps --format {{.Size}} of the container that wrote 105000 bytes: %q (image %s)", sizes["wrote"], image)
	}
	rows := psRows(t, root, "-s", "-n", "3")
	if h := rows[0]; h[len(h)-1] != "SIZE" || h[len(h)-2] != "NAMES" || len(rows) != 4 {
		t.Fatalf("ps -s -n 3: %q, want a SIZE column after NAMES", rows)
	}
	if r := rows[3]; r[len(r)-2] != "wrote" || r[len(r)-1] != sizes["wrote"] {
		t.Errorf("ps -s row of wrote: %q, want its size %q", r, sizes["wrote"])
	}
	if out := mustBerth(t, root, "ps", "-s", "-q", "-l", "--no-trunc"); !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(out) {
		t.Errorf("ps -s -q -l: %q, want one ID", out)
	}
	if res := runBerth(t, root, nil, "container", "ls", "-f", "bogus"); res.code != 125 || !strings.HasSuffix(res.stderr, "See 'berth container ls --help'.\n") {
		t.Errorf("container ls -f bogus: exit %d, %q", res.code, res.stderr)
	}
}

// TestListFilterSets checks docker's filter rules shared by the listings
// and events: "table" alone is the default format (-q's IDs with -q), a
// repeated value is one value, and every label of events' filter must
// match.
func TestListFilterSets(t *testing.T) {
	root := containerSetup(t)
	id := strings.TrimSpace(mustBerth(t, root, "images", "-q"))
	if got := mustBerth(t, root, "images", "-q", "--format", "table"); strings.TrimSpace(got) != id {
		t.Errorf("images -q --format table: %q, want the ID %s", got, id)
	}
	if got := mustBerth(t, root, "images", "--format", "table"); !strings.HasPrefix(got, "REPOSITORY") {
		t.Errorf("images --format table: %q, want the default table", got)
	}
	mustBerth(t, root, "network", "create", "lone")
	if got := mustBerth(t, root, "network", "ls", "-q", "-f", "dangling=true", "-f", "dangling=true"); len(strings.Fields(got)) != 1 {
		t.Errorf("network ls -f dangling=true twice: %q, want the one unused network", got)
	}
	mustBerth(t, root, "run", "--rm", "--label", "a=1", "busybox", "true")
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	if got := mustBerth(t, root, "system", "events", "--since", "0", "--until", until, "-f", "type=container", "-f", "label=a=1", "-f", "label=b=2"); got != "" {
		t.Errorf("events with two labels, one of them absent: %q, want none", got)
	}
	if got := mustBerth(t, root, "events", "--since", "0", "--until", until, "-f", "type=container", "-f", "event=start", "-f", "label=a=1"); strings.Count(got, "container start") != 1 {
		t.Errorf("events with the container's label: %q, want its start", got)
	}
}
