package berth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// randomDockerfile's RUN writes random bytes: a step taken from a cache
// gives the exporting build's image digest, a step run again another.
const randomDockerfile = `FROM busybox
COPY f /f
RUN head -c 16 /dev/urandom | od -x > /random
ENV X=1
WORKDIR /w
RUN echo $X > x
CMD ["cat", "/random"]
`

// shareImage copies ref from one root into another (a save and a load):
// both then have the same image ID, which build cache keys begin with.
func shareImage(t *testing.T, from, to *berth.Runtime, ref string) {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	if err := from.Save(ctx, &buf, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := to.Load(ctx, &buf); err != nil {
		t.Fatal(err)
	}
}

// twoRoots makes two roots with the same busybox image (same ID: build
// cache keys begin with it), as two machines would pull it.
func twoRoots(t *testing.T) (a, b *berth.Runtime) {
	t.Helper()
	a = busyboxRuntime(t)
	b = berthtest.NewRuntime(t)
	shareImage(t, a, b, "busybox")
	return a, b
}

// steps sorts the steps that make a layer (the ones the cache holds) by
// whether a build's events showed them cached, and returns its warnings.
func (r *buildRecorder) steps() (cached, built []string, warnings []string) {
	layered := func(instr string) bool {
		for _, p := range []string{"RUN ", "COPY ", "ADD ", "WORKDIR "} {
			if strings.HasPrefix(instr, p) {
				return true
			}
		}
		return false
	}
	for _, ev := range r.events {
		switch {
		case ev.Warning != "":
			warnings = append(warnings, ev.Warning)
		case ev.Output != "" || !layered(ev.Instruction):
		case ev.Cached:
			cached = append(cached, ev.Instruction)
		default:
			built = append(built, ev.Instruction)
		}
	}
	return cached, built, warnings
}

// TestBuildCacheDir checks docker build --cache-to/--cache-from
// type=local between two roots: the second, with none of the first's
// steps, takes every step from the exported directory and gets the very
// same image, which runs; its own cache then has the steps.
func TestBuildCacheDir(t *testing.T) {
	ctx := context.Background()
	a, b := twoRoots(t)
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": randomDockerfile, "f": "file"})
	cache := filepath.Join(t.TempDir(), "cache")
	built, err := a.Build(ctx, dir, berth.WithCacheToDir(cache, berth.CacheModeMin))
	if err != nil {
		t.Fatal(err)
	}
	var rec buildRecorder
	got, err := b.Build(ctx, dir, berth.WithCacheFromDir(cache), berth.WithBuildProgress(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	cached, rebuilt, warnings := rec.steps()
	if len(rebuilt) > 0 || len(warnings) > 0 || len(cached) != 4 {
		t.Errorf("importing build: cached %q, built %q, warnings %q; want the 4 steps cached", cached, rebuilt, warnings)
	}
	if got.Digest != built.Digest {
		t.Errorf("imported build gave %s, the exporting one %s", got.Digest, built.Digest)
	}
	var out bytes.Buffer
	c, err := b.Run(ctx, got.ID, &berth.Process{Stdout: &out}, berth.WithAutoRemove(), berth.WithNetworkMode("none"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if want := imageTree(t, a, built.ID)["/random"].content; out.String() != want || want == "" {
		t.Errorf("the imported image's /random: %q, want %q", out.String(), want)
	}
	// The entries are the second root's own now: no source needed.
	rec = buildRecorder{}
	again, err := b.Build(ctx, dir, berth.WithBuildProgress(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	if cached, rebuilt, _ := rec.steps(); len(rebuilt) > 0 || again.Digest != built.Digest {
		t.Errorf("after the import, without the source: built %q (cached %q), image %s, want %s", rebuilt, cached, again.Digest, built.Digest)
	}
	if err := b.Check(ctx); err != nil {
		t.Errorf("store after the import: %v", err)
	}
	// WithNoCache reads no source: not even a missing one is looked at.
	rec = buildRecorder{}
	if _, err := b.Build(ctx, dir, berth.WithCacheFromDir(cache), berth.WithCacheFromDir(filepath.Join(t.TempDir(), "none")), berth.WithNoCache(), berth.WithBuildProgress(rec.record)); err != nil {
		t.Fatal(err)
	}
	if cached, _, warnings := rec.steps(); len(cached) > 0 || len(warnings) > 0 {
		t.Errorf("WithNoCache took %q from the cache, warned %q", cached, warnings)
	}
	// An export that fails fails the build, which still gives its image.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := b.Build(ctx, dir, berth.WithCacheToDir(notDir, ""))
	if img == nil || err == nil || !strings.Contains(err.Error(), "exporting the build cache to "+notDir) {
		t.Errorf("export into a file: %v, %v; want the image and an error naming the export", img, err)
	}
}

// TestBuildCacheKeysPortable checks what makes keys the same between
// machines and what keeps them apart: the owner of a context file a RUN
// binds is not in the key (hashed as root's, as BuildKit receives a
// context; the checkout's file is left as it is), and SOURCE_DATE_EPOCH is
// (a reproducible build takes no step made without it).
func TestBuildCacheKeysPortable(t *testing.T) {
	ctx := context.Background()
	a, b := twoRoots(t)
	df := "FROM busybox\nRUN --mount=type=bind,source=f,target=/m/f stat -c %u:%g /m/f > /owner && head -c 8 /dev/urandom | od -x > /r\n"
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": df, "f": "data"})
	if err := os.Chown(filepath.Join(dir, "f"), 1234, 1234); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	built, err := a.Build(ctx, dir, berth.WithCacheToDir(cache, ""))
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "f"), &st); err != nil || st.Uid != 1234 {
		t.Errorf("the context file after the build: owner %d, %v; want it untouched (1234)", st.Uid, err)
	}
	// Another checkout, by another user.
	if err := os.Chown(filepath.Join(dir, "f"), 0, 0); err != nil {
		t.Fatal(err)
	}
	var rec buildRecorder
	got, err := b.Build(ctx, dir, berth.WithCacheFromDir(cache), berth.WithBuildProgress(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	if cached, rebuilt, warnings := rec.steps(); len(cached) != 1 || got.Digest != built.Digest {
		t.Errorf("the other owner's build: cached %q, built %q, warnings %q, image %s; want the RUN cached and %s", cached, rebuilt, warnings, got.Digest, built.Digest)
	}
	rec = buildRecorder{}
	if _, err := a.Build(ctx, dir, berth.WithSourceDateEpoch(time.Unix(1700000000, 0)), berth.WithBuildProgress(rec.record)); err != nil {
		t.Fatal(err)
	}
	if cached, _, _ := rec.steps(); len(cached) > 0 {
		t.Errorf("a build with SOURCE_DATE_EPOCH took %q from a cache made without", cached)
	}
}

// TestBuildCacheModes checks what an export holds: the built image's steps
// (CacheModeMin, BuildKit's mode=min), or every stage's (CacheModeMax),
// with which a builder stage's output is the same elsewhere.
func TestBuildCacheModes(t *testing.T) {
	ctx := context.Background()
	a := busyboxRuntime(t)
	df := "FROM busybox AS builder\nRUN true\nRUN head -c 16 /dev/urandom | od -x > /artifact && echo more > /more\nFROM busybox\nCOPY --from=builder /artifact /artifact\nRUN cat /artifact > /copy\n"
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": df})
	minDir, maxDir := filepath.Join(t.TempDir(), "min"), filepath.Join(t.TempDir(), "max")
	built, err := a.Build(ctx, dir, berth.WithCacheToDir(minDir, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Build(ctx, dir, berth.WithCacheToDir(maxDir, berth.CacheModeMax)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir        string
		wantCached int
	}{{minDir, 0}, {maxDir, 4}} {
		t.Run(filepath.Base(tc.dir), func(t *testing.T) {
			b := berthtest.NewRuntime(t)
			shareImage(t, a, b, "busybox")
			var rec buildRecorder
			got, err := b.Build(ctx, dir, berth.WithCacheFromDir(tc.dir), berth.WithBuildProgress(rec.record))
			if err != nil {
				t.Fatal(err)
			}
			cached, rebuilt, warnings := rec.steps()
			if len(cached) != tc.wantCached || len(warnings) > 0 {
				t.Errorf("cached %q, built %q, warnings %q; want %d cached", cached, rebuilt, warnings, tc.wantCached)
			}
			if same := got.Digest == built.Digest; same != (tc.wantCached == 4) {
				t.Errorf("image %s, the exporting build's %s", got.Digest, built.Digest)
			}
		})
	}
	// The min export lists the final stage's two steps; max adds the
	// builder's RUNs (its RUN true has the built image's layers, not its
	// history: min leaves it out).
	for dir, want := range map[string]int{minDir: 2, maxDir: 4} {
		if n := len(cacheIndex(t, dir).Manifests); n != want {
			t.Errorf("%s: %d entries, want %d", filepath.Base(dir), n, want)
		}
	}
}

type ociIndex struct {
	MediaType   string            `json:"mediaType"`
	Annotations map[string]string `json:"annotations"`
	Manifests   []struct {
		Digest      string            `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

func cacheIndex(t *testing.T, dir string) ociIndex {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ociIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// TestBuildCacheRegistry checks --cache-to/--cache-from type=registry
// through a real registry: pushed by one root, used by another.
func TestBuildCacheRegistry(t *testing.T) {
	berthtest.Skip(t)
	reg := berthtest.StartRegistry(t)
	ctx := context.Background()
	a, b := twoRoots(t)
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": randomDockerfile, "f": "file"})
	ref := reg.Host + "/ci/app:buildcache"
	built, err := a.Build(ctx, dir, berth.WithCacheToRegistry(ref, berth.CacheModeMin))
	if err != nil {
		t.Fatal(err)
	}
	var rec buildRecorder
	got, err := b.Build(ctx, dir, berth.WithCacheFromRegistry(ref), berth.WithBuildProgress(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	if cached, rebuilt, warnings := rec.steps(); len(rebuilt) > 0 || len(warnings) > 0 || got.Digest != built.Digest {
		t.Errorf("cached %q, built %q, warnings %q, image %s; want every step cached and %s", cached, rebuilt, warnings, got.Digest, built.Digest)
	}
	// A tag with no cache yet (a pipeline's first build): a warning.
	rec = buildRecorder{}
	c := berthtest.NewRuntime(t)
	shareImage(t, a, c, "busybox")
	if _, err := c.Build(ctx, dir, berth.WithCacheFromRegistry(reg.Host+"/ci/app:none"), berth.WithBuildProgress(rec.record)); err != nil {
		t.Fatal(err)
	}
	if cached, _, warnings := rec.steps(); len(cached) > 0 || len(warnings) != 1 || !strings.Contains(warnings[0], "/ci/app:none") {
		t.Errorf("from a missing tag: cached %q, warnings %q; want nothing cached and one warning naming the tag", cached, warnings)
	}
	// An export needs a tag; refused before anything is built.
	rec = buildRecorder{}
	_, err = a.Build(ctx, dir, berth.WithCacheToRegistry(reg.Host+"/ci/app@sha256:"+strings.Repeat("a", 64), ""), berth.WithBuildProgress(rec.record))
	if !errors.Is(err, berth.ErrInvalid) || len(rec.events) > 0 {
		t.Errorf("export to a digest: %v after %d events, want ErrInvalid before any step", err, len(rec.events))
	}
}

// TestBuildCacheSourceProblems checks that a cache source that cannot be
// used costs the build nothing but the cache: missing, not a berth cache,
// a tampered blob, a blob linked out of the directory, FIFOs. Each is a
// warning naming the source; the steps run, and the store stays
// consistent.
func TestBuildCacheSourceProblems(t *testing.T) {
	ctx := context.Background()
	a := busyboxRuntime(t)
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": randomDockerfile, "f": "file"})
	good := filepath.Join(t.TempDir(), "cache")
	if _, err := a.Build(ctx, dir, berth.WithCacheToDir(good, berth.CacheModeMin)); err != nil {
		t.Fatal(err)
	}
	// The last RUN's layer: the top one of the entries with most layers
	// (that RUN's and the final image's).
	idx := cacheIndex(t, good)
	var lastLayer, fewest string
	var tops []string // the manifests of the entries with the last layer
	most := 0
	for _, m := range idx.Manifests {
		raw, err := os.ReadFile(filepath.Join(good, "blobs", "sha256", strings.TrimPrefix(m.Digest, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		var man struct{ Layers []struct{ Digest string } }
		if err := json.Unmarshal(raw, &man); err != nil {
			t.Fatal(err)
		}
		if n := len(man.Layers); n > most {
			most, lastLayer, tops = n, strings.TrimPrefix(man.Layers[n-1].Digest, "sha256:"), nil
		}
		if len(man.Layers) == most {
			tops = append(tops, strings.TrimPrefix(m.Digest, "sha256:"))
		}
		if len(man.Layers) == 2 {
			fewest = strings.TrimPrefix(m.Digest, "sha256:")
		}
	}
	if lastLayer == "" {
		t.Fatal("no entry of the export has the last RUN's layer")
	}
	copyCache := func(t *testing.T, change func(dir string)) string {
		d := filepath.Join(t.TempDir(), "cache")
		if err := os.CopyFS(d, os.DirFS(good)); err != nil {
			t.Fatal(err)
		}
		change(d)
		return d
	}
	notCache := t.TempDir()
	if err := a.SaveLayout(ctx, notCache, "busybox"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		dir        func(t *testing.T) string
		wantCached int
		wantWarn   string
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, 0, "no such file"},
		{"not a cache", func(t *testing.T) string { return notCache }, 0, "not a berth build cache"},
		{"tampered layer", func(t *testing.T) string {
			return copyCache(t, func(d string) {
				if err := os.WriteFile(filepath.Join(d, "blobs", "sha256", lastLayer), []byte("tampered"), 0o644); err != nil {
					t.Fatal(err)
				}
			})
		}, 3, "not imported"},
		{"manifest swapped", func(t *testing.T) string {
			// Valid manifests, of another step: only their digests
			// tell.
			return copyCache(t, func(d string) {
				other, err := os.ReadFile(filepath.Join(d, "blobs", "sha256", fewest))
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range tops {
					if err := os.WriteFile(filepath.Join(d, "blobs", "sha256", h), other, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			})
		}, 3, "does not match its digest"},
		{"layer linked out", func(t *testing.T) string {
			// The right blob, outside: followed, it would import.
			return copyCache(t, func(d string) {
				p := filepath.Join(d, "blobs", "sha256", lastLayer)
				out := filepath.Join(t.TempDir(), "blob")
				if err := os.Rename(p, out); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(out, p); err != nil {
					t.Fatal(err)
				}
			})
		}, 3, "not imported"},
		{"layer a fifo", func(t *testing.T) string {
			// Opened blocking, it would hang the build for good.
			return copyCache(t, func(d string) {
				p := filepath.Join(d, "blobs", "sha256", lastLayer)
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mkfifo(p, 0o644); err != nil {
					t.Fatal(err)
				}
			})
		}, 3, "not a regular file"},
		{"index a fifo", func(t *testing.T) string {
			return copyCache(t, func(d string) {
				p := filepath.Join(d, "index.json")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mkfifo(p, 0o644); err != nil {
					t.Fatal(err)
				}
			})
		}, 0, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := berthtest.NewRuntime(t)
			shareImage(t, a, b, "busybox")
			src := tc.dir(t)
			var rec buildRecorder
			done := make(chan error, 1)
			go func() {
				_, err := b.Build(ctx, dir, berth.WithCacheFromDir(src), berth.WithBuildProgress(rec.record))
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the build failed with its cache source: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the build still runs after a minute")
			}
			cached, built, warnings := rec.steps()
			if len(cached) != tc.wantCached || len(cached)+len(built) != 4 {
				t.Errorf("cached %q, built %q; want %d cached of 4", cached, built, tc.wantCached)
			}
			// (A tampered entry warns twice: the last RUN's, and the
			// final image's, which holds the same layer.)
			if len(warnings) == 0 {
				t.Errorf("no warning, want one naming %s and saying %q", src, tc.wantWarn)
			}
			for _, w := range warnings {
				if !strings.Contains(w, src) || !strings.Contains(w, tc.wantWarn) {
					t.Errorf("warning %q, want it naming %s and saying %q", w, src, tc.wantWarn)
				}
			}
			if err := b.Check(ctx); err != nil {
				t.Errorf("store: %v", err)
			}
		})
	}
}
