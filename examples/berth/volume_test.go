package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
)

func TestParseVolumeFlag(t *testing.T) {
	host := filepath.Join(t.TempDir(), "made")
	for _, tc := range []struct {
		in   string
		want berth.Mount
		err  bool
	}{
		{in: "/data", want: berth.Mount{Type: berth.MountVolume, Target: "/data"}},
		{in: "db:/var/lib/db", want: berth.Mount{Type: berth.MountVolume, Source: "db", Target: "/var/lib/db"}},
		{in: "db:/d:ro,nocopy", want: berth.Mount{Type: berth.MountVolume, Source: "db", Target: "/d", ReadOnly: true, NoCopy: true}},
		{in: host + ":/h:ro,rslave", want: berth.Mount{Type: berth.MountBind, Source: host, Target: "/h", ReadOnly: true, Propagation: "rslave"}},
		{in: "relative", err: true},
		{in: "db:relative", err: true},
		{in: "db:/d:bogus", err: true},
		{in: "db:/d:rshared", err: true},
		{in: "a:b:c:d", err: true},
	} {
		got, err := parseVolumeFlag(tc.in)
		if (err != nil) != tc.err || err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseVolumeFlag(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
	if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
		t.Errorf("-v did not create the missing bind source, as docker does: %v", err)
	}
}

func TestParseMountFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want berth.Mount
		err  bool
	}{
		{in: "type=bind,source=/s,target=/t,readonly,bind-propagation=rshared", want: berth.Mount{Type: berth.MountBind, Source: "/s", Target: "/t", ReadOnly: true, Propagation: "rshared"}},
		{in: "src=v,dst=/t,volume-nocopy=true", want: berth.Mount{Type: berth.MountVolume, Source: "v", Target: "/t", NoCopy: true}},
		{in: "type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770", want: berth.Mount{Type: berth.MountTmpfs, Target: "/t", TmpfsSize: 64 << 20, TmpfsMode: 0o770 | os.ModeSticky}},
		{in: "type=bind,source=/s", err: true},
		{in: "type=bind,target=/t,what=1", err: true},
	} {
		got, err := parseMountFlag(tc.in)
		if (err != nil) != tc.err || err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseMountFlag(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseTmpfsFlag(t *testing.T) {
	got, err := parseTmpfsFlag("/run:rw,size=1m,mode=755")
	want := berth.Mount{Type: berth.MountTmpfs, Target: "/run", TmpfsSize: 1 << 20, TmpfsMode: 0o755}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseTmpfsFlag = %+v, %v; want %+v", got, err, want)
	}
	got, err = parseTmpfsFlag("/run:exec,uid=7,ro")
	want = berth.Mount{Type: berth.MountTmpfs, Target: "/run", ReadOnly: true, TmpfsOptions: []string{"exec", "uid=7"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseTmpfsFlag = %+v, %v; want %+v", got, err, want)
	}
	got, err = parseTmpfsFlag("/run:ro,rw") // the last word wins, as in docker
	want = berth.Mount{Type: berth.MountTmpfs, Target: "/run"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseTmpfsFlag = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"run", "/run:size=x", "/run:mode=9"} {
		if _, err := parseTmpfsFlag(bad); err == nil {
			t.Errorf("parseTmpfsFlag(%q) accepted", bad)
		}
	}
}

// TestVolumeCLI drives volume create/ls/inspect/rm/prune and run -v,
// --mount, --tmpfs and --volumes-from through the binary.
func TestVolumeCLI(t *testing.T) {
	root := containerSetup(t)
	if out := mustBerth(t, root, "volume", "create", "--label", "k=v", "db"); out != "db\n" {
		t.Errorf("volume create = %q", out)
	}
	mustBerth(t, root, "volume", "create", "db") // idempotent, as docker
	var inspected []map[string]any
	if err := json.Unmarshal([]byte(mustBerth(t, root, "volume", "inspect", "db")), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("volume inspect: %v %v", inspected, err)
	}
	if inspected[0]["Name"] != "db" || inspected[0]["Driver"] != "local" || inspected[0]["Labels"].(map[string]any)["k"] != "v" || inspected[0]["Scope"] != "local" {
		t.Errorf("volume inspect = %v", inspected[0])
	}
	mustBerth(t, root, "run", "--name", "writer", "-v", "db:/db", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c", "echo row > /db/t && touch /scratch/x")
	// docker's --tmpfs options after the size: exec lifts noexec.
	if out := mustBerth(t, root, "run", "--rm", "--tmpfs", "/x:size=4m,exec,uid=7", "busybox", "sh", "-c", "cp /bin/busybox /x/true && /x/true && stat -c %u /x"); out != "7\n" {
		t.Errorf("--tmpfs /x:size=4m,exec,uid=7: %q", out)
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--tmpfs", "/x:bogus", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, `unsupported option "bogus"`) {
		t.Errorf("--tmpfs /x:bogus: exit %d, %q", res.code, res.stderr)
	}
	// A single host file binds as a file (docker -v /etc/localtime:...:ro),
	// and docker's consistency words are accepted and ignored.
	hostFile := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(hostFile, []byte("key=value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustBerth(t, root, "run", "--rm", "-v", hostFile+":/etc/app.conf:ro", "-v", "db:/db:cached", "busybox", "cat", "/etc/app.conf", "/db/t"); out != "key=value\nrow\n" {
		t.Errorf("a file bound with -v and a :cached volume: %q", out)
	}
	if res := runBerth(t, root, nil, "volume", "rm", "db"); res.code != 1 || !strings.Contains(res.stderr, "in use") {
		t.Errorf("volume rm of a used volume: exit %d, %q", res.code, res.stderr)
	}
	if out := mustBerth(t, root, "run", "--rm", "--volumes-from", "writer:ro", "busybox", "sh", "-c", "cat /db/t; touch /db/u 2>/dev/null || echo ro"); out != "row\nro\n" {
		t.Errorf("--volumes-from writer:ro = %q", out)
	}
	mustBerth(t, root, "rm", "writer")
	if out := mustBerth(t, root, "run", "--rm", "--mount", "type=volume,source=db,target=/x,readonly", "busybox", "cat", "/x/t"); out != "row\n" {
		t.Errorf("--mount = %q", out)
	}
	if out := mustBerth(t, root, "volume", "ls", "-q"); out != "db\n" {
		t.Errorf("volume ls -q = %q", out)
	}
	if out := mustBerth(t, root, "volume", "rm", "db"); out != "db\n" {
		t.Errorf("volume rm = %q", out)
	}
	if res := runBerth(t, root, nil, "volume", "rm", "db"); res.code != 1 || !strings.Contains(res.stderr, "No such volume: db") {
		t.Errorf("volume rm of a missing volume: exit %d, %q", res.code, res.stderr)
	}
	mustBerth(t, root, "run", "-v", "/anon", "busybox", "true")
	if out := mustBerth(t, root, "volume", "prune", "-f"); !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("volume prune = %q", out)
	}
	if res := runBerth(t, root, nil, "volume", "bogus"); res.code != 1 {
		t.Errorf("volume bogus: exit %d", res.code)
	}
}
