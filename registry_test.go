package berth_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tarOf builds a layer tar from name → content ("dir/" names are
// directories, "name -> target" are symlinks).
func tarOf(tb testing.TB, entries ...string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(entries); i += 2 {
		n, content := entries[i], entries[i+1]
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(content))}
		switch {
		case strings.HasSuffix(n, "/"):
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case strings.HasPrefix(content, "-> "):
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, content[3:], 0
		case strings.HasPrefix(content, "=> "):
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, content[3:], 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(content))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func layerOf(tb testing.TB, c compression.Compression, tarBytes []byte) v1.Layer {
	tb.Helper()
	if c == compression.None {
		return static.NewLayer(tarBytes, types.OCIUncompressedLayer)
	}
	opts := []tarball.LayerOption{tarball.WithCompression(c)}
	if c == compression.ZStd {
		opts = append(opts, tarball.WithMediaType(types.OCILayerZStd))
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil }, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func imageOf(tb testing.TB, oci bool, layers ...v1.Layer) v1.Image {
	tb.Helper()
	base := emptyImage()
	if oci {
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// fakeRegistry is go-containerregistry's in-process registry behind a
// middleware that tests use to misbehave on purpose.
type fakeRegistry struct {
	*httptest.Server
	host   string
	mangle atomic.Pointer[func(w http.ResponseWriter, r *http.Request, next http.Handler) bool]
	blobs  atomic.Int64
}

func startFake(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{}
	inner := registry.New(registry.Logger(nopLogger()))
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			f.blobs.Add(1)
		}
		if m := f.mangle.Load(); m != nil && (*m)(w, r, inner) {
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	u, _ := url.Parse(f.URL)
	f.host = u.Host
	return f
}

func (f *fakeRegistry) misbehave(fn func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) {
	f.mangle.Store(&fn)
}

func (f *fakeRegistry) push(t *testing.T, repo string, img v1.Image) string {
	t.Helper()
	ref := f.host + "/" + repo
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// assertEmptyStore checks that a failed pull registered nothing and left a
// consistent store.
func assertEmptyStore(t *testing.T, rt *berth.Runtime) {
	t.Helper()
	ctx := context.Background()
	imgs, err := rt.Images(ctx)
	if err != nil || len(imgs) != 0 {
		t.Errorf("after a failed pull: images %v, %v; want none", imgs, err)
	}
	if err := rt.Check(ctx); err != nil {
		t.Errorf("Check after a failed pull: %v", err)
	}
	dir := filepath.Join(rt.Root(), "snapshots")
	snaps, _ := os.ReadDir(dir)
	tmp, _ := os.ReadDir(filepath.Join(dir, ".tmp")) // unpacks under way
	for _, s := range append(snaps, tmp...) {
		if s.Name() != ".tmp" && s.Name() != ".legacy-swept" {
			t.Errorf("snapshot %s left after a failed pull", s.Name())
		}
	}
}

func TestPullFormats(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := startFake(t)
	base := tarOf(t, "etc/", "", "etc/os-release", "berth test\n", "bin/", "", "bin/sh", "#!/bin/false\n")
	top := tarOf(t, "etc/.wh.os-release", "", "data/", "", "data/x", "layer two\n")
	for _, tc := range []struct {
		name string
		oci  bool
		comp compression.Compression
	}{
		{"docker-gzip", false, compression.GZip},
		{"oci-gzip", true, compression.GZip},
		{"oci-zstd", true, compression.ZStd},
		{"oci-uncompressed", true, compression.None},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := imageOf(t, tc.oci, layerOf(t, tc.comp, base), layerOf(t, tc.comp, top))
			ref := reg.push(t, "formats/"+tc.name+":1", img)
			rt := berthtest.NewRuntime(t)
			got, err := rt.Pull(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := img.Digest()
			if got.Digest != want.String() {
				t.Errorf("digest %s, want %s", got.Digest, want)
			}
			if len(got.Layers) != 2 {
				t.Fatalf("layers %+v", got.Layers)
			}
			// The top layer's whiteout is stored in overlay form.
			fs := filepath.Join(rt.Root(), "snapshots", strings.TrimPrefix(got.Layers[1].ChainID, "sha256:"), "fs")
			fi, err := os.Lstat(filepath.Join(fs, "etc", "os-release"))
			if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
				t.Errorf("whiteout not converted to an overlay whiteout: %v %v", fi, err)
			}
			b, err := os.ReadFile(filepath.Join(fs, "data", "x"))
			if err != nil || string(b) != "layer two\n" {
				t.Errorf("data/x = %q, %v", b, err)
			}
			if err := rt.Check(ctx); err != nil {
				t.Error(err)
			}
			// A second pull fetches nothing.
			before := reg.blobs.Load()
			var cached int
			if _, err := rt.Pull(ctx, ref, berth.WithProgress(func(p berth.Progress) {
				if p.Cached {
					cached++
				}
			})); err != nil {
				t.Fatal(err)
			}
			if n := reg.blobs.Load() - before; n != 0 || cached != 2 {
				t.Errorf("second pull fetched %d blobs and reported %d cached layers; want 0 and 2", n, cached)
			}
		})
	}
}

func TestPullPlatformIndex(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := startFake(t)
	amd := imageOf(t, true, layerOf(t, compression.GZip, tarOf(t, "arch", "amd64")))
	armCfg, _ := imageOf(t, true, layerOf(t, compression.GZip, tarOf(t, "arch", "arm64"))).ConfigFile()
	armCfg = armCfg.DeepCopy()
	armCfg.Architecture = "arm64"
	arm, _ := mutate.ConfigFile(imageOf(t, true, layerOf(t, compression.GZip, tarOf(t, "arch", "arm64"))), armCfg)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	r, _ := name.ParseReference(reg.host + "/multi:1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	rt := berthtest.NewRuntime(t)
	got, err := rt.Pull(ctx, r.String(), berth.WithPlatform("linux/arm64"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Architecture != "arm64" {
		t.Errorf("WithPlatform(linux/arm64) pulled %s", got.Architecture)
	}
	if _, err := rt.Pull(ctx, r.String(), berth.WithPlatform("linux/s390x")); !errors.Is(err, berth.ErrNotFound) || !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("pull for an absent platform: %v; want ErrNotFound listing what the index has", err)
	}
	// One pull event, docker's: the reference as its ID, the repository
	// as its name; the failed pull records none.
	var pulls []string
	rt.Events(ctx, func(ev berth.Event) error {
		if ev.Type == "image" {
			pulls = append(pulls, ev.Action+" "+ev.ID+" "+ev.Attributes["name"])
		}
		return nil
	}, berth.WithEventsUntil(time.Now()))
	if want := "pull " + reg.host + "/multi:1 " + reg.host + "/multi"; len(pulls) != 1 || pulls[0] != want {
		t.Errorf("image events: %q, want [%q]", pulls, want)
	}
	if os.Getenv("GOARCH") == "" && got.Digest != "" {
		def, err := rt.Pull(ctx, r.String())
		if err != nil {
			t.Fatal(err)
		}
		want, _ := amd.Digest()
		if def.Digest != want.String() {
			t.Errorf("default platform pulled %s (%s), want the amd64 image", def.Digest, def.Architecture)
		}
	}
}

// TestPullHostileRegistry pulls from a registry that misbehaves in one way
// per case. Each pull must fail with a clear error and register nothing.
func TestPullHostileRegistry(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	layer := layerOf(t, compression.GZip, tarOf(t, "hello", strings.Repeat("hello world\n", 5000)))
	img := imageOf(t, true, layer)
	layerDigest, _ := layer.Digest()
	big := strings.Repeat("x", 5<<20)
	for _, tc := range []struct {
		name    string
		mangle  func(w http.ResponseWriter, r *http.Request, next http.Handler) bool
		wantErr string
	}{
		{"flipped-blob-byte", func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.HasSuffix(r.URL.Path, layerDigest.String()) || r.Method != http.MethodGet {
				return false
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			b[len(b)/2] ^= 0xff
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b)
			return true
		}, "layer"},
		{"truncated-blob", func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.HasSuffix(r.URL.Path, layerDigest.String()) || r.Method != http.MethodGet {
				return false
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			w.Write(b[:len(b)/2]) // chunked: no length to compare against
			return true
		}, ""},
		{"oversized-manifest", func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			io.WriteString(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":"`+big+`"}}`)
			return true
		}, "size limit"},
		{"oversized-error-body", func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, big)
			return true
		}, "404"},
		{"unknown-manifest-type", func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.Header().Set("Content-Type", "application/vnd.cncf.helm.chart.content.v1.tar+gzip")
			io.WriteString(w, `{"schemaVersion":2}`)
			return true
		}, "unsupported"},
		{"artifact-config", func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			io.WriteString(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
			return true
		}, "not a container image"},
		{"digest-path-traversal", func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			io.WriteString(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:../../../../etc/passwd","size":2},"layers":[]}`)
			return true
		}, "manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := startFake(t)
			ref := reg.push(t, "hostile:1", img)
			reg.misbehave(tc.mangle)
			rt := berthtest.NewRuntime(t)
			_, err := rt.Pull(ctx, ref)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.wantErr)) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if len(err.Error()) > 4096 {
				t.Errorf("error message of %d bytes: registry bodies must be bounded", len(err.Error()))
			}
			assertEmptyStore(t, rt)
			// Once the registry behaves, the same root pulls fine.
			reg.mangle.Store(nil)
			if _, err := rt.Pull(ctx, ref); err != nil {
				t.Fatalf("pull after the registry recovered: %v", err)
			}
			if err := rt.Check(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestPullHostileLayer pulls images whose layers try to escape the
// snapshot directory; the pull fails naming the entry, nothing is
// registered, and a sentinel directory beside the root is untouched.
func TestPullHostileLayer(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := startFake(t)
	for _, tc := range []struct {
		name  string
		tar   []byte
		entry string
	}{
		{"dotdot", tarOf(t, "../../../sentinel/evil", "x"), "../../../sentinel/evil"},
		{"hardlink-outside", tarOf(t, "link", "=> ../../sentinel/file"), "link"},
		{"bad-whiteout", tarOf(t, "a/", "", "a/.wh..wh.foo", ""), ".wh..wh.foo"},
		{"dot-symlink", tarOf(t, ".", "-> /"), "\"."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sentinel := filepath.Join(dir, "sentinel")
			os.MkdirAll(sentinel, 0o755)
			os.WriteFile(filepath.Join(sentinel, "file"), []byte("keep me"), 0o644)
			before := snapshotTree(t, sentinel)
			ref := reg.push(t, "hostile-layer/"+tc.name+":1", imageOf(t, true, layerOf(t, compression.GZip, tc.tar)))
			rt, err := berth.New(filepath.Join(dir, "root"))
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			_, err = rt.Pull(ctx, ref)
			if err == nil {
				t.Fatal("pull of a hostile layer succeeded")
			}
			if !strings.Contains(err.Error(), tc.entry) {
				t.Errorf("error %q does not name the entry %q", err, tc.entry)
			}
			assertEmptyStore(t, rt)
			if after := snapshotTree(t, sentinel); after != before {
				t.Errorf("sentinel changed:\n%s\n---\n%s", before, after)
			}
		})
	}
}

// snapshotTree describes a directory tree: names, modes, sizes, mtimes
// (nanoseconds) and content.
func snapshotTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", c)
		}
		b.WriteByte('\n')
		return nil
	})
	return b.String()
}

// authRegistry requires basic auth user:pass on every /v2/ request.
func authRegistry(t *testing.T, reg *fakeRegistry) {
	reg.misbehave(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		u, p, ok := r.BasicAuth()
		if ok && u == "user" && p == "secret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
}

func TestPullCredentials(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := startFake(t)
	ref := reg.push(t, "private:1", imageOf(t, true, layerOf(t, compression.GZip, tarOf(t, "f", "private"))))
	authRegistry(t, reg)

	t.Run("anonymous-refused", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", t.TempDir())
		rt := berthtest.NewRuntime(t)
		if _, err := rt.Pull(ctx, ref); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
			t.Errorf("anonymous pull: %v, want unauthorized", err)
		}
	})
	t.Run("option", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", t.TempDir())
		rt := berthtest.NewRuntime(t)
		if _, err := rt.Pull(ctx, ref, berth.WithAuth("user", "secret")); err != nil {
			t.Error(err)
		}
	})
	t.Run("docker-config", func(t *testing.T) {
		dir := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte("user:secret"))
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+reg.host+`":{"auth":"`+auth+`"}}}`), 0o600)
		t.Setenv("DOCKER_CONFIG", dir)
		rt := berthtest.NewRuntime(t)
		if _, err := rt.Pull(ctx, ref); err != nil {
			t.Error(err)
		}
	})
}

// TestPullRedirectKeepsCredentials checks that credentials for a registry
// never reach the host a blob download is redirected to.
func TestPullRedirectKeepsCredentials(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := startFake(t)
	ref := reg.push(t, "redirect:1", imageOf(t, true, layerOf(t, compression.GZip, tarOf(t, "f", "redirected"))))
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if a := r.Header.Get("Authorization"); a != "" {
			leaked = append(leaked, a)
		}
		mu.Unlock()
		// Serve the blob from the real registry without credentials.
		req, _ := http.NewRequest(http.MethodGet, reg.URL+r.URL.Path+"?direct=1", nil)
		req.SetBasicAuth("user", "secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer other.Close()
	reg.misbehave(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		u, p, ok := r.BasicAuth()
		if !ok || u != "user" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && r.URL.Query().Get("direct") == "" {
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return true
		}
		return false
	})
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	rt := berthtest.NewRuntime(t)
	if _, err := rt.Pull(ctx, ref, berth.WithAuth("user", "secret")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Errorf("credentials sent to the redirect target on another port: %q", leaked)
	}
}

// TestPullChecksDiffIDOfKnownLayer: an image whose config names a diff ID
// this root has unpacked already, over a layer blob with other content, is
// refused. The blob was checked against its own digest only, so the image
// ran the known content here while Save and Push shipped the other.
func TestPullChecksDiffIDOfKnownLayer(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := startFake(t)
	known := imageOf(t, true, layerOf(t, compression.GZip, tarOf(t, "f", "known")))
	rt := berthtest.NewRuntime(t)
	if _, err := rt.Pull(ctx, reg.push(t, "diffid/known:1", known)); err != nil {
		t.Fatal(err)
	}
	knownCfg, err := known.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	other := imageOf(t, true, layerOf(t, compression.GZip, tarOf(t, "f", "other")))
	cfg, err := other.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs = knownCfg.RootFS.DiffIDs
	lying, err := mutate.ConfigFile(other, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Pull(ctx, reg.push(t, "diffid/lying:1", lying))
	if err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Fatalf("pull of a layer whose content is not its config's diff ID: %v", err)
	}
	if _, err := rt.Image(ctx, reg.host+"/diffid/lying:1"); err == nil {
		t.Error("the refused image is in the store")
	}
}
