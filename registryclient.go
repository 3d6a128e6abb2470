package berth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/berth-dev/berth/internal/store"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// acceptedManifests is what berth asks a registry for, in order of
// preference.
var acceptedManifests = strings.Join([]string{
	string(types.OCIImageIndex), string(types.DockerManifestList),
	string(types.OCIManifestSchema1), string(types.DockerManifestSchema2),
}, ",")

// registryClient reads one repository of a registry. Authentication and
// token exchange come from go-containerregistry's transport; the requests
// themselves are berth's, so that each blob byte is hashed once, by the
// store, while it streams to disk and into the unpacker.
type registryClient struct {
	repo name.Repository
	http *http.Client
}

func newRegistryClient(ctx context.Context, repo name.Repository, cfg *registryConfig, scope string) (*registryClient, error) {
	auth := cfg.auth
	if auth == nil {
		var err error
		auth, err = authn.Resolve(ctx, authn.DefaultKeychain, repo)
		if err != nil {
			return nil, fmt.Errorf("reading registry credentials: %w", err)
		}
	}
	base := cfg.transport
	if base == nil {
		base = http.DefaultTransport
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, &boundedTransport{base: base}, []string{repo.Scope(scope)})
	if err != nil {
		return nil, err
	}
	return &registryClient{repo: repo, http: &http.Client{Transport: tr}}, nil
}

func (c *registryClient) url(kind, id string) string {
	return fmt.Sprintf("%s://%s/v2/%s/%s/%s", c.repo.Registry.Scheme(), c.repo.RegistryStr(), c.repo.RepositoryStr(), kind, id)
}

// manifest fetches a manifest by tag or digest, bounded in size, and checks
// it against the digest when one was asked for.
func (c *registryClient) manifest(ctx context.Context, id string) ([]byte, types.MediaType, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("manifests", id), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", acceptedManifests)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return nil, "", err
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if strings.HasPrefix(id, "sha256:") && store.Digest(raw) != id {
		return nil, "", fmt.Errorf("%w: registry sent a manifest hashing to %s for %s", store.ErrDigestMismatch, store.Digest(raw), id)
	}
	mt := types.MediaType(strings.TrimSpace(strings.Split(resp.Header.Get("Content-Type"), ";")[0]))
	// Trust the document's own mediaType over a generic Content-Type.
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &probe); err == nil {
		switch {
		case probe.MediaType != "":
			mt = probe.MediaType
		case probe.Manifests != nil && !mt.IsIndex():
			mt = types.OCIImageIndex
		}
	}
	return raw, mt, nil
}

// blob opens a blob for streaming. The caller (the store) verifies size and
// digest, so nothing unverified becomes visible.
func (c *registryClient) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("blobs", d.Digest.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if err := checkResponse(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: registry sends %d bytes for blob %s of %d bytes", store.ErrDigestMismatch, resp.ContentLength, d.Digest, d.Size)
	}
	return resp.Body, nil
}

// maxErrorBody bounds how much of a registry's error answer berth reads.
const maxErrorBody = 64 << 10

// checkResponse turns a non-200 answer into an error that names the status
// and the registry's own error codes, reading at most maxErrorBody bytes.
func checkResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	if len(body) > maxErrorBody {
		return fmt.Errorf("registry answered %s for %s with an error body over %d bytes", resp.Status, resp.Request.URL, maxErrorBody)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	err := transport.CheckError(resp, http.StatusOK)
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}
