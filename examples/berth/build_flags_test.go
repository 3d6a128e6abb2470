package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/berthtest"
)

// tarOf is a tar of files (name → content), in name order, with the
// directories their names need.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[name]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageLabels is the image's labels as inspect's {{json .Config.Labels}}
// prints them.
func imageLabels(t *testing.T, root, image string) string {
	t.Helper()
	return strings.TrimSpace(mustBerth(t, root, "inspect", image, "--format", "{{json .Config.Labels}}"))
}

var imageIDPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// TestBuildFlagsLabelAndIIDFile: --label sets labels on the built image's
// config over the Dockerfile's LABEL of the same key (BuildKit's order),
// and the cache gives no build another's labels; --iidfile writes the image ID as docker does
// ("sha256:…", no newline) over a stale file, and a failing build removes
// a stale file and writes none.
func TestBuildFlagsLabelAndIIDFile(t *testing.T) {
	root := containerSetup(t)
	dir := berthtest.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox\nLABEL a=dockerfile b=keep\nRUN echo built > /built\n",
	})

	// Unlabelled first: the labelled builds after it must not take its
	// final image.
	plain := strings.TrimSpace(mustBerth(t, root, "build", "-q", "-t", "plain:1", dir))
	if got, want := imageLabels(t, root, "plain:1"), `{"a":"dockerfile","b":"keep"}`; got != want {
		t.Errorf("labels without --label = %s, want %s", got, want)
	}

	iid := filepath.Join(t.TempDir(), "iid")
	if err := os.WriteFile(iid, []byte("sha256:stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(mustBerth(t, root, "build", "-q", "-t", "labelled:1", "--label", "a=flag", "--label", "c=new value", "--iidfile", iid, dir))
	if got, want := imageLabels(t, root, "labelled:1"), `{"a":"flag","b":"keep","c":"new value"}`; got != want {
		t.Errorf("labels with --label a=flag --label c=... = %s, want %s", got, want)
	}
	if id == plain {
		t.Errorf("the labelled build has the unlabelled one's ID %s", id)
	}
	if got := imageLabels(t, root, "plain:1"); got != `{"a":"dockerfile","b":"keep"}` {
		t.Errorf("the unlabelled image's labels changed to %s", got)
	}
	b, err := os.ReadFile(iid)
	if err != nil {
		t.Fatalf("--iidfile: %v", err)
	}
	if string(b) != id || !imageIDPattern.MatchString(id) {
		t.Errorf("--iidfile wrote %q, want the image ID %q without a newline", b, id)
	}
	if inspected := strings.TrimSpace(mustBerth(t, root, "inspect", "labelled:1", "--format", "{{.Id}}")); inspected != string(b) {
		t.Errorf("--iidfile wrote %q, inspect says the image is %q", b, inspected)
	}

	// The labels are part of the final image's cache key: the same labels
	// give the same image again, other labels another image.
	if got := strings.TrimSpace(mustBerth(t, root, "build", "-q", "--label", "a=flag", "--label", "c=new value", dir)); got != id {
		t.Errorf("a rebuild with the same labels gave %s, want the cached %s", got, id)
	}
	mustBerth(t, root, "build", "-q", "-t", "labelled:2", "--label", "a=second", dir)
	if got, want := imageLabels(t, root, "labelled:2"), `{"a":"second","b":"keep"}`; got != want {
		t.Errorf("labels with --label a=second after a build with others = %s, want %s", got, want)
	}

	// A failing build: the stale ID is gone, and no new one is written.
	failing := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN exit 3\n"})
	res := runBerth(t, root, nil, "build", "-q", "--label", "a=x", "--iidfile", iid, failing)
	if res.code == 0 {
		t.Errorf("a build whose RUN fails exited 0")
	}
	if _, err := os.Stat(iid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a failing build the iidfile is still there (%v), want it removed", err)
	}
}

// TestBuildFlagsNetworkAndAddHost: --network (none, host, default) sets
// the network of every RUN without its own --network (which still wins),
// and is part of the RUN's cache key; --add-host puts its line in every
// RUN's /etc/hosts and is part of the cache key too; other --network modes
// ("bridge" too, as BuildKit's) and malformed --add-host values are errors
// before anything is built.
func TestBuildFlagsNetworkAndAddHost(t *testing.T) {
	root := containerSetup(t)
	// A RUN on the host's network is in the test's network namespace.
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// Each RUN writes its network namespace, then the links it sees.
	probe := "{ readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort; }"
	dir := berthtest.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox\n" +
			"RUN cat /etc/hosts > /hosts\n" +
			"RUN " + probe + " > /default\n" +
			"RUN --network=host " + probe + " > /host\n",
	})
	type netView struct {
		ns    string
		links []string
	}
	files := func(image string) (hosts string, def, host netView) {
		t.Helper()
		out := mustBerth(t, root, "run", "--rm", image, "sh", "-c", "cat /hosts; echo ==; cat /default; echo ==; cat /host")
		parts := strings.Split(out, "==\n")
		if len(parts) != 3 {
			t.Fatalf("run %s printed %q", image, out)
		}
		view := func(s string) netView {
			f := strings.Fields(s)
			if len(f) == 0 {
				t.Fatalf("run %s printed %q", image, out)
			}
			return netView{f[0], f[1:]}
		}
		return parts[0], view(parts[1]), view(parts[2])
	}
	hasHost := func(hosts, ip, name string) bool {
		for _, l := range strings.Split(hosts, "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == ip && slices.Contains(f[1:], name) {
				return true
			}
		}
		return false
	}

	// Without --network, and with --network default: a network of the
	// RUN's own, not the host's. The two builds differ only in --add-host:
	// the second must not take the first's RUNs from the cache.
	mustBerth(t, root, "build", "-q", "-t", "net:plain", dir)
	hosts, def, _ := files("net:plain")
	if def.ns == hostNS || !slices.Contains(def.links, "lo") || len(def.links) < 2 {
		t.Errorf("no --network: a RUN sees links %q (host's namespace: %v), want lo and its own network's", def.links, def.ns == hostNS)
	}
	if strings.Contains(hosts, ".test") {
		t.Errorf("without --add-host a RUN's /etc/hosts is\n%s", hosts)
	}
	mustBerth(t, root, "build", "-q", "-t", "net:default", "--network", "default", "--add-host", "extra.test:10.1.2.3", "--add-host", "v6.test:fd00::7", dir)
	hosts, def, _ = files("net:default")
	if !hasHost(hosts, "10.1.2.3", "extra.test") || !hasHost(hosts, "fd00::7", "v6.test") {
		t.Errorf("--add-host: a RUN's /etc/hosts is\n%s\nwant 10.1.2.3 extra.test and fd00::7 v6.test in it", hosts)
	}
	if def.ns == hostNS || !slices.Contains(def.links, "lo") || len(def.links) < 2 {
		t.Errorf("--network default: a RUN sees links %q (host's namespace: %v), want lo and its own network's", def.links, def.ns == hostNS)
	}

	// none, then host: these two differ only in --network.
	mustBerth(t, root, "build", "-q", "-t", "net:none", "--network", "none", dir)
	_, def, host := files("net:none")
	if def.ns == hostNS || !slices.Equal(def.links, []string{"lo"}) {
		t.Errorf("--network none: a RUN sees links %q (host's namespace: %v), want only lo", def.links, def.ns == hostNS)
	}
	if host.ns != hostNS {
		t.Errorf("--network none: RUN --network=host is in %s, want the host's %s", host.ns, hostNS)
	}
	mustBerth(t, root, "build", "-q", "-t", "net:host", "--network", "host", dir)
	if _, def, _ = files("net:host"); def.ns != hostNS {
		t.Errorf("--network host: a RUN is in %s, want the host's %s", def.ns, hostNS)
	}

	// Refused before anything is built: no step starts, no image is made.
	refused := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo refused > /refused\n"})
	images := mustBerth(t, root, "images", "-a", "-q")
	for _, tc := range []struct{ flag, value, want string }{
		{"--network", "bridge", "bridge"},
		{"--network", "container:x", "container:x"},
		{"--add-host", "nocolon", "nocolon"},
		{"--add-host", "name:not-an-ip", "name:not-an-ip"},
		{"--add-host", ":10.0.0.1", ":10.0.0.1"},
	} {
		res := runBerth(t, root, nil, "build", "--progress=plain", tc.flag, tc.value, refused)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("build %s %s: exit %d, stderr %q; want an error naming %q", tc.flag, tc.value, res.code, res.stderr, tc.want)
		}
		if strings.Contains(res.stderr, "#1 ") {
			t.Errorf("build %s %s started building:\n%s", tc.flag, tc.value, res.stderr)
		}
	}
	if got := mustBerth(t, root, "images", "-a", "-q"); got != images {
		t.Errorf("the refused builds stored images: before\n%s\nafter\n%s", images, got)
	}
}

// TestBuildOutput: -o DIR and --output type=local,dest=DIR write the final
// stage's filesystem into DIR; -o - and type=tar,dest=- write it to stdout
// as a tar, and nothing else goes there (with -q no ID either: docker's
// "-q -o -" prints only the tar); type=tar,dest=FILE writes the tar to
// FILE; values docker refuses or berth does not support are errors naming
// --output.
func TestBuildOutput(t *testing.T) {
	root := containerSetup(t)
	dir := berthtest.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox AS b\n" +
			"RUN mkdir -p /out/sub && echo app > /out/app && chmod 755 /out/app && echo x > /out/sub/x\n" +
			"FROM scratch\n" +
			"COPY --from=b /out/ /\n",
	})
	wantEntries := []string{"app", "sub", "sub/x"}
	checkTar := func(what string, b []byte) {
		t.Helper()
		r := bytes.NewReader(b)
		tr := tar.NewReader(r)
		var names []string
		contents := map[string]string{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				// Nothing after the tar but the zeros padding it.
				if rest := b[len(b)-r.Len():]; len(bytes.Trim(rest, "\x00")) > 0 {
					t.Errorf("%s: %q follows the tar", what, rest)
				}
				break
			}
			if err != nil {
				t.Errorf("%s: not a tar: %v (%d bytes: %.200q)", what, err, len(b), b)
				return
			}
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			names = append(names, name)
			if h.Typeflag == tar.TypeReg {
				c, _ := io.ReadAll(tr)
				contents[name] = string(c)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, wantEntries) {
			t.Errorf("%s: tar entries %q, want %q", what, names, wantEntries)
		}
		if contents["app"] != "app\n" || contents["sub/x"] != "x\n" {
			t.Errorf("%s: app and sub/x hold %q and %q, want \"app\\n\" and \"x\\n\"", what, contents["app"], contents["sub/x"])
		}
	}
	checkDir := func(what, d string) {
		t.Helper()
		app, err := os.ReadFile(filepath.Join(d, "app"))
		x, err2 := os.ReadFile(filepath.Join(d, "sub", "x"))
		if err != nil || err2 != nil || string(app) != "app\n" || string(x) != "x\n" {
			t.Errorf("%s: app %q (%v), sub/x %q (%v); want \"app\\n\" and \"x\\n\"", what, app, err, x, err2)
			return
		}
		if fi, err := os.Stat(filepath.Join(d, "app")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: app's mode is %v (%v), want 0755", what, fi.Mode(), err)
		}
		entries, _ := os.ReadDir(d)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"app", "sub"}) {
			t.Errorf("%s: the directory holds %q, want only app and sub", what, names)
		}
	}

	out1 := filepath.Join(t.TempDir(), "out1")
	mustBerth(t, root, "build", "-o", out1, dir)
	checkDir("-o DIR", out1)
	out2 := filepath.Join(t.TempDir(), "out2")
	mustBerth(t, root, "build", "--output", "type=local,dest="+out2, dir)
	checkDir("--output type=local,dest=DIR", out2)

	checkTar("-q -o -", []byte(mustBerth(t, root, "build", "-q", "-o", "-", dir)))
	res := runBerth(t, root, nil, "build", "--progress=plain", "-o", "-", dir)
	if res.code != 0 {
		t.Fatalf("build -o -: exit %d\n%s", res.code, res.stderr)
	}
	checkTar("-o - (its stdout)", []byte(res.stdout))
	if !strings.Contains(res.stderr, "writing image sha256:") {
		t.Errorf("build -o -: the progress is not on stderr:\n%s", res.stderr)
	}
	checkTar("-q --output type=tar,dest=-", []byte(mustBerth(t, root, "build", "-q", "--output", "type=tar,dest=-", dir)))
	tarFile := filepath.Join(t.TempDir(), "out.tar")
	mustBerth(t, root, "build", "-q", "--output", "type=tar,dest="+tarFile, dir)
	b, err := os.ReadFile(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	checkTar("--output type=tar,dest=FILE", b)

	bad := t.TempDir()
	for _, o := range []string{"type=registry,dest=" + filepath.Join(bad, "x"), "type=local", "type=local,dest=-", "type=local,dest=" + filepath.Join(bad, "y") + ",colour=blue"} {
		res := runBerth(t, root, nil, "build", "-q", "--output", o, dir)
		if res.code == 0 || !strings.Contains(res.stderr, "--output") {
			t.Errorf("build --output %s: exit %d, stderr %q; want an error naming --output", o, res.code, res.stderr)
		}
	}
	// Two outputs are refused (docker 20.10 takes one).
	if res := runBerth(t, root, nil, "build", "-q", "-o", filepath.Join(bad, "a"), "-o", filepath.Join(bad, "b"), dir); res.code == 0 || !strings.Contains(res.stderr, "--output") {
		t.Errorf("build -o A -o B: exit %d, stderr %q; want an error naming --output", res.code, res.stderr)
	}
	if entries, _ := os.ReadDir(bad); len(entries) != 0 {
		t.Errorf("refused outputs wrote %v", entries)
	}
	// The value is CSV, as docker reads it: a quoted field.
	quoted := filepath.Join(t.TempDir(), "q")
	mustBerth(t, root, "build", "-q", "--output", `type=local,"dest=`+quoted+`"`, dir)
	if b, err := os.ReadFile(filepath.Join(quoted, "app")); err != nil || string(b) != "app\n" {
		t.Errorf("--output with a quoted dest: %q, %v", b, err)
	}
}

// TestBuildStdin: docker build - takes a context archive on stdin, plain
// or compressed, -f naming a Dockerfile inside it, or a lone Dockerfile
// (an empty context); -f - with it is an error, and a Dockerfile missing
// from the archive is named as given, not by a temporary path.
func TestBuildStdin(t *testing.T) {
	root := containerSetup(t)
	build := func(stdin []byte, args ...string) result {
		t.Helper()
		return runBerth(t, root, stdin, append([]string{"build"}, args...)...)
	}

	plain := tarOf(t, map[string]string{
		"Dockerfile": "FROM busybox\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n",
		"hello.txt":  "from the plain tar\n",
	})
	if res := build(plain, "-q", "-t", "stdin:plain", "-"); res.code != 0 {
		t.Fatalf("build - < tar: exit %d\n%s", res.code, res.stderr)
	}
	if got := mustBerth(t, root, "run", "--rm", "stdin:plain"); got != "from the plain tar\n" {
		t.Errorf("the image built from a tar on stdin printed %q", got)
	}

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, map[string]string{
		"Dockerfile":       "FROM scratch\n", // not this one
		"sub/Dockerfile.x": "FROM busybox\nCOPY data/ /data/\nCMD [\"cat\", \"/data/d.txt\"]\n",
		"data/d.txt":       "from the gzip tar\n",
	}))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if res := build(gz.Bytes(), "-q", "-t", "stdin:gzip", "-f", "sub/Dockerfile.x", "-"); res.code != 0 {
		t.Fatalf("build -f sub/Dockerfile.x - < tar.gz: exit %d\n%s", res.code, res.stderr)
	}
	if got := mustBerth(t, root, "run", "--rm", "stdin:gzip"); got != "from the gzip tar\n" {
		t.Errorf("the image built from a gzip tar on stdin printed %q", got)
	}

	// A lone Dockerfile: the context is empty (buildx's empty directory),
	// the Dockerfile not in it.
	lone := "FROM busybox\nCOPY . /ctx/\nRUN ls -A /ctx > /list && echo lone > /lone\nCMD [\"cat\", \"/lone\", \"/list\"]\n"
	if res := build([]byte(lone), "-q", "-t", "stdin:lone", "-"); res.code != 0 {
		t.Fatalf("build - < Dockerfile: exit %d\n%s", res.code, res.stderr)
	}
	if got := mustBerth(t, root, "run", "--rm", "stdin:lone"); got != "lone\n" {
		t.Errorf("the image built from a Dockerfile on stdin printed %q, want \"lone\\n\" and an empty context", got)
	}

	if res := build([]byte(lone), "-f", "-", "-"); res.code == 0 || !strings.Contains(res.stderr, "can't use stdin for both build context and dockerfile") {
		t.Errorf("build -f - -: exit %d, stderr %q; want docker's error", res.code, res.stderr)
	}
	if res := build([]byte(lone), "-f", "other.Dockerfile", "-"); res.code == 0 || !strings.Contains(res.stderr, "ambiguous Dockerfile source") {
		t.Errorf("build -f FILE - < Dockerfile: exit %d, stderr %q; want docker's error", res.code, res.stderr)
	}

	noDockerfile := tarOf(t, map[string]string{"hello.txt": "hi\n"})
	for _, tc := range []struct {
		args []string
		name string
	}{
		{[]string{"-f", "sub/missing.Dockerfile", "-"}, "sub/missing.Dockerfile"},
		{[]string{"-"}, "Dockerfile"},
	} {
		res := build(noDockerfile, tc.args...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.name) || strings.Contains(res.stderr, root) {
			t.Errorf("build %v of an archive without the Dockerfile: exit %d, stderr %q; want an error naming %s and no path under the root", tc.args, res.code, res.stderr, tc.name)
		}
	}
}

// TestBuildFlagsPull: build --pull follows a tag the registry moved, where
// a build without it uses the image the root has.
func TestBuildFlagsPull(t *testing.T) {
	root, tarball := setup(t)
	reg := berthtest.StartRegistry(t)
	mustBerth(t, root, "import", tarball, "busybox")
	ref := reg.Host + "/test/base:1"
	push := func(marker string) {
		t.Helper()
		dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo " + marker + " > /marker\n"})
		mustBerth(t, root, "build", "-q", "-t", ref, dir)
		mustBerth(t, root, "push", ref)
	}
	push("first")
	other := filepath.Join(t.TempDir(), "other")
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM " + ref + "\nCMD [\"cat\", \"/marker\"]\n"})
	mustBerth(t, other, "build", "-q", "-t", "app", dir) // pulled: missing
	push("second")
	for _, tc := range []struct {
		args []string
		want string
	}{{nil, "first\n"}, {[]string{"--pull"}, "second\n"}} {
		mustBerth(t, other, append(append([]string{"build", "-q", "-t", "app"}, tc.args...), dir)...)
		if got := mustBerth(t, other, "run", "--rm", "app"); got != tc.want {
			t.Errorf("build %v: the base has %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestBuildCacheFlags: --cache-to and --cache-from, local and registry,
// between two roots that share only the base image: the second takes every
// step from the cache (CACHED) and gets the same image ID. A source that
// is not there is a WARNING, not a failure; forms berth does not take are
// refused.
func TestBuildCacheFlags(t *testing.T) {
	root, tarball := setup(t)
	reg := berthtest.StartRegistry(t)
	mustBerth(t, root, "import", tarball, "busybox")
	saved := filepath.Join(t.TempDir(), "busybox.tar")
	mustBerth(t, root, "save", "-o", saved, "busybox")
	ctxDir := berthtest.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox AS builder\nRUN head -c 16 /dev/urandom | od -x > /random && echo more > /more\nFROM busybox\nCOPY --from=builder /random /random\n",
	})
	cacheDir, minDir := filepath.Join(t.TempDir(), "cache"), filepath.Join(t.TempDir(), "min")
	ref := reg.Host + "/ci/app:cache"
	// A mode per export; BuildKit's tuning keys are taken.
	id := strings.TrimSpace(mustBerth(t, root, "build", "-q", "--cache-to", "type=local,dest="+cacheDir+",mode=max", "--cache-to", "type=registry,ref="+ref+",mode=max,oci-mediatypes=true,compression=zstd", "--cache-to", "type=local,dest="+minDir, ctxDir))
	if !imageIDPattern.MatchString(id) {
		t.Fatalf("build -q printed %q", id)
	}
	// A list of references, and an empty value (a CI variable not set),
	// as docker takes them.
	for _, tc := range []struct {
		from          string
		cached, warns int
	}{
		{"type=local,src=" + cacheDir + ",mode=max", 2, 0},
		{reg.Host + "/ci/none:cache," + ref, 2, 1}, // the first is not there
		{"", 0, 0},
	} {
		from := tc.from
		other := filepath.Join(t.TempDir(), "other")
		mustBerth(t, other, "load", "-i", saved)
		res := runBerth(t, other, nil, "build", "--progress", "plain", "--cache-from", from, ctxDir)
		if res.code != 0 {
			t.Fatalf("build --cache-from %q: exit %d\n%s", from, res.code, res.stderr)
		}
		if n, w := strings.Count(res.stderr, " CACHED\n"), strings.Count(res.stderr, "WARNING"); n != tc.cached || w != tc.warns {
			t.Errorf("build --cache-from %q: %d steps CACHED, %d warnings; want %d and %d (mode=max: the builder stage's RUN too):\n%s", from, n, w, tc.cached, tc.warns, res.stderr)
		}
		if tc.cached == 0 {
			continue
		}
		if got := strings.TrimSpace(mustBerth(t, other, "images", "-q", "--no-trunc")); !strings.Contains(got, id) {
			t.Errorf("build --cache-from %s: images %q, want %s among them", from, got, id)
		}
	}

	// The min export (the default) has the final stage's step only: the
	// builder's RUN runs again, so the COPY misses too.
	other := filepath.Join(t.TempDir(), "other")
	mustBerth(t, other, "load", "-i", saved)
	if res := runBerth(t, other, nil, "build", "--progress", "plain", "--cache-from", "type=local,src="+minDir, ctxDir); res.code != 0 || strings.Contains(res.stderr, "CACHED") {
		t.Errorf("build from the min export: exit %d, want 0 and nothing CACHED:\n%s", res.code, res.stderr)
	}

	missing := filepath.Join(t.TempDir(), "none")
	res := runBerth(t, root, nil, "build", "--progress", "plain", "--no-cache", "--cache-from", "type=local,src="+missing, ctxDir)
	if res.code != 0 || strings.Contains(res.stderr, "WARNING") {
		t.Errorf("--no-cache with a missing source: exit %d, stderr:\n%s\nwant 0 and no source read", res.code, res.stderr)
	}
	// In roots without the steps: sources are read at the first miss (a
	// fully cached build reads none).
	for _, quiet := range []string{"--progress=plain", "-q"} {
		fresh := filepath.Join(t.TempDir(), "fresh")
		mustBerth(t, fresh, "load", "-i", saved)
		res = runBerth(t, fresh, nil, "build", quiet, "--cache-from", "type=local,src="+missing, ctxDir)
		if res.code != 0 || !strings.Contains(res.stderr, "WARNING: the build cache "+missing+" is not used") {
			t.Errorf("a missing source, %s: exit %d, stderr:\n%s\nwant 0 and a WARNING naming it", quiet, res.code, res.stderr)
		}
	}
	for _, bad := range [][]string{
		{"--cache-to", "type=inline"},
		{"--cache-to", "type=local,src=" + cacheDir},
		{"--cache-to", "type=local,dest=" + cacheDir + ",mode=all"},
		{"--cache-from", "type=gha"},
		{"--cache-from", "type=registry,ref=" + ref + ",dest=x"},
		{"--cache-to", reg.Host + "/ci/app@sha256:" + strings.Repeat("0", 64)},
	} {
		res := runBerth(t, root, nil, append(append([]string{"build"}, bad...), ctxDir)...)
		if res.code == 0 || !strings.Contains(res.stderr, "cache") || strings.Contains(res.stderr, "#1 ") {
			t.Errorf("build %s: exit %d, stderr:\n%s\nwant a refusal naming the cache before any step", strings.Join(bad, " "), res.code, res.stderr)
		}
	}
}

// TestBuildRemoteContext: docker build URL downloads the context, a tar
// (here gzipped) or else a lone Dockerfile; an answer other than 200 fails
// the build, naming the URL; a git repository is refused, as berth has no
// git.
func TestBuildRemoteContext(t *testing.T) {
	root := containerSetup(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY data /data\n", "data": "from the archive"}))
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ctx.tar.gz":
			w.Write(gz.Bytes())
		case "/Dockerfile":
			io.WriteString(w, "FROM busybox\nRUN echo from the url > /data\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for path, want := range map[string]string{"/ctx.tar.gz": "from the archive", "/Dockerfile": "from the url\n"} {
		id := strings.TrimSpace(mustBerth(t, root, "build", "-q", srv.URL+path))
		if got := mustBerth(t, root, "run", "--rm", "--network", "none", id, "cat", "/data"); got != want {
			t.Errorf("build %s: /data = %q, want %q", path, got, want)
		}
	}
	res := runBerth(t, root, nil, "build", srv.URL+"/gone")
	if res.code == 0 || !strings.Contains(res.stderr, srv.URL+"/gone") || !strings.Contains(res.stderr, "404") {
		t.Errorf("build of a missing URL: exit %d, stderr %q; want a failure naming the URL and 404", res.code, res.stderr)
	}
	for _, git := range []string{srv.URL + "/repo.git", "git@example.invalid:o/r", "github.com/o/r"} {
		res := runBerth(t, root, nil, "build", git)
		if res.code == 0 || !strings.Contains(res.stderr, "git repositories are not supported") {
			t.Errorf("build %s: exit %d, stderr %q; want git refused", git, res.code, res.stderr)
		}
	}
}

// TestBuildContextOrder: a directory that exists is the context even when
// its name looks like a git repository's, as docker decides.
func TestBuildContextOrder(t *testing.T) {
	root := containerSetup(t)
	base := berthtest.WriteFiles(t, map[string]string{"github.com/me/app/Dockerfile": "FROM busybox\n"})
	cmd := exec.Command(berthBin, "--root", root, "build", "-q", "github.com/me/app")
	cmd.Dir = base
	if out, err := cmd.CombinedOutput(); err != nil || !imageIDPattern.Match(bytes.TrimSpace(out)) {
		t.Errorf("build of the directory github.com/me/app: %v\n%s", err, out)
	}
}
