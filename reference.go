package berth

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// parseRef parses an image reference the way docker does: a missing
// registry means Docker Hub, a missing tag means "latest".
func parseRef(ref string, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: image reference %q: %v", ErrInvalid, ref, err)
	}
	return r, nil
}

// isTag reports whether r names a tag, not a digest.
func isTag(r name.Reference) bool {
	_, ok := r.(name.Tag)
	return ok
}

// refKey is the canonical form under which a reference is stored:
// "docker.io/library/busybox:latest" or "host:port/repo@sha256:…".
func refKey(r name.Reference) string {
	repo := repoKey(r.Context())
	switch r := r.(type) {
	case name.Tag:
		return repo + ":" + r.TagStr()
	case name.Digest:
		return repo + "@" + r.DigestStr()
	}
	return repo
}

// repoKey is a repository as refKey writes it, without tag or digest.
func repoKey(repo name.Repository) string {
	if rest, ok := strings.CutPrefix(repo.Name(), name.DefaultRegistry+"/"); ok {
		return "docker.io/" + rest
	}
	return repo.Name()
}

// familiar shortens a stored reference the way docker prints it:
// "docker.io/library/busybox:latest" becomes "busybox:latest".
func familiar(key string) string {
	key = strings.TrimPrefix(key, "docker.io/")
	return strings.TrimPrefix(key, "library/")
}

// splitRepoTag splits a familiar reference into repository and tag (or
// digest) for listings.
func splitRepoTag(key string) (repo, tag string) {
	f := familiar(key)
	if i := strings.LastIndex(f, "@"); i >= 0 {
		return f[:i], f[i+1:]
	}
	if i := strings.LastIndex(f, ":"); i > strings.LastIndex(f, "/") {
		return f[:i], f[i+1:]
	}
	return f, "latest"
}

// danglingPrefix marks references kept only so that an image whose tag
// moved elsewhere stays listed as <none>, as docker keeps it.
const danglingPrefix = "@"

// intermediatePrefix marks references that keep a build step's image (the
// build cache points at it) without listing it: docker images hides
// intermediate images too.
const intermediatePrefix = danglingPrefix + "build@"
