package berth_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// TestSaveLoadFormats round-trips an image through every archive form berth
// writes and reads: the combined docker/OCI tar (plain and gzip'd), an OCI
// layout directory, and a legacy docker save archive (manifest.json with
// <id>/layer.tar files and no OCI files), as older docker versions write it.
func TestSaveLoadFormats(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	src := berthtest.NewRuntime(t)
	img := berthtest.Busybox(t, src, "busybox:1.0")

	var saved bytes.Buffer
	if err := src.Save(ctx, &saved, "busybox:1.0"); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(saved.Bytes())
	zw.Close()
	layoutDir := t.TempDir()
	if err := src.SaveLayout(ctx, layoutDir, "busybox:1.0"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		load func(rt *berth.Runtime) ([]*berth.Image, error)
	}{
		{"combined-tar", func(rt *berth.Runtime) ([]*berth.Image, error) { return rt.Load(ctx, bytes.NewReader(saved.Bytes())) }},
		{"gzip-tar", func(rt *berth.Runtime) ([]*berth.Image, error) { return rt.Load(ctx, bytes.NewReader(gz.Bytes())) }},
		{"oci-layout-dir", func(rt *berth.Runtime) ([]*berth.Image, error) { return rt.LoadLayout(ctx, layoutDir) }},
		{"legacy-docker-archive", func(rt *berth.Runtime) ([]*berth.Image, error) {
			return rt.Load(ctx, bytes.NewReader(legacyDockerArchive(t, img)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := berthtest.NewRuntime(t)
			imgs, err := tc.load(rt)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].ID != img.ID {
				t.Fatalf("loaded %+v, want image %s", imgs, img.ID)
			}
			if got := strings.Join(imgs[0].RepoTags, ","); got != "busybox:1.0" {
				t.Errorf("tags %q, want busybox:1.0", got)
			}
			if err := rt.Check(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

// legacyDockerArchive writes img the way docker before 25 saved images:
// manifest.json, <config>.json and <layer>/layer.tar, uncompressed.
func legacyDockerArchive(t *testing.T, img *berth.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	cfg := img.RawConfig()
	cfgName := strings.TrimPrefix(img.ID, "sha256:") + ".json"
	add(cfgName, cfg)
	var layers []string
	for _, l := range img.Layers {
		// Busybox test images are imported uncompressed, so the blob is the
		// layer tar itself.
		b := berthtest.BusyboxTar(t)
		sum := sha256.Sum256(b)
		if "sha256:"+hex.EncodeToString(sum[:]) != l.DiffID {
			t.Fatalf("test setup: busybox tar does not match layer %s", l.DiffID)
		}
		dir := hex.EncodeToString(sum[:])
		add(dir+"/layer.tar", b)
		layers = append(layers, dir+"/layer.tar")
	}
	m, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{"busybox:1.0"}, "Layers": layers}})
	add("manifest.json", m)
	tw.Close()
	return buf.Bytes()
}

// TestLoadHostileLayout refuses OCI layouts whose blobs escape the layout
// directory through symlinks.
func TestLoadHostileLayout(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	src := berthtest.NewRuntime(t)
	berthtest.Busybox(t, src, "busybox:1.0")
	dir := t.TempDir()
	if err := src.SaveLayout(ctx, dir, "busybox:1.0"); err != nil {
		t.Fatal(err)
	}
	// Replace one blob with a symlink to a host file of the same name.
	blobs, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("host secret"), 0o600)
	os.Remove(blobs[0])
	os.Symlink(outside, blobs[0])
	rt := berthtest.NewRuntime(t)
	if _, err := rt.LoadLayout(ctx, dir); err == nil {
		t.Fatal("a layout whose blob is a symlink out of it loaded")
	}
	if imgs, _ := rt.Images(ctx); len(imgs) != 0 {
		t.Errorf("images after a failed load: %v", imgs)
	}
	if err := rt.Check(ctx); err != nil {
		t.Error(err)
	}
}
