package berth

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/store"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// registryConfig holds what Pull and Push share.
type registryConfig struct {
	auth      authn.Authenticator
	insecure  bool
	progress  func(Progress)
	platform  string
	transport http.RoundTripper
}

// PullOption configures Pull.
type PullOption interface{ applyPull(*registryConfig) }

// PushOption configures Push.
type PushOption interface{ applyPush(*registryConfig) }

// RegistryOption configures both Pull and Push.
type RegistryOption func(*registryConfig)

func (o RegistryOption) applyPull(c *registryConfig) { o(c) }
func (o RegistryOption) applyPush(c *registryConfig) { o(c) }

type pullOnly func(*registryConfig)

func (o pullOnly) applyPull(c *registryConfig) { o(c) }

// WithAuth sets the registry credentials. Default: the credentials that
// `docker login` stored for the registry in $DOCKER_CONFIG/config.json or
// ~/.docker/config.json, or anonymous access.
func WithAuth(username, password string) RegistryOption {
	return func(c *registryConfig) {
		c.auth = authn.FromConfig(authn.AuthConfig{Username: username, Password: password})
	}
}

// WithInsecureRegistry lets berth talk plain HTTP to the registry (docker's
// insecure-registries). Default: HTTPS, except for localhost and 127.0.0.1,
// which are always allowed plain HTTP as docker allows them.
func WithInsecureRegistry() RegistryOption {
	return func(c *registryConfig) { c.insecure = true }
}

// WithProgress has fn called as layers transfer (see Progress for what a
// push reports). Calls are serialized, none comes after Pull or Push
// returns, and a pull's are rate-limited; fn must not block for long.
// Default: no reports.
func WithProgress(fn func(Progress)) RegistryOption {
	return func(c *registryConfig) { c.progress = fn }
}

// WithTransport sets the HTTP transport used to reach registries (for
// proxies, custom CAs, or tests). Default: http.DefaultTransport.
func WithTransport(t http.RoundTripper) RegistryOption {
	return func(c *registryConfig) { c.transport = t }
}

// WithPlatform selects the image for a platform, "os/arch[/variant]",
// from a multi-platform index (docker pull --platform). Default: this
// machine's platform.
func WithPlatform(platform string) PullOption {
	return pullOnly(func(c *registryConfig) { c.platform = platform })
}

func (c *registryConfig) remoteOptions(ctx context.Context) []remote.Option {
	auth := remote.WithAuthFromKeychain(authn.DefaultKeychain)
	if c.auth != nil {
		auth = remote.WithAuth(c.auth)
	}
	base := c.transport
	if base == nil {
		base = http.DefaultTransport
	}
	return []remote.Option{
		remote.WithContext(ctx),
		auth,
		remote.WithTransport(&boundedTransport{base: base}),
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
		remote.WithUserAgent("berth"),
	}
}

func hostPlatform() string {
	p := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		p += "/v7"
	}
	return p
}

// Pull fetches an image from its registry into the store and unpacks its
// layers, ready to run (docker pull). Layers download in parallel and
// unpack while they download; blobs already present are not fetched again,
// also when another program pulls the same image into the same root at the
// same time. The reference gets the pulled image.
func (r *Runtime) Pull(ctx context.Context, ref string, opts ...PullOption) (*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	cfg := registryConfig{platform: hostPlatform()}
	for _, o := range opts {
		o.applyPull(&cfg)
	}
	parsed, err := parseRef(ref, cfg.insecure)
	if err != nil {
		return nil, err
	}
	plat, err := v1.ParsePlatform(cfg.platform)
	if err != nil {
		return nil, fmt.Errorf("%w: platform %q: %v", ErrInvalid, cfg.platform, err)
	}
	img, err := r.pull(ctx, parsed, plat, &cfg, newProgress(cfg.progress))
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	r.emit("image", "pull", familiar(refKey(parsed)), map[string]string{"name": familiar(repoKey(parsed.Context()))})
	return img, nil
}

func (r *Runtime) pull(ctx context.Context, ref name.Reference, plat *v1.Platform, cfg *registryConfig, prog *progress) (*Image, error) {
	unlock, err := r.gcShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()

	c, err := newRegistryClient(ctx, ref.Context(), cfg, transport.PullScope)
	if err != nil {
		return nil, err
	}
	raw, mt, err := c.manifest(ctx, ref.Identifier())
	if err != nil {
		return nil, err
	}
	repoDigest := refKey(ref.Context().Digest(store.Digest(raw)))
	switch {
	case mt.IsIndex():
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("decoding index: %w", err)
		}
		child, err := selectPlatform(idx, plat)
		if err != nil {
			return nil, err
		}
		raw, mt, err = c.manifest(ctx, child.String())
		if err != nil {
			return nil, err
		}
		if !mt.IsImage() {
			return nil, fmt.Errorf("%w: index entry %s has media type %q", ErrUnsupported, child, mt)
		}
	case mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed:
		return nil, fmt.Errorf("%w: Docker schema 1 manifests are deprecated; push the image again with a current client", ErrUnsupported)
	case mt.IsImage():
	default:
		return nil, fmt.Errorf("%w: manifest media type %q", ErrUnsupported, mt)
	}
	img, err := r.ingest(ctx, raw, c.blob, prog)
	if err != nil {
		return nil, err
	}
	if err := r.setRef(ctx, refKey(ref), img.Digest); err != nil {
		return nil, err
	}
	if err := r.setRef(ctx, repoDigest, img.Digest); err != nil {
		return nil, err
	}
	return r.Image(ctx, img.Digest)
}

// selectPlatform picks the manifest for plat from an index, naming what the
// index offers when nothing matches.
func selectPlatform(im *v1.IndexManifest, plat *v1.Platform) (v1.Hash, error) {
	var offered []string
	for _, m := range im.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			continue
		}
		if m.Platform.Satisfies(*plat) {
			return m.Digest, nil
		}
		offered = append(offered, m.Platform.String())
	}
	return v1.Hash{}, fmt.Errorf("%w: no image for platform %s in the index (it has: %s)", ErrNotFound, plat, strings.Join(offered, ", "))
}

// Push uploads img to a registry under ref (docker push). Blobs the
// registry already has are not uploaded again.
func (r *Runtime) Push(ctx context.Context, img *Image, ref string, opts ...PushOption) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	var cfg registryConfig
	for _, o := range opts {
		o.applyPush(&cfg)
	}
	parsed, err := parseRef(ref, cfg.insecure)
	if err != nil {
		return err
	}
	vimg, err := r.v1Image(img)
	if err != nil {
		return err
	}
	ropts := cfg.remoteOptions(ctx)
	if cfg.progress != nil {
		ch := make(chan v1.Update, 16)
		ropts = append(ropts, remote.WithProgress(ch))
		reported := make(chan struct{})
		defer func() { <-reported }() // no call after Push returns (Write closes ch)
		go func() {
			defer close(reported)
			for u := range ch {
				if u.Error == nil {
					cfg.progress(Progress{Current: u.Complete, Total: u.Total, Done: u.Total > 0 && u.Complete == u.Total})
				}
			}
		}()
	}
	if err := remote.Write(parsed, vimg, ropts...); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// v1Image adapts a stored image to go-containerregistry's image interface,
// reading blobs from the store as they are needed.
func (r *Runtime) v1Image(img *Image) (v1.Image, error) {
	core := &storeImage{r: r, img: img}
	return partial.CompressedToImage(core)
}

type storeImage struct {
	r   *Runtime
	img *Image
}

func (s *storeImage) RawConfigFile() ([]byte, error) { return s.img.rawConfig, nil }
func (s *storeImage) MediaType() (types.MediaType, error) {
	return types.MediaType(s.img.MediaType), nil
}
func (s *storeImage) RawManifest() ([]byte, error) { return s.img.manifest, nil }
func (s *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range s.img.Layers {
		if l.Digest == h.String() {
			return &storeLayer{r: s.r, l: l}, nil
		}
	}
	if h.String() == s.img.ID {
		return &storeLayer{r: s.r, l: Layer{Digest: s.img.ID, Size: int64(len(s.img.rawConfig)), MediaType: string(types.OCIConfigJSON)}}, nil
	}
	return nil, fmt.Errorf("image %s has no blob %s: %w", s.img.ShortID(), h, ErrNotFound)
}

type storeLayer struct {
	r *Runtime
	l Layer
}

func (s *storeLayer) Digest() (v1.Hash, error)            { return v1.NewHash(s.l.Digest) }
func (s *storeLayer) Size() (int64, error)                { return s.l.Size, nil }
func (s *storeLayer) MediaType() (types.MediaType, error) { return types.MediaType(s.l.MediaType), nil }
func (s *storeLayer) Compressed() (io.ReadCloser, error)  { return s.r.store.Open(s.l.Digest) }

// boundedTransport bounds what a registry can make berth read: manifests
// beyond maxManifestSize fail instead of being buffered. (Error bodies are
// already bounded by go-containerregistry.)
type boundedTransport struct{ base http.RoundTripper }

// errTooLarge reports a registry response over its bound.
var errTooLarge = errors.New("registry response exceeds the size limit")

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	if resp.ContentLength > maxManifestSize {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: manifest of %d bytes from %s (limit %d)", errTooLarge, resp.ContentLength, req.URL.Host, maxManifestSize)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxManifestSize, host: req.URL.Host}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
	host string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe one byte: a body of exactly the limit is fine.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w: manifest from %s exceeds %d bytes", errTooLarge, b.host, maxManifestSize)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Login checks that a registry ("host[:port]"; "" for Docker Hub) accepts
// the credentials WithAuth gives, or those `docker login` stored for it,
// as docker login checks them before it stores them: it asks the
// registry's /v2/ endpoint with them, through its token service when the
// registry has one. With none given or stored it checks anonymous access,
// which a registry open to all grants. berth stores no credentials; the
// CLI's login writes them where docker's does, where Pull and Push find
// them.
func Login(ctx context.Context, registry string, opts ...RegistryOption) error {
	var cfg registryConfig
	for _, o := range opts {
		o(&cfg)
	}
	var nameOpts []name.Option
	if cfg.insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	reg, err := name.NewRegistry(cmp.Or(registry, name.DefaultRegistry), nameOpts...)
	if err != nil {
		return fmt.Errorf("%w: registry %q: %v", ErrInvalid, registry, err)
	}
	auth := cfg.auth
	if auth == nil {
		if auth, err = authn.DefaultKeychain.Resolve(reg); err != nil {
			return err
		}
	}
	base := cmp.Or[http.RoundTripper](cfg.transport, http.DefaultTransport)
	rt, err := transport.NewWithContext(ctx, reg, auth, base, nil)
	if err != nil {
		return fmt.Errorf("login to %s: %w", reg.RegistryStr(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("login to %s: %w", reg.RegistryStr(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login to %s: %s", reg.RegistryStr(), resp.Status)
	}
	return nil
}
