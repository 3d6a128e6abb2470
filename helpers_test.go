package berth_test

import (
	"crypto/rand"
	"io"
	"log"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type io_ReadCloser = io.ReadCloser

func nopCloser(r io.Reader) io.ReadCloser { return io.NopCloser(r) }

// emptyImage is an empty Docker schema 2 image with a linux/amd64 config.
func emptyImage() v1.Image {
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"sh"}
	img, _ = mutate.ConfigFile(img, cf)
	return img
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// randomTar is a layer tar with one file of n random bytes.
func randomTar(tb testing.TB, name string, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return tarOf(tb, name, string(b))
}

func mustLayers(tb testing.TB, img v1.Image) []int64 {
	ls, err := img.Layers()
	if err != nil {
		tb.Fatal(err)
	}
	var out []int64
	for _, l := range ls {
		n, _ := l.Size()
		out = append(out, n)
	}
	return out
}
