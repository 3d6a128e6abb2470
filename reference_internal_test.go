package berth

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestRefKey: Docker Hub's registry name is shortened only where it is the
// registry, so two repositories whose paths differ by it are two keys.
func TestRefKey(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                     "docker.io/library/busybox:latest",
		"index.docker.io/foo/bar:2":   "docker.io/foo/bar:2",
		"ghcr.io/index.docker.io/x:1": "ghcr.io/index.docker.io/x:1",
		"ghcr.io/docker.io/x:1":       "ghcr.io/docker.io/x:1",
	} {
		r, err := name.ParseReference(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := refKey(r); got != want {
			t.Errorf("refKey(%s) = %s, want %s", in, got, want)
		}
	}
}
