package berth_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// bigLayer is a gzip layer of 40 MiB of content: half random bytes, half
// zeros, in a few files, as the Pull benchmark of the foundation issue
// specifies.
func bigLayer(tb testing.TB, i int) v1.Layer {
	tb.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for f := 0; f < 4; f++ {
		content := make([]byte, 10<<20)
		if f%2 == 0 {
			rand.Read(content)
		}
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data%d/file%d", i, f), Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		tw.Write(content)
	}
	tw.Close()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(raw.Bytes())
	zw.Close()
	l, err := tarball.LayerFromOpener(func() (io_ReadCloser, error) { return nopCloser(bytes.NewReader(gz.Bytes())), nil })
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// pushBig pushes big:1 (busybox plus three 40 MiB layers) to reg and
// returns its reference.
func pushBig(tb testing.TB, reg *berthtest.Registry) string {
	tb.Helper()
	base, err := tarball.LayerFromOpener(func() (io_ReadCloser, error) {
		return nopCloser(bytes.NewReader(berthtest.BusyboxTar(tb))), nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	img, err := mutate.AppendLayers(emptyImage(), base, bigLayer(tb, 1), bigLayer(tb, 2), bigLayer(tb, 3))
	if err != nil {
		tb.Fatal(err)
	}
	ref := reg.Host + "/big:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		tb.Fatal(err)
	}
	return ref
}

// BenchmarkPull pulls big:1 from a Distribution registry on 127.0.0.1 into
// a fresh root each iteration, to ready-to-run (every layer unpacked).
// Target: ≤ 0.30 s (podman pull 0.63 s on the reference machine).
func BenchmarkPull(b *testing.B) {
	berthtest.Skip(b)
	reg := berthtest.StartRegistry(b)
	ref := pushBig(b, reg)
	ctx := context.Background()
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		root := filepath.Join(dir, fmt.Sprint(i))
		rt, err := berth.New(root)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rt.Pull(ctx, ref); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		rt.Close()
		os.RemoveAll(root)
		b.StartTimer()
	}
}

// BenchmarkPullPresent pulls big:1 when every layer is already present:
// one manifest round trip and a check. Target: ≤ 20 ms.
func BenchmarkPullPresent(b *testing.B) {
	berthtest.Skip(b)
	reg := berthtest.StartRegistry(b)
	ref := pushBig(b, reg)
	ctx := context.Background()
	rt := berthtest.NewRuntime(b)
	if _, err := rt.Pull(ctx, ref); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := rt.Pull(ctx, ref); err != nil {
			b.Fatal(err)
		}
	}
}
