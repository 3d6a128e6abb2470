package berth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/berth-dev/berth/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A build cache exported for another machine (docker build --cache-to,
// read back with --cache-from) is an OCI image index with one entry per
// cached step: the manifest of the image the step made, annotated with the
// step's cache key. Keys name only content (a parent key, the instruction
// after substitution, the build args it uses, the digests of the files it
// reads; see stepKey), never a path or anything of the machine or root
// that computed them, so another build that computes the same key has
// reached the same step. In a directory the index is an OCI layout's
// index.json beside the blobs; in a registry it is pushed under a tag and
// its images by digest. (BuildKit's own cache manifests describe its
// solver's graph; berth's steps are images, so an index of them is the
// whole format.)
const (
	cacheKeyAnnotation    = "dev.berth.build.cache-key"
	cacheFormatAnnotation = "dev.berth.build.cache-format"
	cacheFormat           = "1"
)

// maxCacheEntries bounds the entries read from one cache source.
const maxCacheEntries = 10000

// cacheLocation is a directory or a registry reference holding an exported
// build cache.
type cacheLocation struct {
	dir  string // an OCI layout directory, or
	ref  string // a registry reference (a tag)
	opts []RegistryOption
	mode CacheMode // an export's
}

// CacheMode says which steps a build cache export holds, as BuildKit's
// mode does.
type CacheMode string

const (
	// CacheModeMin exports the steps the built image contains: its own
	// chain of steps, whose layers and history begin the image's. ""
	// means it too.
	CacheModeMin CacheMode = "min"
	// CacheModeMax also exports the steps of the stages the built image
	// does not contain, so that a build elsewhere skips a builder stage
	// whose output a COPY --from takes.
	CacheModeMax CacheMode = "max"
)

func (l cacheLocation) String() string {
	if l.dir != "" {
		return l.dir
	}
	return l.ref
}

func (l cacheLocation) registry() *registryConfig {
	var cfg registryConfig
	for _, o := range l.opts {
		o(&cfg)
	}
	return &cfg
}

// WithCacheFromDir reads the build cache another build exported into dir
// with WithCacheToDir (docker build --cache-from type=local,src=DIR). A
// step the local cache lacks is looked up there by its cache key; found,
// its image is copied into the store (the blobs the store lacks, verified
// against their digests), recorded in the local cache, and the step is
// reported cached. Sources are read in the order given, after the local
// cache; the sources are read when a step first misses the local cache
// (a fully cached build reads none). A source that cannot be read
// (missing, damaged, unreachable),
// or an entry that fails, is skipped with a BuildEvent Warning (which
// only a WithBuildProgress callback sees) and the build goes on without
// it, as BuildKit does, so the first build of a CI pipeline can name the
// cache it will export. An entry is trusted as the local cache is: its
// image is taken as the step's result, unchecked. WithNoCache ignores
// every source. Default: the local cache only.
func WithCacheFromDir(dir string) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.cacheFrom = append(c.cacheFrom, cacheLocation{dir: dir}) })
}

// WithCacheFromRegistry is WithCacheFromDir for a cache pushed to a
// registry with WithCacheToRegistry (docker build --cache-from
// type=registry,ref=REF); opts give credentials and transport as for Pull.
func WithCacheFromRegistry(ref string, opts ...RegistryOption) BuildOption {
	return buildOptionFunc(func(c *buildSettings) {
		c.cacheFrom = append(c.cacheFrom, cacheLocation{ref: ref, opts: opts})
	})
}

// WithCacheToDir writes the build's cache into dir once the image is built
// (docker build --cache-to type=local,dest=DIR,mode=MODE): an OCI image
// layout whose index.json lists, by cache key, the image of each step mode
// chooses, with their blobs. dir is made if it is missing; its index.json
// is replaced, and blobs already in it are kept when their size is right
// (never read again: a blob damaged in place stays until the directory is
// cleared). If the export fails, Build returns the image, which is stored,
// and the error. Default: no export.
func WithCacheToDir(dir string, mode CacheMode) BuildOption {
	return buildOptionFunc(func(c *buildSettings) { c.cacheTo = append(c.cacheTo, cacheLocation{dir: dir, mode: mode}) })
}

// WithCacheToRegistry is WithCacheToDir for a registry (docker build
// --cache-to type=registry,ref=REF,mode=MODE): the steps' images are
// pushed by digest and the index under ref, which must name a tag; opts
// give credentials and transport as for Push.
func WithCacheToRegistry(ref string, mode CacheMode, opts ...RegistryOption) BuildOption {
	return buildOptionFunc(func(c *buildSettings) {
		c.cacheTo = append(c.cacheTo, cacheLocation{ref: ref, opts: opts, mode: mode})
	})
}

// checkCache refuses cache locations that cannot work before anything is
// built.
func (c *buildSettings) checkCache() error {
	for i, l := range slices.Concat(c.cacheTo, c.cacheFrom) {
		if l.dir == "" && l.ref == "" {
			return fmt.Errorf("%w: a build cache location without a directory or reference", ErrInvalid)
		}
		if l.mode != "" && l.mode != CacheModeMin && l.mode != CacheModeMax {
			return fmt.Errorf("%w: build cache %s: mode %q (want min or max)", ErrInvalid, l, l.mode)
		}
		if l.ref == "" {
			continue
		}
		parsed, err := parseRef(l.ref, l.registry().insecure)
		if err != nil {
			return fmt.Errorf("build cache %s: %w", l.ref, err)
		}
		if !isTag(parsed) && i < len(c.cacheTo) {
			return fmt.Errorf("%w: build cache %s: an export needs a tag, not a digest", ErrInvalid, l.ref)
		}
	}
	return nil
}

// cacheSource is an opened cache location: its entries by key, and how to
// read their manifests and blobs.
type cacheSource struct {
	name     string
	entries  map[string]v1.Descriptor
	manifest func(ctx context.Context, d v1.Descriptor) ([]byte, error)
	blob     fetchFunc
}

// openCacheSources opens the build's cache sources, when a step first
// misses the local cache (a fully cached build reads none: no registry is
// asked). One that cannot be read is left out with a warning.
func (b *builder) openCacheSources(ctx context.Context) []*cacheSource {
	var out []*cacheSource
	for _, l := range b.cfg.cacheFrom {
		src, err := b.openCacheSource(ctx, l)
		if err != nil {
			b.warn(fmt.Sprintf("the build cache %s is not used: %v", l, err))
			continue
		}
		out = append(out, src)
	}
	return out
}

func (b *builder) openCacheSource(ctx context.Context, l cacheLocation) (*cacheSource, error) {
	src := &cacheSource{name: l.String()}
	var raw []byte
	if l.dir != "" {
		root, err := os.OpenRoot(l.dir)
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		b.releases = append(b.releases, func() { root.Close() })
		b.mu.Unlock()
		fs := &dirFiles{root: root}
		if raw, err = readMember(fs, "index.json", maxManifestSize); err != nil {
			return nil, err
		}
		src.blob = func(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
			h, err := store.ValidateDigest(d.Digest.String())
			if err != nil {
				return nil, err
			}
			return fs.open("blobs/sha256/" + h)
		}
		src.manifest = func(ctx context.Context, d v1.Descriptor) ([]byte, error) {
			h, err := store.ValidateDigest(d.Digest.String())
			if err != nil {
				return nil, err
			}
			return readMember(fs, "blobs/sha256/"+h, maxManifestSize)
		}
	} else {
		cfg := l.registry()
		ref, err := parseRef(l.ref, cfg.insecure)
		if err != nil {
			return nil, err
		}
		c, err := newRegistryClient(ctx, ref.Context(), cfg, transport.PullScope)
		if err != nil {
			return nil, err
		}
		if raw, _, err = c.manifest(ctx, ref.Identifier()); err != nil {
			return nil, err
		}
		src.blob = c.blob
		src.manifest = func(ctx context.Context, d v1.Descriptor) ([]byte, error) {
			raw, _, err := c.manifest(ctx, d.Digest.String())
			return raw, err
		}
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%w: decoding the cache index: %v", ErrInvalid, err)
	}
	if f := idx.Annotations[cacheFormatAnnotation]; !idx.MediaType.IsIndex() || f != cacheFormat {
		return nil, fmt.Errorf("%w: not a berth build cache of format %s (its index has media type %q, format %q)", ErrUnsupported, cacheFormat, idx.MediaType, f)
	}
	if len(idx.Manifests) > maxCacheEntries {
		return nil, fmt.Errorf("%w: the cache index has %d entries, more than %d", ErrInvalid, len(idx.Manifests), maxCacheEntries)
	}
	src.entries = map[string]v1.Descriptor{}
	for _, d := range idx.Manifests {
		key := d.Annotations[cacheKeyAnnotation]
		if _, err := store.ValidateDigest(key); err != nil || !d.MediaType.IsImage() {
			continue // not an entry this format writes: ignored
		}
		if _, err := store.ValidateDigest(d.Digest.String()); err != nil {
			continue
		}
		src.entries[key] = d
	}
	return src, nil
}

// importCached looks key up in the cache sources, in order, and copies the
// first entry found into the store and the local cache.
func (b *builder) importCached(ctx context.Context, key string) *Image {
	if len(b.cfg.cacheFrom) == 0 {
		return nil
	}
	for _, src := range b.cacheSources(ctx) {
		d, ok := src.entries[key]
		if !ok {
			continue
		}
		img, err := b.importEntry(ctx, src, key, d)
		if err != nil {
			b.warn(fmt.Sprintf("the build cache %s: step %s not imported: %v", src.name, key, err))
			continue
		}
		return img
	}
	return nil
}

func (b *builder) importEntry(ctx context.Context, src *cacheSource, key string, d v1.Descriptor) (*Image, error) {
	raw, err := src.manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	if store.Digest(raw) != d.Digest.String() {
		return nil, fmt.Errorf("%w: manifest %s does not match its digest", store.ErrDigestMismatch, d.Digest)
	}
	unlock, err := b.r.gcShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	img, err := b.r.ingest(ctx, raw, src.blob, nil)
	if err != nil {
		return nil, err
	}
	// As a step's image made here.
	return b.keepStep(img.Digest, key)
}

// recordStep notes the image a step key stands for in this build, for the
// cache exports.
func (b *builder) recordStep(key string, img *Image) {
	if len(b.cfg.cacheTo) == 0 || key == "" || img == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stepImages == nil {
		b.stepImages = map[string]*Image{}
	}
	b.stepImages[key] = img
}

func (b *builder) warn(msg string) {
	b.emit(BuildEvent{Warning: msg})
}

// exportCache writes the cache of the build of img to every destination.
func (b *builder) exportCache(ctx context.Context, img *Image) error {
	if len(b.cfg.cacheTo) == 0 {
		return nil
	}
	b.mu.Lock()
	steps := sortedSteps(b.stepImages)
	b.mu.Unlock()
	var errs []error
	for _, l := range b.cfg.cacheTo {
		var entries []cacheEntry
		for _, s := range steps {
			if l.mode == CacheModeMax || ancestor(s.img, img) {
				entries = append(entries, s)
			}
		}
		var err error
		if l.dir != "" {
			err = b.r.exportCacheDir(l.dir, entries)
		} else {
			err = b.r.exportCacheRegistry(ctx, l, entries)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("building: exporting the build cache to %s: %w", l, err))
		}
	}
	return errors.Join(errs...)
}

type cacheEntry struct {
	key string
	img *Image
}

func sortedSteps(m map[string]*Image) []cacheEntry {
	out := make([]cacheEntry, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, cacheEntry{key: k, img: m[k]})
	}
	return out
}

// ancestor reports whether a step's image is one the built image was made
// from: its layers and its history begin the built image's (a step of
// another stage that made no layer has the same layers, not the same
// history).
func ancestor(step, built *Image) bool {
	if len(step.Layers) > len(built.Layers) || len(step.History) > len(built.History) {
		return false
	}
	for i, l := range step.Layers {
		if l.DiffID != built.Layers[i].DiffID {
			return false
		}
	}
	for i, h := range step.History {
		b := built.History[i]
		if h.CreatedBy != b.CreatedBy || !h.Created.Equal(b.Created) || h.EmptyLayer != b.EmptyLayer || h.Comment != b.Comment {
			return false
		}
	}
	return true
}

func cacheDescriptor(e cacheEntry) v1.Descriptor {
	d := v1.Descriptor{MediaType: types.MediaType(e.img.MediaType), Size: int64(len(e.img.manifest))}
	d.Digest, _ = v1.NewHash(e.img.Digest)
	d.Annotations = map[string]string{cacheKeyAnnotation: e.key}
	return d
}

func (r *Runtime) exportCacheDir(dir string, entries []cacheEntry) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	idx := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     []v1.Descriptor{},
		Annotations:   map[string]string{cacheFormatAnnotation: cacheFormat},
	}
	copied := map[string]bool{}
	for _, e := range entries {
		for _, d := range append([]string{e.img.Digest, e.img.ID}, layerDigests(e.img)...) {
			if copied[d] {
				continue
			}
			copied[d] = true
			if err := r.copyBlobTo(d, dir); err != nil {
				return err
			}
		}
		idx.Manifests = append(idx.Manifests, cacheDescriptor(e))
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	return store.WriteFileAtomic(filepath.Join(dir, "index.json"), raw, 0o644)
}

func layerDigests(img *Image) []string {
	out := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = l.Digest
	}
	return out
}

func (r *Runtime) exportCacheRegistry(ctx context.Context, l cacheLocation, entries []cacheEntry) error {
	cfg := l.registry()
	ref, err := parseRef(l.ref, cfg.insecure)
	if err != nil {
		return err
	}
	var adds []mutate.IndexAddendum
	for _, e := range entries {
		vimg, err := r.v1Image(e.img)
		if err != nil {
			return err
		}
		adds = append(adds, mutate.IndexAddendum{Add: vimg, Descriptor: cacheDescriptor(e)})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	idx = mutate.Annotations(idx, map[string]string{cacheFormatAnnotation: cacheFormat}).(v1.ImageIndex)
	return remote.WriteIndex(ref, idx, cfg.remoteOptions(ctx)...)
}
