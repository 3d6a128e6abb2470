package berth_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"golang.org/x/sys/unix"
)

// runOutput runs args in img and returns its stdout.
func runOutput(t *testing.T, rt *berth.Runtime, img string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	c, err := rt.Run(context.Background(), img, &berth.Process{Args: args, Stdout: &out, Stderr: &out}, berth.WithAutoRemove())
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatalf("run %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

type buildRecorder struct{ events []berth.BuildEvent }

func (r *buildRecorder) record(ev berth.BuildEvent) { r.events = append(r.events, ev) }

func (r *buildRecorder) cached(instrPrefix string) bool {
	for _, ev := range r.events {
		if ev.Output == "" && strings.HasPrefix(ev.Instruction, instrPrefix) && ev.Cached {
			return true
		}
	}
	return false
}

const appDockerfile = `FROM busybox
WORKDIR /app
COPY . .
RUN echo hi > /app/made && rm /bin/false
ENV A=1
ENTRYPOINT ["cat"]
CMD ["/app/made"]
`

func TestBuildApp(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	ctx := context.Background()
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": appDockerfile, "src/a.txt": "alpha", "b.txt": "beta"})
	if err := os.Symlink("../../etc/shadow", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var rec buildRecorder
	img, err := rt.Build(ctx, dir, berth.WithBuildTags("app:1"), berth.WithBuildProgress(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	if got := runOutput(t, rt, "app:1"); got != "hi\n" {
		t.Errorf("default command printed %q, want %q", got, "hi\n")
	}
	if got := runOutput(t, rt, "app:1", "/app/src/a.txt", "/app/b.txt"); got != "alphabeta" {
		t.Errorf("copied files: %q", got)
	}
	var out bytes.Buffer
	c, err := rt.Run(ctx, "app:1", &berth.Process{Args: []string{"sh", "-c", "readlink /app/link; test -e /bin/false && echo present || echo gone; pwd"}, Stdout: &out, Stderr: &out}, berth.WithEntrypoint(), berth.WithAutoRemove())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got, want := out.String(), "../../etc/shadow\ngone\n/app\n"; got != want {
		t.Errorf("symlink, whiteout, workdir: got %q, want %q", got, want)
	}
	cfg := img.Config
	if !slices.Contains(cfg.Env, "A=1") || cfg.WorkingDir != "/app" || !slices.Equal(cfg.Entrypoint, []string{"cat"}) || !slices.Equal(cfg.Cmd, []string{"/app/made"}) {
		t.Errorf("config = %+v", cfg)
	}
	h := img.History
	if len(h) < 6 {
		t.Fatalf("history has %d entries: %+v", len(h), h)
	}
	h = h[len(h)-6:]
	wants := []struct {
		prefix string
		empty  bool
	}{
		{"WORKDIR /app", false}, // BuildKit's forms; WORKDIR made /app
		{"COPY . . # buildkit", false},
		{"RUN /bin/sh -c echo hi > /app/made && rm /bin/false # buildkit", false},
		{"ENV A=1", true},
		{`ENTRYPOINT ["cat"]`, true},
		{`CMD ["/app/made"]`, true},
	}
	for i, w := range wants {
		if !strings.HasPrefix(h[i].CreatedBy, w.prefix) || h[i].EmptyLayer != w.empty {
			t.Errorf("history[%d] = %q empty=%v, want prefix %q empty=%v", i, h[i].CreatedBy, h[i].EmptyLayer, w.prefix, w.empty)
		}
	}
	if rec.cached("COPY") || rec.cached("RUN") {
		t.Errorf("first build reported cache hits: %+v", rec.events)
	}

	// Second build: every step cached, the same image.
	var rec2 buildRecorder
	img2, err := rt.Build(ctx, dir, berth.WithBuildProgress(rec2.record))
	if err != nil {
		t.Fatal(err)
	}
	if !rec2.cached("COPY") || !rec2.cached("RUN") || img2.ID != img.ID {
		t.Errorf("second build: id %s vs %s, events %+v", img2.ID, img.ID, rec2.events)
	}

	// An mtime-only change keeps the cache.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "b.txt"), later, later); err != nil {
		t.Fatal(err)
	}
	var rec3 buildRecorder
	img3, err := rt.Build(ctx, dir, berth.WithBuildProgress(rec3.record))
	if err != nil {
		t.Fatal(err)
	}
	if !rec3.cached("COPY") || img3.ID != img.ID {
		t.Errorf("mtime-only change missed the cache: %+v", rec3.events)
	}

	// A content change misses from COPY on.
	if err := os.WriteFile(filepath.Join(dir, "b.txt"), []byte("BETA"), 0o644); err != nil {
		t.Fatal(err)
	}
	var rec4 buildRecorder
	img4, err := rt.Build(ctx, dir, berth.WithBuildProgress(rec4.record))
	if err != nil {
		t.Fatal(err)
	}
	if rec4.cached("COPY") || rec4.cached("RUN") || img4.ID == img.ID {
		t.Errorf("content change hit the cache: %+v", rec4.events)
	}

	// A content change of the same size with the mtime put back, which a
	// file-digest memo keyed on size and mtime alone would miss: the
	// memo's ctime check sees it.
	bPath := filepath.Join(dir, "b.txt")
	st, err := os.Stat(bPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bPath, []byte("BETB"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bPath, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	var rec4b buildRecorder
	if _, err := rt.Build(ctx, dir, berth.WithBuildTags("app:4b"), berth.WithBuildProgress(rec4b.record)); err != nil {
		t.Fatal(err)
	}
	if rec4b.cached("COPY") {
		t.Errorf("same-size content change with the old mtime hit the cache: %+v", rec4b.events)
	}
	if got := runOutput(t, rt, "app:4b", "/app/b.txt"); got != "BETB" {
		t.Errorf("after a same-size change, the image has %q, want %q", got, "BETB")
	}

	// --no-cache.
	var rec5 buildRecorder
	if _, err := rt.Build(ctx, dir, berth.WithNoCache(), berth.WithBuildProgress(rec5.record)); err != nil {
		t.Fatal(err)
	}
	if rec5.cached("COPY") || rec5.cached("RUN") {
		t.Errorf("WithNoCache hit the cache: %+v", rec5.events)
	}

	// Intermediate images survive a prune.
	if _, err := rt.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	var rec6 buildRecorder
	if _, err := rt.Build(ctx, dir, berth.WithBuildProgress(rec6.record)); err != nil {
		t.Fatal(err)
	}
	if !rec6.cached("RUN") {
		t.Errorf("cache lost after Prune: %+v", rec6.events)
	}

	// Cache entries and the digest memo are not forced to disk: a crash
	// can leave them empty or torn. Such files are misses, not errors.
	for _, sub := range []string{"build", "file-digests"} {
		ents, err := os.ReadDir(filepath.Join(rt.Root(), "cache", sub))
		if err != nil || len(ents) == 0 {
			t.Fatalf("cache/%s: %d entries, %v", sub, len(ents), err)
		}
		for i, e := range ents {
			torn := []byte(nil)
			if i%2 == 1 {
				torn = []byte(img.ID[:20]) // cut short: a prefix of an image that exists
			}
			if err := os.WriteFile(filepath.Join(rt.Root(), "cache", sub, e.Name()), torn, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rec7 buildRecorder
	img7, err := rt.Build(ctx, dir, berth.WithBuildTags("app:7"), berth.WithBuildProgress(rec7.record))
	if err != nil {
		t.Fatalf("build over torn cache files: %v", err)
	}
	if rec7.cached("COPY") || rec7.cached("RUN") {
		t.Errorf("torn cache entries were hits: %+v", rec7.events)
	}
	if got := runOutput(t, rt, "app:7", "/app/b.txt"); got != "BETB" {
		t.Errorf("after torn cache files, the image has %q, want %q", got, "BETB")
	}
	var rec8 buildRecorder
	img8, err := rt.Build(ctx, dir, berth.WithBuildProgress(rec8.record))
	if err != nil {
		t.Fatal(err)
	}
	if !rec8.cached("COPY") || !rec8.cached("RUN") || img8.ID != img7.ID {
		t.Errorf("the build after torn cache files did not cache again: %+v", rec8.events)
	}
}

func TestBuildCases(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	ctx := context.Background()
	tests := []struct {
		name       string
		dockerfile string
		files      map[string]string
		opts       []berth.BuildOption
		// cmd runs in the built image (entrypoint cleared) and must print want.
		cmd     string
		want    string
		wantErr string
		errLine int
		check   func(t *testing.T, img *berth.Image)
	}{
		{
			name:       "multi-stage",
			dockerfile: "FROM busybox AS b\nRUN echo x > /x\nFROM scratch\nCOPY --from=b /x /x\n",
			check: func(t *testing.T, img *berth.Image) {
				if len(img.Layers) != 1 {
					t.Errorf("scratch stage has %d layers, want 1", len(img.Layers))
				}
			},
		},
		{
			name:       "multi-stage copy into busybox",
			dockerfile: "FROM busybox AS b\nRUN echo x > /x\nFROM busybox AS unused\nRUN exit 3\nFROM busybox\nCOPY --from=b /x /y\n",
			cmd:        "cat /y",
			want:       "x\n",
		},
		{
			name:       "arg before from and per stage",
			dockerfile: "ARG BASE=busybox\nARG V=global\nFROM $BASE\nARG V\nARG W=w1\nENV E=$V-$W\nRUN echo $V $W > /args\n",
			opts:       []berth.BuildOption{berth.WithBuildArgs(map[string]string{"W": "fromflag"})},
			cmd:        "cat /args; echo $E; echo ${W:-unset}",
			want:       "global fromflag\nglobal-fromflag\nunset\n",
		},
		{
			name:       "target",
			dockerfile: "FROM busybox AS one\nRUN echo one > /f\nFROM busybox\nRUN exit 9\n",
			opts:       []berth.BuildOption{berth.WithTarget("one")},
			cmd:        "cat /f",
			want:       "one\n",
		},
		{
			// BuildKit makes WORKDIR's missing directories as the USER
			// (a name: its passwd uid and gid), even when no step uses them;
			// an existing one keeps its owner.
			name:       "workdir as user",
			dockerfile: "FROM busybox\nUSER user\nWORKDIR /made/by/user\nWORKDIR /tmp\nUSER 7:8\nWORKDIR /numeric\n",
			cmd:        "stat -c '%n %u:%g %a' /made /made/by/user /tmp /numeric",
			want:       "/made 1000:1000 755\n/made/by/user 1000:1000 755\n/tmp 0:0 1777\n/numeric 7:8 755\n",
		},
		{
			name:       "copy outside context",
			dockerfile: "FROM busybox\n\nCOPY ../x /x\n",
			wantErr:    "outside the build context",
			errLine:    3,
		},
		{
			name:       "failing run",
			dockerfile: "FROM busybox\nRUN echo doomed; exit 7\n",
			wantErr:    "exit code: 7",
			errLine:    2,
		},
		{
			name:       "dockerignore",
			dockerfile: "FROM busybox\nCOPY . /c/\n",
			files:      map[string]string{".dockerignore": "*.secret\nlogs\n", "a.secret": "s", "logs/x": "l", "keep": "k"},
			cmd:        "ls -A /c | tr '\\n' ' '",
			want:       ".dockerignore Dockerfile keep ",
		},
		{
			name:       "copy rules and flags",
			dockerfile: "FROM busybox\nCOPY --chown=7:8 --chmod=600 *.txt /t/\nCOPY one.txt /renamed\nCOPY d /dd\nADD arch.tar /ex/\n",
			files:      map[string]string{"one.txt": "1", "two.txt": "2", "d/sub/f": "f"},
			cmd:        "stat -c '%u:%g %a %n' /t/one.txt /t/two.txt; cat /renamed /dd/sub/f /ex/inner",
			want:       "7:8 600 /t/one.txt\n7:8 600 /t/two.txt\n1finner",
		},
		{
			name:       "metadata",
			dockerfile: "FROM busybox\nLABEL a=b\nEXPOSE 80/udp 81\nUSER 1:2\nVOLUME /data\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-c\"]\n",
			check: func(t *testing.T, img *berth.Image) {
				c := img.Config
				if c.Labels["a"] != "b" || c.User != "1:2" || c.StopSignal != "SIGINT" || len(c.ExposedPorts) != 2 || len(c.Volumes) != 1 || len(c.Shell) != 2 {
					t.Errorf("config = %+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"Dockerfile": tt.dockerfile}
			for k, v := range tt.files {
				files[k] = v
			}
			dir := berthtest.WriteFiles(t, files)
			if strings.Contains(tt.dockerfile, "arch.tar") {
				writeTarFile(t, filepath.Join(dir, "arch.tar"), "inner", "inner")
			}
			img, err := rt.Build(ctx, dir, tt.opts...)
			if tt.wantErr != "" {
				var be *berth.BuildError
				if !errors.As(err, &be) || !strings.Contains(err.Error(), tt.wantErr) || be.Line != tt.errLine {
					t.Fatalf("error = %v, want a BuildError on line %d containing %q", err, tt.errLine, tt.wantErr)
				}
				if strings.Contains(tt.dockerfile, "doomed") {
					var ee *berth.ExitError
					if !errors.As(err, &ee) || ee.Code != 7 || !strings.Contains(err.Error(), "doomed") {
						t.Errorf("failing RUN error %v lacks its exit code or output", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, img)
			}
			if tt.cmd != "" {
				var out bytes.Buffer
				c, err := rt.Run(ctx, img.ID, &berth.Process{Args: []string{"sh", "-c", tt.cmd}, Stdout: &out, Stderr: &out}, berth.WithEntrypoint(), berth.WithAutoRemove())
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Wait(ctx); err != nil {
					t.Fatalf("%v: %s", err, out.String())
				}
				if out.String() != tt.want {
					t.Errorf("output (-want +got):\n-%q\n+%q", tt.want, out.String())
				}
			}
		})
	}
}

func writeTarFile(t *testing.T, p, name, content string) {
	t.Helper()
	if err := os.WriteFile(p, tarOf(t, name, content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkBuild builds the case (a 5 MB context; FROM busybox,
// WORKDIR, COPY . ., a RUN writing two files, ENV, ENTRYPOINT) cold and
// fully cached.
func BenchmarkBuild(b *testing.B) {
	berthtest.Skip(b)
	rt := berthtest.NewRuntime(b)
	berthtest.Busybox(b, rt, "busybox")
	files := map[string]string{"Dockerfile": "FROM busybox\nWORKDIR /app\nCOPY . .\nRUN echo a > /a && echo b > /b\nENV A=1\nENTRYPOINT [\"cat\"]\n"}
	chunk := strings.Repeat("x", 1<<20)
	for i := range 5 {
		files[filepath.Join("data", string(rune('a'+i)))] = chunk
	}
	dir := berthtest.WriteFiles(b, files)
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			if _, err := rt.Build(ctx, dir, berth.WithNoCache()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := rt.Build(ctx, dir); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBuildImagesListing checks that a build's intermediate images are kept
// (the cache needs them) but not listed, while an untagged result lists as
// <none>, as docker images shows them.
func TestBuildImagesListing(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nRUN echo a > /a\nRUN echo b > /b\nCMD [\"cat\",\"/a\"]\n"), 0o644)
	ctx := context.Background()
	img, err := rt.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	imgs, _ := rt.Images(ctx)
	for _, i := range imgs {
		t.Logf("%s %v", i.ShortID(), i.RepoTags)
	}
	if len(imgs) != 2 {
		t.Errorf("images %d, want busybox and the untagged result", len(imgs))
	}
	if _, err := rt.Build(ctx, dir, berth.WithBuildTags("x:1")); err != nil {
		t.Fatal(err)
	}
	imgs, _ = rt.Images(ctx)
	if len(imgs) != 2 {
		t.Errorf("after tagging: %d images", len(imgs))
	}
	if imgs[0].ID != img.ID && imgs[1].ID != img.ID {
		t.Errorf("the built image %s is not listed", img.ShortID())
	}

	// The steps' images survive Prune (the cache holds them), and an
	// image removed by ID goes with its content, cache hold included.
	if _, err := rt.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Image(ctx, img.Digest); err != nil {
		t.Fatalf("the built image is gone after Prune: %v", err)
	}
	if _, err := rt.RemoveImage(ctx, img.ID, berth.WithForceRemove()); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Image(ctx, img.Digest); err == nil {
		t.Errorf("image %s still there after RemoveImage by ID and Prune", img.ShortID())
	}
	if err := rt.Check(ctx); err != nil {
		t.Errorf("Check after removal: %v", err)
	}
}

// TestBuildHealthcheck records HEALTHCHECK in the config as docker does,
// and HEALTHCHECK NONE as the "NONE" test.
func TestBuildHealthcheck(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	ctx := context.Background()
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- http://localhost/ || exit 1", []string{"CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"}},
		{`HEALTHCHECK CMD ["true"]`, []string{"CMD", "true"}},
		{"HEALTHCHECK NONE", []string{"NONE"}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			img, err := rt.Build(ctx, t.TempDir(), berth.WithDockerfileContent("FROM busybox\n"+tc.line+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			hc := img.Config.Healthcheck
			if hc == nil || strings.Join(hc.Test, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("Healthcheck = %+v, want test %q", hc, tc.want)
			}
			if strings.HasPrefix(tc.line, "HEALTHCHECK --interval") && (hc.Interval != 5*time.Second || hc.Retries != 2) {
				t.Errorf("interval %v retries %d, want 5s and 2", hc.Interval, hc.Retries)
			}
		})
	}
}

// TestBuildDockerfileIgnore checks BuildKit's rule that a
// <Dockerfile>.dockerignore beside the Dockerfile wins over the context's
// .dockerignore.
func TestBuildDockerfileIgnore(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	ctx := context.Background()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"a.txt": "a", "b.txt": "b",
		".dockerignore":               "a.txt\n",
		"app.Dockerfile":              "FROM busybox\nCOPY . /ctx/\nCMD [\"ls\", \"/ctx\"]\n",
		"app.Dockerfile.dockerignore": "b.txt\n*.Dockerfile*\n.dockerignore\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img, err := rt.Build(ctx, dir, berth.WithDockerfile("app.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runOut(t, rt, img.ID, &berth.Process{}, berth.WithAutoRemove())
	if err != nil || out != "a.txt\n" {
		t.Errorf("context seen by the build: %q, %v; want only a.txt (b.txt ignored by app.Dockerfile.dockerignore)", out, err)
	}
}

// TestBuildCopyIntoImageDirectory checks docker's rule that a COPY
// destination naming a directory of the image (no trailing slash) copies
// into it instead of replacing it.
func TestBuildCopyIntoImageDirectory(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\necho tool ran\n"), 0o755)
	img, err := rt.Build(context.Background(), dir, berth.WithDockerfileContent("FROM busybox\nCOPY tool /bin\nCMD [\"sh\", \"-c\", \"tool; ls /bin/sh\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runOut(t, rt, img.ID, &berth.Process{}, berth.WithAutoRemove())
	if err != nil || out != "tool ran\n/bin/sh\n" {
		t.Errorf("output %q, %v; want the tool copied into /bin beside sh", out, err)
	}
}

// imageFile is one path of an image's merged filesystem, as its layers
// (read from SaveLayout) leave it.
type imageFile struct {
	typ     byte
	mode    int64
	uid     int
	gid     int
	mtime   time.Time
	link    string
	content string
}

// imageTree reads the merged filesystem of ref through the public API:
// its layers are applied in order, whiteouts and opaque markers respected.
func imageTree(t *testing.T, rt *berth.Runtime, ref string) map[string]imageFile {
	t.Helper()
	dir := t.TempDir()
	if err := rt.SaveLayout(context.Background(), dir, ref); err != nil {
		t.Fatal(err)
	}
	blob := func(d string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", strings.Replace(d, ":", "/", 1)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, b)
	}
	var manifest struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	tree := map[string]imageFile{}
	for _, l := range manifest.Layers {
		var r io.Reader = bytes.NewReader(blob(l.Digest))
		if zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest))); err == nil {
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			name := "/" + strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+hdr.Name), "/"), "/")
			dir, base := path.Split(name)
			if base == ".wh..wh..opq" {
				for p := range tree {
					if strings.HasPrefix(p, dir) && p != strings.TrimSuffix(dir, "/") {
						delete(tree, p)
					}
				}
				continue
			}
			if strings.HasPrefix(base, ".wh.") {
				gone := dir + strings.TrimPrefix(base, ".wh.")
				for p := range tree {
					if p == gone || strings.HasPrefix(p, gone+"/") {
						delete(tree, p)
					}
				}
				continue
			}
			data, _ := io.ReadAll(tr)
			tree[name] = imageFile{typ: hdr.Typeflag, mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime, link: hdr.Linkname, content: string(data)}
		}
	}
	return tree
}

// buildIn builds dockerfile with the context files in rt and returns the
// image and its merged tree.
func buildIn(t *testing.T, rt *berth.Runtime, dockerfile string, files map[string]string, opts ...berth.BuildOption) (*berth.Image, map[string]imageFile) {
	t.Helper()
	all := map[string]string{"Dockerfile": dockerfile}
	maps.Copy(all, files)
	img, err := rt.Build(context.Background(), berthtest.WriteFiles(t, all), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img, imageTree(t, rt, img.ID)
}

// wantFiles checks the content of files of a tree; a "-" content means
// the path must be absent.
func wantFiles(t *testing.T, tree map[string]imageFile, want map[string]string) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		f, ok := tree[p]
		switch {
		case want[p] == "-" && ok:
			t.Errorf("%s is in the image (%+v), want it absent", p, f)
		case want[p] != "-" && !ok:
			t.Errorf("%s is missing from the image", p)
		case want[p] != "-" && f.content != want[p]:
			t.Errorf("%s (-want +got):\n-%q\n+%q", p, want[p], f.content)
		}
	}
}

func TestBuildHeredocs(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	_, tree := buildIn(t, rt, `FROM busybox
ARG X=ex
RUN <<EOF
echo one > /one
echo "two $X" >> /one
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /two
EOF
RUN cat <<A > /three && cat <<-B >> /three
a
A
	b
	B
COPY <<EOF /four
x=${X}
EOF
COPY <<'EOF' <<EOT /dir/
raw ${X}
EOF
cooked ${X}
EOT
`, nil)
	wantFiles(t, tree, map[string]string{
		"/one":       "one\ntwo ex\n",
		"/two":       "script /dev/pipes/EOF\n",
		"/three":     "a\nb\n",
		"/four":      "x=ex\n",
		"/dir/EOF":   "raw ${X}\n",
		"/dir/EOT":   "cooked ex\n",
		"/dev/pipes": "-",
	})
	if f := tree["/four"]; f.mode != 0o644 || f.uid != 0 {
		t.Errorf("/four mode %o uid %d, want 644 and root", f.mode, f.uid)
	}
}

// TestBuildBindMountContext: a bind mount of the context shows nothing
// .dockerignore excludes (BuildKit never sends it), whether named or
// reached through a link, and leaves the context's files as they were: a
// read-only bind links them in, and a chown of a link (even to the same
// owner) stripped the user's file of its file capabilities.
func TestBuildBindMountContext(t *testing.T) {
	rt := busyboxRuntime(t)
	ctxDir := berthtest.WriteFiles(t, map[string]string{
		".dockerignore": "secret.txt\nhidden\n",
		"secret.txt":    "s",
		"hidden/x":      "x",
		"app/f":         "f",
		"Dockerfile":    "FROM busybox\nRUN --mount=type=bind,target=/src cat /src/app/f > /out\nRUN --mount=type=bind,source=flink,target=/f cat /f > /out2\n",
	})
	for link, target := range map[string]string{"link": "hidden", "flink": "app/f"} {
		if err := os.Symlink(target, filepath.Join(ctxDir, link)); err != nil {
			t.Fatal(err)
		}
	}
	// A file capability (cap_net_raw, permitted and effective: struct
	// vfs_cap_data, revision 2) and a setuid bit, which a chown strips.
	f := filepath.Join(ctxDir, "app", "f")
	capability := []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := unix.Setxattr(f, "security.capability", capability, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(f, 0o4755); err != nil {
		t.Fatal(err)
	}
	img, err := rt.Build(context.Background(), ctxDir)
	if err != nil {
		t.Fatal(err)
	}
	// A link to a file binds the file.
	wantFiles(t, imageTree(t, rt, img.ID), map[string]string{"/out": "f", "/out2": "f"})
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(f, "security.capability", buf); err != nil || !bytes.Equal(buf[:n], capability) {
		t.Errorf("the build stripped the context file's capability: %x, %v", buf[:max(n, 0)], err)
	}
	if fi, err := os.Stat(f); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("the build changed the context file's mode: %v, %v", fi.Mode(), err)
	}
	for _, src := range []string{"secret.txt", "link", "hidden"} {
		df := "FROM busybox\nRUN --mount=type=bind,source=" + src + ",target=/s ls -R /s\n"
		_, err := rt.Build(context.Background(), ctxDir, berth.WithDockerfileContent(df))
		if !errors.Is(err, berth.ErrNotFound) {
			t.Errorf("bind of the excluded %s: %v, want ErrNotFound", src, err)
		}
	}
}

// TestBuildCacheMountKey: a RUN whose cache mount changes (another id, so
// another cache directory) runs again instead of reusing the step cached
// with the first; the command's text is the same.
func TestBuildCacheMountKey(t *testing.T) {
	rt := busyboxRuntime(t)
	buildIn(t, rt, "FROM busybox\nRUN --mount=type=cache,target=/c,id=one touch /c/marker\n", nil)
	for id, want := range map[string]string{"one": "marker\n", "two": ""} {
		df := "FROM busybox\nRUN --mount=type=cache,target=/c,id=" + id + " ls /c > /out\n"
		_, tree := buildIn(t, rt, df, nil)
		wantFiles(t, tree, map[string]string{"/out": want})
	}
}

// TestBuildCopyEmptyWildcard: a source with wildcards that matches nothing
// is skipped when another source of the COPY matched (COPY package.json
// yarn.loc[k] ./, as docker's builders take it); a COPY whose sources all
// match nothing fails, as docker's classic builder does.
func TestBuildCopyEmptyWildcard(t *testing.T) {
	rt := busyboxRuntime(t)
	_, tree := buildIn(t, rt, "FROM busybox\nCOPY a.txt b.tx[t] /dst/\n", map[string]string{"a.txt": "a"})
	wantFiles(t, tree, map[string]string{"/dst/a.txt": "a", "/dst/b.txt": "-"})
	_, err := rt.Build(context.Background(), berthtest.WriteFiles(t, map[string]string{"a.txt": "a"}), berth.WithDockerfileContent("FROM busybox\nCOPY nomatch* b.tx[t] /dst/\n"))
	if !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("COPY of wildcards that match nothing: %v, want ErrNotFound", err)
	}
}

// TestBuildProxyArgs: docker's predefined proxy ARGs given as build args
// reach a RUN without an ARG line, and are not in its cache key (another
// proxy finds the step cached) nor in the image's history.
func TestBuildProxyArgs(t *testing.T) {
	rt := busyboxRuntime(t)
	df := "FROM busybox\nRUN echo \"$HTTP_PROXY $no_proxy\" > /p\n"
	img, tree := buildIn(t, rt, df, nil, berth.WithBuildArgs(map[string]string{"HTTP_PROXY": "http://proxy.test:3128", "no_proxy": "localhost"}))
	wantFiles(t, tree, map[string]string{"/p": "http://proxy.test:3128 localhost\n"})
	again, _ := buildIn(t, rt, df, nil, berth.WithBuildArgs(map[string]string{"HTTP_PROXY": "http://other.test:8080"}))
	if again.ID != img.ID {
		t.Errorf("another proxy rebuilt the step: %s, then %s", img.ID, again.ID)
	}
	for _, h := range img.History {
		if strings.Contains(h.CreatedBy, "proxy.test") {
			t.Errorf("the proxy is in the history: %q", h.CreatedBy)
		}
	}
}

// TestBuildAddChownArchive: ADD --chown gives every entry of an archive it
// extracts that owner, as BuildKit does; without it the archive's owners
// stay.
func TestBuildAddChownArchive(t *testing.T) {
	rt := busyboxRuntime(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 1234, Gid: 1234})
	tw.WriteHeader(&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Uid: 1234, Gid: 1234})
	tw.Write([]byte("x"))
	tw.Close()
	files := map[string]string{"app.tar": buf.String()}
	for chown, want := range map[string]int{"": 1234, "--chown=7:8 ": 7} {
		_, tree := buildIn(t, rt, "FROM busybox\nADD "+chown+"app.tar /srv/\n", files)
		for _, p := range []string{"/srv/d", "/srv/d/f"} {
			if f, ok := tree[p]; !ok || f.uid != want || (want == 7 && f.gid != 8) {
				t.Errorf("ADD %sapp.tar: %s is %+v, want owner %d", chown, p, f, want)
			}
		}
	}
}

// TestBuildRunWaitsForPrune: a RUN writes the state it runs from as an
// image only under the gc lock: while a Prune holds it, no root of the
// build appears (one written without it could lose its manifest to the
// Prune and make every later Prune fail).
func TestBuildRunWaitsForPrune(t *testing.T) {
	rt := busyboxRuntime(t)
	roots := func() int {
		ents, _ := os.ReadDir(filepath.Join(rt.Root(), "roots"))
		return len(ents)
	}
	before := roots()
	release := berth.HoldGC(t, rt)
	built := make(chan error, 1)
	go func() {
		_, err := rt.Build(context.Background(), berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nENV A=1\nRUN true\n"}))
		built <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if n := roots(); n != before {
		t.Errorf("the build wrote %d roots while a Prune held the gc lock", n-before)
	}
	release()
	if err := <-built; err != nil {
		t.Fatal(err)
	}
}

// TestBuildOnbuildFromItself: an ONBUILD trigger whose --from names the
// stage that runs it is refused, as the Dockerfile's own are, instead of
// waiting for itself.
func TestBuildOnbuildFromItself(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := rt.Build(ctx, t.TempDir(), berth.WithBuildTags("selfbase:1"), berth.WithDockerfileContent("FROM busybox\nONBUILD COPY --from=app /bin/sh /x\n")); err != nil {
		t.Fatal(err)
	}
	_, err := rt.Build(ctx, t.TempDir(), berth.WithDockerfileContent("FROM selfbase:1 AS app\nRUN true\n"))
	if !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("a trigger copying from its own stage: %v, want ErrInvalid", err)
	}
}

func TestBuildRunMounts(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	secret := filepath.Join(t.TempDir(), "token")
	const secretValue = "s3cret-value-4d1f"
	if err := os.WriteFile(secret, []byte(secretValue), 0o644); err != nil {
		t.Fatal(err)
	}
	// The Dockerfile names the secret's hash only: its text is in the
	// image's history.
	secretSum := fmt.Sprintf("%x", sha256.Sum256([]byte(secretValue)))
	files := map[string]string{"ctx/f": "from context", "ctx/sub/g": "g"}
	dockerfile := `FROM busybox AS b
RUN echo staged > /x
FROM busybox
RUN --mount=type=cache,target=/cache,uid=7,mode=0700 \
    --mount=type=bind,source=ctx,target=/src \
    --mount=type=bind,from=b,source=/x,target=/opt/x \
    --mount=type=tmpfs,target=/t \
    echo x >> /cache/log && wc -l < /cache/log > /count && stat -c '%u %a' /cache > /cachestat && \
    cat /src/f /src/sub/g > /bound && (touch /src/new 2>/dev/null && echo rw || echo ro) > /bindro && \
    cat /opt/x > /fromstage && \
    grep ' /t tmpfs' /proc/mounts | cut -d' ' -f3 > /tm && echo junk > /t/junk
RUN --mount=type=bind,source=ctx,target=/w,rw echo changed > /w/f && cat /w/f > /rw
RUN --mount=type=secret,id=tok,mode=0440 \
    --mount=type=secret,id=tok,env=TOK,target=/etc/tok \
    --mount=type=secret,id=absent \
    stat -c %a /run/secrets/tok > /secmode && test "$(sha256sum < /run/secrets/tok | cut -c1-64)" = ` + secretSum + ` && \
    test "$(printf %s "$TOK" | sha256sum | cut -c1-64)" = ` + secretSum + ` && test -s /etc/tok && echo ok > /secenv && \
    echo skipped > /optional
`
	files["Dockerfile"] = dockerfile
	ctxDir := berthtest.WriteFiles(t, files)
	img, err := rt.Build(context.Background(), ctxDir, berth.WithBuildSecret("tok", secret))
	if err != nil {
		t.Fatal(err)
	}
	tree := imageTree(t, rt, img.ID)
	// A rw bind's writes are discarded, never written back.
	if b, _ := os.ReadFile(filepath.Join(ctxDir, "ctx", "f")); string(b) != "from context" {
		t.Errorf("a rw bind wrote to the context: %q", b)
	}
	wantFiles(t, tree, map[string]string{
		"/count":       "1\n",
		"/cachestat":   "7 700\n",
		"/bound":       "from contextg",
		"/bindro":      "ro\n",
		"/rw":          "changed\n",
		"/fromstage":   "staged\n",
		"/tm":          "tmpfs\n",
		"/secmode":     "440\n",
		"/secenv":      "ok\n",
		"/optional":    "skipped\n",
		"/cache":       "-", // mount targets leave no stubs
		"/src":         "-",
		"/w":           "-",
		"/opt":         "-",
		"/t":           "-",
		"/run/secrets": "-",
		"/etc/tok":     "-",
	})
	// The cache mount keeps its content across builds.
	_, tree2 := buildIn(t, rt, "FROM busybox\nRUN --mount=type=cache,target=/cache wc -l < /cache/log > /count2\n", nil)
	wantFiles(t, tree2, map[string]string{"/count2": "1\n"})
	// The secret is in no layer, config, cache record or leftover file of
	// the root.
	filepath.WalkDir(rt.Root(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(secretValue)) {
			t.Errorf("the secret is in %s", p)
		}
		return nil
	})
	if strings.Contains(strings.Join(img.Config.Env, " "), secretValue) {
		t.Errorf("the secret is in the config: %v", img.Config.Env)
	}
	// A required secret that was not given fails the step.
	_, err = rt.Build(context.Background(), t.TempDir(), berth.WithDockerfileContent("FROM busybox\nRUN --mount=type=secret,id=nope,required true\n"))
	var be *berth.BuildError
	if !errors.As(err, &be) || be.Line != 2 || !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("missing required secret: %v, want a BuildError on line 2 wrapping ErrNotFound", err)
	}
}

// TestBuildSourceDateEpoch builds one context in two roots with
// SOURCE_DATE_EPOCH and gets the same image digest: created times are the
// epoch and mtimes of new files are clamped to it.
func TestBuildSourceDateEpoch(t *testing.T) {
	berthtest.Skip(t)
	epoch := time.Unix(1600000000, 0).UTC()
	dir := berthtest.WriteFiles(t, map[string]string{
		"Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo made > /made && mkdir /d\nENV A=1\n",
		"f":          "content",
	})
	// The same base in both roots: an import stamps its own time.
	var base bytes.Buffer
	var ids []string
	for i, opt := range []berth.BuildOption{
		berth.WithSourceDateEpoch(epoch),
		berth.WithBuildArgs(map[string]string{"SOURCE_DATE_EPOCH": "1600000000"}),
	} {
		rt := berthtest.NewRuntime(t)
		if i == 0 {
			berthtest.Busybox(t, rt, "busybox")
			if err := rt.Save(context.Background(), &base, "busybox"); err != nil {
				t.Fatal(err)
			}
		} else if _, err := rt.Load(context.Background(), bytes.NewReader(base.Bytes())); err != nil {
			t.Fatal(err)
		}
		img, err := rt.Build(context.Background(), dir, opt)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, img.Digest)
		if !img.Created.Equal(epoch) {
			t.Errorf("build %d: created %v, want %v", i, img.Created, epoch)
		}
		for _, h := range img.History[len(img.History)-3:] {
			if !h.Created.Equal(epoch) {
				t.Errorf("build %d: history %q created %v, want %v", i, h.CreatedBy, h.Created, epoch)
			}
		}
		tree := imageTree(t, rt, img.ID)
		for _, p := range []string{"/f", "/made", "/d"} {
			if !tree[p].mtime.Equal(epoch) {
				t.Errorf("build %d: %s mtime %v, want %v", i, p, tree[p].mtime, epoch)
			}
		}
		if tree["/bin/sh"].mtime.Equal(epoch) {
			t.Errorf("build %d: the base image's files were clamped too", i)
		}
	}
	if ids[0] != ids[1] {
		t.Errorf("two builds with SOURCE_DATE_EPOCH: digests %s and %s differ", ids[0], ids[1])
	}
}

func TestBuildCopyFlags(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	berthtest.Busybox(t, rt, "other.example/tools:1")
	payload := []byte("downloaded payload\n")
	sum := fmt.Sprintf("%x", sha256.Sum256(payload))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.Write(payload)
	}))
	defer srv.Close()
	files := map[string]string{
		"f": "f", "a/b/c.txt": "c", "a/b/d.go": "d", "keep/x.txt": "x", "keep/y.log": "y", "keep/sub/z.log": "z",
	}
	_, tree := buildIn(t, rt, `FROM busybox
RUN echo 'app:x:1234:2345::/:/bin/sh' >> /etc/passwd && echo 'grp:x:555:' >> /etc/group && mkdir /real && ln -s /real /link
COPY --from=other.example/tools:1 /bin/busybox /bb
COPY --chown=app:grp f /named
COPY --chown=app f /user-only
COPY f /link/
COPY --link f /linked
COPY --exclude=*.log --exclude=**/z.log keep /kept/
COPY --parents a/b/c.txt /p/
COPY --parents ./a/./b/d.go /q/
ADD --checksum=sha256:`+sum+` `+srv.URL+`/dir/file.bin /dl/
ADD `+srv.URL+`/other /named-dl
`, files)
	wantFiles(t, tree, map[string]string{
		"/named": "f", "/user-only": "f", "/real/f": "f", "/linked": "f",
		"/kept/x.txt": "x", "/kept/y.log": "-", "/kept/sub/z.log": "-",
		"/p/a/b/c.txt": "c", "/q/b/d.go": "d",
		"/dl/file.bin": string(payload), "/named-dl": string(payload),
	})
	if f := tree["/bb"]; f.typ != tar.TypeReg || len(f.content) < 100000 {
		t.Errorf("COPY --from=image: /bb = %v, %d bytes", f.typ, len(f.content))
	}
	if f := tree["/named"]; f.uid != 1234 || f.gid != 555 {
		t.Errorf("--chown=app:grp: %d:%d, want 1234:555", f.uid, f.gid)
	}
	if f := tree["/user-only"]; f.uid != 1234 || f.gid != 1234 {
		t.Errorf("--chown=app: %d:%d, want 1234:1234 (docker: a user alone gives its id as the group)", f.uid, f.gid)
	}
	if f := tree["/link"]; f.typ != tar.TypeSymlink {
		t.Errorf("COPY into a symlinked directory replaced the link: %+v", f)
	}
	if f := tree["/dl/file.bin"]; f.mode != 0o600 || f.mtime.Unix() != 1136214245 {
		t.Errorf("ADD URL: mode %o mtime %v, want 600 and Last-Modified", f.mode, f.mtime)
	}
	for _, tc := range []struct{ line, want string }{
		{"ADD --checksum=sha256:" + strings.Repeat("0", 64) + " " + srv.URL + "/x /x", "checksum mismatch"},
		{"COPY --chown=nobody-here f /f", "unable to find user nobody-here"},
		{"ADD --checksum=sha256:" + sum + " f /f", "only to URL sources"},
	} {
		_, err := rt.Build(context.Background(), berthtest.WriteFiles(t, map[string]string{"f": "f"}), berth.WithDockerfileContent("FROM busybox\n"+tc.line+"\n"))
		var be *berth.BuildError
		if !errors.As(err, &be) || be.Line != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want a BuildError on line 2 containing %q", tc.line, err, tc.want)
		}
	}
}

// TestBuildOnbuildAndPlatformArgs checks that ONBUILD triggers are
// recorded, run in the image that uses the base and cleared there, and
// that the predefined platform ARGs are there to declare.
func TestBuildOnbuildAndPlatformArgs(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	ctx := context.Background()
	base, err := rt.Build(ctx, t.TempDir(), berth.WithBuildTags("base:1"), berth.WithDockerfileContent("FROM busybox\nONBUILD RUN echo triggered > /trig\nONBUILD ENV FROM_TRIGGER=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"RUN echo triggered > /trig", "ENV FROM_TRIGGER=1"}; !slices.Equal(base.Config.OnBuild, want) {
		t.Errorf("OnBuild = %q, want %q", base.Config.OnBuild, want)
	}
	img, tree := buildIn(t, rt, `ARG BASE=base:1
FROM --platform=$BUILDPLATFORM $BASE
ARG TARGETOS TARGETARCH TARGETPLATFORM
RUN echo "$TARGETOS $TARGETARCH $TARGETPLATFORM" > /platform
`, nil)
	wantFiles(t, tree, map[string]string{
		"/trig":     "triggered\n",
		"/platform": fmt.Sprintf("linux %s linux/%s\n", runtime.GOARCH, runtime.GOARCH),
	})
	if len(img.Config.OnBuild) != 0 || !slices.Contains(img.Config.Env, "FROM_TRIGGER=1") {
		t.Errorf("child config: OnBuild %q (want none), Env %q", img.Config.OnBuild, img.Config.Env)
	}
}

// TestBuildParallelStages proves that independent stages build at the same
// time: each waits, through a shared cache mount, for a file the other
// writes, which only concurrent builds can satisfy. The stage the target
// does not need is never built.
func TestBuildParallelStages(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	wait := func(f string) string {
		return "for i in $(seq 100); do test -e /s/" + f + " && break; sleep 0.05; done; test -e /s/" + f
	}
	var rec buildRecorder
	_, tree := buildIn(t, rt, `FROM busybox AS one
RUN --mount=type=cache,id=rendezvous,target=/s touch /s/one && `+wait("two")+` && echo one > /one
FROM busybox AS two
RUN --mount=type=cache,id=rendezvous,target=/s touch /s/two && `+wait("one")+` && echo two > /two
FROM busybox AS unused
RUN exit 3
FROM busybox
COPY --from=one /one /
COPY --from=two /two /
`, nil, berth.WithBuildProgress(rec.record))
	wantFiles(t, tree, map[string]string{"/one": "one\n", "/two": "two\n"})
	for _, ev := range rec.events {
		if ev.Stage == "unused" {
			t.Errorf("the unused stage was built: %+v", ev)
		}
	}
}

// TestBuildRunNetwork checks RUN --network: none has only loopback, host
// sees the host's links.
func TestBuildRunNetwork(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	hostLinks, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	var hostLink string
	for _, l := range strings.Split(string(hostLinks), "\n")[2:] {
		if name, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && name != "lo" {
			hostLink = name
			break
		}
	}
	if hostLink == "" {
		t.Skip("the host has no link but loopback to look for")
	}
	links := "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort"
	_, tree := buildIn(t, rt, "FROM busybox\nRUN --network=none "+links+" > /none\nRUN --network=host "+links+" > /host\n", nil)
	wantFiles(t, tree, map[string]string{"/none": "lo\n"})
	if !slices.Contains(strings.Fields(tree["/host"].content), hostLink) {
		t.Errorf("RUN --network=host sees %q, want the host's %s among them", tree["/host"].content, hostLink)
	}
}

// TestBuildCopySymlinkSourceStaysInContext checks that a COPY source that
// is a symlink is followed as BuildKit follows it, scoped to the context:
// an absolute target or one climbing with ".." resolves inside the context
// and never reaches the host's files; a link to nothing is an error.
func TestBuildCopySymlinkSourceStaysInContext(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	ctx := context.Background()
	dir := berthtest.WriteFiles(t, map[string]string{"etc/hostname": "from the context\n", "sub/x": "x\n"})
	for link, target := range map[string]string{
		"abs":     "/etc/hostname",                  // the context's etc/hostname, not the host's
		"climb":   "../../../../../../etc/hostname", // stops at the context root
		"dirlink": "sub/../etc",
		"dangles": "/no/such/file",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	img, err := rt.Build(ctx, dir, berth.WithDockerfileContent("FROM busybox\nCOPY abs /abs\nCOPY climb /climb\nCOPY dirlink /d/\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runOut(t, rt, img.ID, &berth.Process{Args: []string{"sh", "-c", "cat /abs /climb /d/hostname; test -L /abs || echo file"}}, berth.WithEntrypoint(), berth.WithAutoRemove())
	if want := "from the context\nfrom the context\nfrom the context\nfile\n"; err != nil || out != want {
		t.Errorf("followed sources: %q, %v; want %q", out, err, want)
	}
	_, err = rt.Build(ctx, dir, berth.WithDockerfileContent("FROM busybox\nCOPY dangles /x\n"))
	var be *berth.BuildError
	if !errors.As(err, &be) || be.Line != 2 || !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("COPY of a dangling link: %v; want a *BuildError on line 2 wrapping ErrNotFound", err)
	}
}

// TestBuildStepsNotListed: while a build's RUN runs, its container exists
// but Containers does not list it, so removing every listed container
// leaves the build alone.
func TestBuildStepsNotListed(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo started; sleep 1; echo done > /done\n"})
	started := make(chan struct{}, 1)
	built := make(chan error, 1)
	go func() {
		_, err := rt.Build(ctx, dir, berth.WithNoCache(), berth.WithBuildTags("steps:1"), berth.WithBuildProgress(func(ev berth.BuildEvent) {
			if ev.Output == "started" {
				started <- struct{}{}
			}
		}))
		built <- err
	}()
	select {
	case <-started:
	case err := <-built:
		t.Fatalf("the build ended before its RUN printed: %v", err)
	}
	ents, err := os.ReadDir(filepath.Join(rt.Root(), "containers"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("containers/ during the RUN: %d entries, %v; want the step's", len(ents), err)
	}
	infos, err := rt.Containers(ctx, berth.WithAll())
	if err != nil || len(infos) != 0 {
		t.Fatalf("Containers(WithAll) during a build's RUN: %d, %v; want none", len(infos), err)
	}
	if err := <-built; err != nil {
		t.Fatalf("the build: %v", err)
	}
	if got := runOutput(t, rt, "steps:1", "cat", "/done"); got != "done\n" {
		t.Errorf("the built image: %q", got)
	}
}
