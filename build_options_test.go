package berth_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// TestBuildLabels checks docker build --label: the labels land on the
// final image over the Dockerfile's, the steps before it stay cached, and
// the same labels give the same image again.
func TestBuildLabels(t *testing.T) {
	rt := busyboxRuntime(t)
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo made > /f\nLABEL a=1 c=4\n"})
	ctx := context.Background()
	plain, err := rt.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "c": "4"}; !maps.Equal(plain.Config.Labels, want) {
		t.Errorf("labels without WithBuildLabels: %v, want %v", plain.Config.Labels, want)
	}
	var rec buildRecorder
	labelled, err := rt.Build(ctx, dir, berth.WithBuildLabels(map[string]string{"a": "3", "b": "2"}), berth.WithBuildProgress(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "3", "b": "2", "c": "4"}; !maps.Equal(labelled.Config.Labels, want) {
		t.Errorf("labels: %v, want %v", labelled.Config.Labels, want)
	}
	if !rec.cached("RUN echo made") {
		t.Error("the RUN before the labels was not taken from the cache")
	}
	if labelled.ID == plain.ID {
		t.Error("the labelled image is the plain one")
	}
	if len(labelled.History) != len(plain.History) {
		t.Errorf("WithBuildLabels added history: %d entries, want %d", len(labelled.History), len(plain.History))
	}
	again, err := rt.Build(ctx, dir, berth.WithBuildLabels(map[string]string{"b": "2", "a": "3"}))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != labelled.ID {
		t.Errorf("the same labels gave %s, then %s", labelled.ID, again.ID)
	}
	if back, err := rt.Build(ctx, dir); err != nil || back.ID != plain.ID {
		t.Errorf("without labels again: %v, %v; want %s", back, err, plain.ID)
	}
}

// TestBuildNetworkAndHosts checks docker build --network and --add-host:
// the mode of every RUN that names none (a RUN's own wins), the extra
// hosts in each RUN's /etc/hosts, both part of a RUN's cache key, and
// values refused before anything is built.
func TestBuildNetworkAndHosts(t *testing.T) {
	rt := busyboxRuntime(t)
	links := "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '"
	df := "FROM busybox\nRUN " + links + " > /default\nRUN --network=host " + links + " > /host\nRUN grep -h named /etc/hosts > /hosts || true\n"
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": df})
	ctx := context.Background()
	build := func(opts ...berth.BuildOption) map[string]imageFile {
		t.Helper()
		img, err := rt.Build(ctx, dir, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return imageTree(t, rt, img.ID)
	}
	tree := build(berth.WithBuildNetwork("none"), berth.WithBuildExtraHosts("named:10.1.2.3", "other.named:fd00::1"))
	wantFiles(t, tree, map[string]string{"/default": "lo ", "/hosts": "10.1.2.3\tnamed\nfd00::1\tother.named\n"})
	hostDev, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	if got := tree["/host"].content; strings.Count(string(hostDev), ":") > 1 && (got == "lo " || !strings.Contains(got, "lo ")) {
		t.Errorf("RUN --network=host under WithBuildNetwork(none) saw %q, want the host's links", got)
	}
	// Without the extra hosts, the RUN that reads them is made anew.
	wantFiles(t, build(berth.WithBuildNetwork("none")), map[string]string{"/default": "lo ", "/hosts": ""})
	// The default mode: the first RUN too.
	if got := build()["/default"].content; !strings.Contains(got, "eth0") {
		t.Errorf("RUN on the default network saw %q, want eth0", got)
	}

	before, err := rt.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]berth.BuildOption{
		"bridge":      berth.WithBuildNetwork("bridge"),
		"no ip":       berth.WithBuildExtraHosts("named"),
		"bad ip":      berth.WithBuildExtraHosts("named:10.1.2"),
		"empty name":  berth.WithBuildExtraHosts(":10.1.2.3"),
		"space":       berth.WithBuildExtraHosts("na med:10.1.2.3"),
		"archive+dir": berth.WithContextArchive(strings.NewReader("")),
	} {
		var rec buildRecorder
		_, err := rt.Build(ctx, dir, opt, berth.WithBuildProgress(rec.record))
		if !errors.Is(err, berth.ErrInvalid) && !errors.Is(err, berth.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrInvalid or ErrUnsupported", name, err)
		}
		if len(rec.events) > 0 {
			t.Errorf("%s: refused only after %d build events, want before any step", name, len(rec.events))
		}
	}
	after, err := rt.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("refused builds changed the images: %d, then %d", len(before), len(after))
	}
}

// TestBuildOutputs checks docker build --output: the final stage's merged
// filesystem (a file an upper layer deleted absent, modes, owners and
// symlinks kept) into a directory and as a tar stream, written inside the
// directory however its existing symlinks point.
func TestBuildOutputs(t *testing.T) {
	rt := busyboxRuntime(t)
	df := "FROM busybox AS b\n" +
		"RUN mkdir -p /out/escape /out/sub && echo hi > /out/app && chown 1:2 /out/app && chmod 4750 /out/app && ln -s /etc/passwd /out/link && echo x > /out/escape/f && echo g > /out/sub/gone\n" +
		"FROM scratch\nCOPY --from=b /out/ /\nCOPY --from=b /bin/busybox /bin/busybox\nRUN [\"/bin/busybox\", \"rm\", \"/sub/gone\"]\n"
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": df})

	out := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(out, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "keep"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Under a path a layer deleted: the output adds, it never deletes.
	if err := os.MkdirAll(filepath.Join(out, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "sub", "gone"), []byte("mine too"), 0o600); err != nil {
		t.Fatal(err)
	}
	var tarOut bytes.Buffer
	if _, err := rt.Build(context.Background(), dir, berth.WithBuildOutputDir(out), berth.WithBuildOutputTar(&tarOut)); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("the output wrote through the directory's symlink: %v in %s", ents, outside)
	}
	if b, err := os.ReadFile(filepath.Join(out, "keep")); err != nil || string(b) != "mine" {
		t.Errorf("a file already in the directory: %q, %v", b, err)
	}
	st, err := os.Lstat(filepath.Join(out, "app"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "app")); string(b) != "hi\n" || st.Mode().Perm() != 0o750 || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("app: %q mode %v", b, st.Mode())
	}
	if uid, gid := ownerOf(t, st); uid != uint32(os.Getuid()) || gid != uint32(os.Getgid()) {
		t.Errorf("app owned by %d:%d, want the caller's, as BuildKit's local exporter writes", uid, gid)
	}
	if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != "/etc/passwd" {
		t.Errorf("link: %q, %v", l, err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "sub", "gone")); err != nil || string(b) != "mine too" {
		t.Errorf("the caller's file where a layer deleted one: %q, %v; want it kept", b, err)
	}
	fresh := filepath.Join(t.TempDir(), "made")
	if _, err := rt.Build(context.Background(), dir, berth.WithBuildOutputDir(fresh)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the output directory Build made: %v, %v; want mode 0700", st.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(fresh, "sub", "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file a later layer deleted is in the output: %v", err)
	}

	got := map[string]string{}
	tr := tar.NewReader(&tarOut)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		desc := string(hdr.Typeflag) + " " + hdr.Linkname + string(data)
		if hdr.Name == "app" && (hdr.Uid != 1 || hdr.Gid != 2 || hdr.Mode&0o7777 != 0o4750) {
			t.Errorf("app in the tar: %d:%d %o", hdr.Uid, hdr.Gid, hdr.Mode)
		}
		got[hdr.Name] = desc
	}
	want := map[string]string{
		"app": "0 hi\n", "link": "2 /etc/passwd", "escape/": "5 ", "escape/f": "0 x\n",
		"sub/": "5 ", "bin/": "5 ",
	}
	for name, desc := range want {
		if got[name] != desc {
			t.Errorf("tar entry %s: %q, want %q", name, got[name], desc)
		}
	}
	if _, ok := got["bin/busybox"]; !ok || len(got) != len(want)+1 {
		t.Errorf("tar entries: %v, want %v and bin/busybox", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

// TestBuildContextArchive checks docker build - : a context given as a
// tar stream (compressed or not), an empty context for a Dockerfile given
// alone, and an archive whose names climb out, refused without a file
// outside and without a temporary directory left under the root.
func TestBuildContextArchive(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	archive := func(compress bool, files ...[2]string) io.Reader {
		var buf bytes.Buffer
		var w io.Writer = &buf
		var zw *gzip.Writer
		if compress {
			zw = gzip.NewWriter(&buf)
			w = zw
		}
		tw := tar.NewWriter(w)
		for _, f := range files {
			if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(f[1]))
		}
		tw.Close()
		if zw != nil {
			zw.Close()
		}
		return &buf
	}
	df := [2]string{"sub/Dockerfile.x", "FROM busybox\nCOPY f /f\n"}
	for _, compress := range []bool{false, true} {
		img, err := rt.Build(ctx, "", berth.WithContextArchive(archive(compress, df, [2]string{"f", "from the archive"})), berth.WithDockerfile("sub/Dockerfile.x"))
		if err != nil {
			t.Fatalf("compressed %v: %v", compress, err)
		}
		wantFiles(t, imageTree(t, rt, img.ID), map[string]string{"/f": "from the archive"})
	}
	// docker build - also takes bzip2 (and xz, which berth refuses: see
	// contextReader).
	compressed := map[string]io.Reader{}
	if bz, err := exec.LookPath("bzip2"); err == nil {
		cmd := exec.Command(bz, "-c")
		cmd.Stdin = archive(false, df, [2]string{"f", "from bzip2"})
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		compressed["bzip2"] = bytes.NewReader(out)
	} else {
		t.Log("bzip2 is not installed: a bzip2 context is not tried")
	}
	xzHeader := []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4}
	if _, err := rt.Build(ctx, "", berth.WithContextArchive(bytes.NewReader(xzHeader))); !errors.Is(err, berth.ErrUnsupported) {
		t.Errorf("an xz context: %v, want ErrUnsupported", err)
	}
	for name, r := range compressed {
		img, err := rt.Build(ctx, "", berth.WithContextArchive(r), berth.WithDockerfile("sub/Dockerfile.x"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wantFiles(t, imageTree(t, rt, img.ID), map[string]string{"/f": "from " + name})
	}
	img, err := rt.Build(ctx, "", berth.WithDockerfileContent("FROM busybox\nRUN echo alone > /f\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantFiles(t, imageTree(t, rt, img.ID), map[string]string{"/f": "alone\n"})
	if _, err := rt.Build(ctx, "", berth.WithDockerfileContent("FROM busybox\nCOPY f /f\n")); err == nil {
		t.Error("a COPY from an empty context succeeded")
	}
	if _, err := rt.Build(ctx, "", berth.WithContextArchive(archive(false, [2]string{"f", "x"})), berth.WithDockerfile("sub/none")); err == nil || !strings.Contains(err.Error(), " sub/none: no such file") {
		t.Errorf("a Dockerfile missing from the archive: %v, want its name", err)
	}
	// The Dockerfile of an archive is the archive's: a name that climbs
	// or is absolute, or a link that leads out, never reads the host's.
	hostFile := filepath.Join(t.TempDir(), "host-dockerfile")
	if err := os.WriteFile(hostFile, []byte("LEAKED from the host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{strings.Repeat("../", 16) + strings.TrimPrefix(hostFile, "/"), hostFile, "Dockerfile"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Typeflag: tar.TypeSymlink, Linkname: hostFile})
		tw.Close()
		_, err := rt.Build(ctx, "", berth.WithContextArchive(&buf), berth.WithDockerfile(name))
		if err == nil || strings.Contains(err.Error(), "LEAKED") || strings.Contains(err.Error(), "instruction") {
			t.Errorf("-f %s with an archive: %v, want the file not found in the context", name, err)
		}
	}

	climb := "../../../../../../../../tmp/berth-context-escape-" + filepath.Base(t.TempDir())
	_, err = rt.Build(ctx, "", berth.WithContextArchive(archive(false, [2]string{"Dockerfile", "FROM busybox\n"}, [2]string{climb, "out"})))
	if err == nil || !strings.Contains(err.Error(), "context archive") {
		t.Errorf("an archive climbing out: %v, want an error about the context archive", err)
	}
	if _, serr := os.Lstat(filepath.Join("/tmp", filepath.Base(climb))); serr == nil {
		os.Remove(filepath.Join("/tmp", filepath.Base(climb)))
		t.Error("the archive wrote outside its context")
	}
	if ents, _ := os.ReadDir(filepath.Join(rt.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("left under the root's tmp: %v", ents)
	}
}

// ownerOf returns the uid and gid of the file fi describes.
func ownerOf(t *testing.T, fi os.FileInfo) (uid, gid uint32) {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("%s: no stat", fi.Name())
	}
	return st.Uid, st.Gid
}

// TestBuildPull checks docker build --pull: a base image whose tag moved
// in the registry is pulled again, for FROM and COPY --from, where a build
// without it uses the store's; a failing pull fails the build.
func TestBuildPull(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := berthtest.StartRegistry(t)
	pusher := berthtest.NewRuntime(t)
	berthtest.Busybox(t, pusher, "busybox")
	ref := reg.Host + "/test/base:1"
	push := func(marker string) {
		t.Helper()
		img, err := pusher.Build(ctx, "", berth.WithDockerfileContent("FROM busybox\nRUN echo "+marker+" > /marker\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pusher.Push(ctx, img, ref); err != nil {
			t.Fatal(err)
		}
	}
	push("first")
	rt := berthtest.NewRuntime(t)
	df := "FROM " + ref + "\nCOPY --from=" + ref + " /marker /copied\nRUN cat /marker >> /copied\n"
	build := func(opts ...berth.BuildOption) map[string]imageFile {
		t.Helper()
		img, err := rt.Build(ctx, "", append(opts, berth.WithDockerfileContent(df))...)
		if err != nil {
			t.Fatal(err)
		}
		return imageTree(t, rt, img.ID)
	}
	wantFiles(t, build(), map[string]string{"/copied": "first\nfirst\n"}) // pulled: missing
	push("second")
	wantFiles(t, build(), map[string]string{"/copied": "first\nfirst\n"})
	wantFiles(t, build(berth.WithBuildPull()), map[string]string{"/copied": "second\nsecond\n"})
	if img, err := rt.Image(ctx, ref); err != nil || !strings.Contains(imageTree(t, rt, img.ID)["/marker"].content, "second") {
		t.Errorf("the store's %s after the pull: %v", ref, err)
	}
	if _, err := rt.Build(ctx, "", berth.WithBuildPull(), berth.WithDockerfileContent("FROM "+reg.Host+"/test/none:1\n")); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("a pull of a missing image: %v, want ErrNotFound", err)
	}
}
