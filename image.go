package berth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/berth-dev/berth/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Limits on metadata read from registries, archives and the store. Real
// manifests are a few KiB and configs rarely pass 100 KiB; the bounds keep
// a hostile source from making berth allocate without limit.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 16 << 20
)

// Image is an image in a runtime's store. Images are immutable values:
// Build and Commit return new ones, and Tag changes the store's references,
// not an Image value (its RepoTags are those it was read with).
type Image struct {
	// ID is the digest of the image config, which docker shows as IMAGE ID.
	ID string
	// Digest is the digest of the image manifest, the one a registry knows.
	Digest string
	// MediaType is the manifest's media type (Docker schema 2 or OCI).
	MediaType string
	// RepoTags lists the references that point at this image, familiar
	// form ("busybox:latest"). It is a snapshot taken when the Image was
	// read.
	RepoTags []string
	// RepoDigests lists the digest references of the image
	// ("busybox@sha256:…"), as docker image inspect shows them: the digest a
	// registry knows the image by, which for an image pulled through a
	// multi-platform index is the index's.
	RepoDigests []string
	// Created is when the image was built, from its config.
	Created time.Time
	// Author is the config's author field.
	Author string
	// OS, Architecture and Variant give the image's platform.
	OS, Architecture, Variant string
	// Size is the total size of the uncompressed layers, as docker images
	// shows it.
	Size int64
	// Config is the runtime configuration containers start from.
	Config ImageConfig
	// History lists how each layer was made, oldest first.
	History []History
	// Layers lists the layers, bottom first.
	Layers []Layer

	manifest  []byte
	rawConfig []byte
}

// ImageConfig is the part of an image config that says how to run it. Field
// names and JSON follow docker's image inspect output.
type ImageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Volumes      map[string]struct{} `json:"Volumes,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
	Shell        []string            `json:"Shell,omitempty"`
	Healthcheck  *HealthConfig       `json:"Healthcheck,omitempty"`
	OnBuild      []string            `json:"OnBuild,omitempty"`
	ArgsEscaped  bool                `json:"ArgsEscaped,omitempty"`
}

// HealthConfig is a health check: an image's HEALTHCHECK, or one a
// container is run with (WithHealthcheck); see ContainerState.Health.
type HealthConfig struct {
	Test        []string      `json:"Test,omitempty"`
	Interval    time.Duration `json:"Interval,omitempty"`
	Timeout     time.Duration `json:"Timeout,omitempty"`
	StartPeriod time.Duration `json:"StartPeriod,omitempty"`
	Retries     int           `json:"Retries,omitempty"`
}

// History is one entry of an image's history (docker history).
type History struct {
	Created    time.Time `json:"created,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Author     string    `json:"author,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
}

// ShortID returns the first 12 hex characters of the image ID, as docker
// prints it.
func (img *Image) ShortID() string { return shortID(img.ID) }

func shortID(d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// RawManifest returns a copy of the image's manifest bytes.
func (img *Image) RawManifest() []byte { return bytes.Clone(img.manifest) }

// RawConfig returns a copy of the image's config bytes (the whole OCI image
// config, with rootfs and history).
func (img *Image) RawConfig() []byte { return bytes.Clone(img.rawConfig) }

func isImageManifest(mt types.MediaType) bool {
	return mt == types.DockerManifestSchema2 || mt == types.OCIManifestSchema1
}

func isLayerMediaType(mt types.MediaType) bool {
	switch mt {
	case types.DockerLayer, types.DockerUncompressedLayer, types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer:
		return true
	}
	return false
}

// parseManifest decodes and checks an image manifest: known media types
// and well-formed digests everywhere, before any digest is used.
func parseManifest(raw []byte) (*v1.Manifest, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: decoding image manifest: %v", ErrInvalid, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1 // OCI allows omitting it
	}
	if !isImageManifest(mt) {
		return nil, fmt.Errorf("%w: manifest media type %q", ErrUnsupported, mt)
	}
	if m.Config.MediaType != types.DockerConfigJSON && m.Config.MediaType != types.OCIConfigJSON {
		return nil, fmt.Errorf("%w: config media type %q (not a container image)", ErrUnsupported, m.Config.MediaType)
	}
	if _, err := store.ValidateDigest(m.Config.Digest.String()); err != nil {
		return nil, fmt.Errorf("manifest config: %w", err)
	}
	if m.Config.Size < 0 || m.Config.Size > maxConfigSize {
		return nil, fmt.Errorf("%w: image config of %d bytes (limit %d)", ErrUnsupported, m.Config.Size, maxConfigSize)
	}
	for i, l := range m.Layers {
		if !isLayerMediaType(l.MediaType) {
			return nil, fmt.Errorf("%w: layer %d media type %q", ErrUnsupported, i, l.MediaType)
		}
		if _, err := store.ValidateDigest(l.Digest.String()); err != nil {
			return nil, fmt.Errorf("manifest layer %d: %w", i, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("%w: layer %d has negative size", ErrInvalid, i)
		}
	}
	return m, nil
}

func parseConfig(raw []byte, m *v1.Manifest) (*v1.ConfigFile, error) {
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decoding image config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%w: image config lists %d diff IDs for %d layers", ErrInvalid, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	for i, d := range cf.RootFS.DiffIDs {
		if _, err := store.ValidateDigest(d.String()); err != nil {
			return nil, fmt.Errorf("config diff ID %d: %w", i, err)
		}
	}
	return cf, nil
}

// imageFromStore reads the image whose manifest is blob manifestDigest.
func (r *Runtime) imageFromStore(manifestDigest string, refs map[string]string) (*Image, error) {
	raw, err := r.store.ReadAll(manifestDigest, maxManifestSize)
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", manifestDigest, err)
	}
	rawCfg, err := r.store.ReadAll(m.Config.Digest.String(), maxConfigSize)
	if err != nil {
		return nil, err
	}
	cf, err := parseConfig(rawCfg, m)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", m.Config.Digest, err)
	}
	img := newImage(raw, m, rawCfg, cf)
	img.Digest = manifestDigest
	for i := range img.Layers {
		if meta, err := r.snaps.Meta(img.Layers[i].ChainID); err == nil {
			img.Layers[i].UncompressedSize = meta.Size
			img.Size += meta.Size
		} else {
			img.Size += img.Layers[i].Size
		}
	}
	for k, d := range refs {
		switch {
		case d != manifestDigest || strings.HasPrefix(k, danglingPrefix):
		case strings.Contains(k, "@"):
			img.RepoDigests = append(img.RepoDigests, familiar(k))
		default:
			img.RepoTags = append(img.RepoTags, familiar(k))
		}
	}
	sort.Strings(img.RepoTags)
	sort.Strings(img.RepoDigests)
	return img, nil
}

func newImage(raw []byte, m *v1.Manifest, rawCfg []byte, cf *v1.ConfigFile) *Image {
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	img := &Image{
		ID:           store.Digest(rawCfg),
		Digest:       store.Digest(raw),
		MediaType:    string(mt),
		Created:      cf.Created.Time,
		Author:       cf.Author,
		OS:           cf.OS,
		Architecture: cf.Architecture,
		Variant:      cf.Variant,
		manifest:     raw,
		rawConfig:    rawCfg,
	}
	c := cf.Config
	img.Config = ImageConfig{
		User: c.User, ExposedPorts: c.ExposedPorts, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
		Volumes: c.Volumes, WorkingDir: c.WorkingDir, Labels: c.Labels, StopSignal: c.StopSignal,
		Shell: c.Shell, OnBuild: c.OnBuild, ArgsEscaped: c.ArgsEscaped,
	}
	if hc := c.Healthcheck; hc != nil {
		img.Config.Healthcheck = &HealthConfig{Test: hc.Test, Interval: hc.Interval, Timeout: hc.Timeout, StartPeriod: hc.StartPeriod, Retries: hc.Retries}
	}
	for _, h := range cf.History {
		img.History = append(img.History, History{Created: h.Created.Time, CreatedBy: h.CreatedBy, Author: h.Author, Comment: h.Comment, EmptyLayer: h.EmptyLayer})
	}
	diffIDs := make([]string, len(cf.RootFS.DiffIDs))
	for i, d := range cf.RootFS.DiffIDs {
		diffIDs[i] = d.String()
	}
	chains := snapshot.ChainIDs(diffIDs)
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, Layer{Digest: l.Digest.String(), DiffID: diffIDs[i], ChainID: chains[i], MediaType: string(l.MediaType), Size: l.Size})
	}
	return img
}

// Image finds an image in the store by reference ("busybox",
// "localhost:5000/app:1", "app@sha256:…") or by full or abbreviated ID, as
// docker image inspect accepts. It returns an error wrapping ErrNotFound
// when nothing matches.
func (r *Runtime) Image(ctx context.Context, ref string) (*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	refs, err := r.store.Refs()
	if err != nil {
		return nil, err
	}
	d, err := r.resolve(ref, refs)
	if err != nil {
		return nil, err
	}
	return r.imageFromStore(d, refs)
}

// maxRunImages bounds runImages: a program running from more images than
// this drops one parsed image, at random, for each it adds.
const maxRunImages = 32

// runImage is Image as Run needs it: the image ref names, parsed once per
// manifest digest and Runtime. Blobs are named by their content, so a
// parsed manifest and config (sizes included) stay true for as long as the
// manifest is in the store; the reference itself is resolved on every call
// (a tag can move). The result is shared between calls and must not be
// changed, and it carries no RepoTags or RepoDigests (they change with
// every tag).
func (r *Runtime) runImage(ref string) (*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	refs, err := r.store.Refs()
	if err != nil {
		return nil, err
	}
	d, err := r.resolve(ref, refs)
	if err != nil {
		return nil, err
	}
	r.runImagesMu.Lock()
	img := r.runImages[d]
	r.runImagesMu.Unlock()
	if img != nil && r.store.Has(d) {
		return img, nil
	}
	// Not parsed yet, or removed since (its entry is replaced below).
	img, err = r.imageFromStore(d, nil)
	if err != nil {
		return nil, err
	}
	r.runImagesMu.Lock()
	defer r.runImagesMu.Unlock()
	if r.runImages == nil {
		r.runImages = map[string]*Image{}
	}
	if _, ok := r.runImages[d]; !ok {
		for k := range r.runImages {
			if len(r.runImages) < maxRunImages {
				break
			}
			delete(r.runImages, k)
		}
	}
	r.runImages[d] = img
	return img, nil
}

// refsAndRoots returns the references with the build steps' images
// (store roots) added under intermediatePrefix, as references held them
// before roots existed: everything garbage collection must keep.
func (r *Runtime) refsAndRoots() (map[string]string, error) {
	refs, err := r.store.Refs()
	if err != nil {
		return nil, err
	}
	roots, err := r.store.Roots()
	if err != nil {
		return nil, err
	}
	for _, d := range roots {
		refs[intermediatePrefix+d] = d
	}
	return refs, nil
}

// resolve maps a reference or ID to a manifest digest.
func (r *Runtime) resolve(ref string, refs map[string]string) (string, error) {
	if parsed, err := parseRef(ref, false); err == nil {
		if d, ok := refs[refKey(parsed)]; ok {
			return d, nil
		}
		if dg, ok := parsed.(interface{ DigestStr() string }); ok && r.store.Has(dg.DigestStr()) {
			return dg.DigestStr(), nil
		}
	}
	// An ID or ID prefix: match config digests (docker's IMAGE ID) and
	// manifest digests of every referenced image.
	prefix := strings.TrimPrefix(ref, "sha256:")
	if len(prefix) == 0 || len(prefix) > 64 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return "", fmt.Errorf("image %q: %w", ref, ErrNotFound)
	}
	// A whole manifest digest that some reference holds (how the build
	// cache names its images) needs no manifest read.
	if len(prefix) == 64 {
		for _, d := range refs {
			if d == "sha256:"+prefix {
				return d, nil
			}
		}
		// A build step's image, kept by a store root, not a reference.
		if d := "sha256:" + prefix; r.store.IsRoot(d) {
			return d, nil
		}
	}
	matches := map[string]bool{}
	for _, d := range refs {
		if strings.HasPrefix(strings.TrimPrefix(d, "sha256:"), prefix) {
			matches[d] = true
			continue
		}
		if id, err := r.configDigest(d); err == nil && strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), prefix) {
			matches[d] = true
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("image %q: %w", ref, ErrNotFound)
	case 1:
		for d := range matches {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: image ID prefix %q is ambiguous", ErrInvalid, ref)
}

func (r *Runtime) configDigest(manifestDigest string) (string, error) {
	if id, ok := r.configIDs.Load(manifestDigest); ok {
		return id.(string), nil
	}
	raw, err := r.store.ReadAll(manifestDigest, maxManifestSize)
	if err != nil {
		return "", err
	}
	var m struct {
		Config struct{ Digest string } `json:"config"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	r.configIDs.Store(manifestDigest, m.Config.Digest)
	return m.Config.Digest, nil
}

// Images lists every image in the store, newest first, as docker images
// does (untagged images included, with no RepoTags).
func (r *Runtime) Images(ctx context.Context) ([]*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	refs, err := r.store.Refs()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	// Intermediate build images are kept but not listed, as docker images
	// hides them; a tag or another reference makes one visible.
	visible := map[string]bool{}
	for k, d := range refs {
		if !strings.HasPrefix(k, intermediatePrefix) {
			visible[d] = true
		}
	}
	var out []*Image
	for _, d := range refs {
		if seen[d] || !visible[d] {
			continue
		}
		seen[d] = true
		img, err := r.imageFromStore(d, refs)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Tag makes ref point at img (docker tag). An existing tag of that name
// moves; the image it left stays in the store as untagged if nothing else
// names it.
func (r *Runtime) Tag(ctx context.Context, img *Image, ref string) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	parsed, err := parseRef(ref, false)
	if err != nil {
		return err
	}
	if !isTag(parsed) {
		return fmt.Errorf("%w: cannot tag with a digest reference %q", ErrInvalid, ref)
	}
	if !r.store.Has(img.Digest) {
		return fmt.Errorf("image %s: %w", img.ShortID(), ErrNotFound)
	}
	if err := r.setRef(ctx, refKey(parsed), img.Digest); err != nil {
		return err
	}
	r.emit("image", "tag", img.ID, map[string]string{"name": familiar(refKey(parsed))})
	return nil
}

// setRef points key at digest, keeping the image it replaces as dangling.
func (r *Runtime) setRef(ctx context.Context, key, digest string) error {
	return r.store.UpdateRefs(ctx, func(refs map[string]string) error {
		old, had := refs[key]
		refs[key] = digest
		delete(refs, danglingPrefix+digest)
		if had && old != digest && !referenced(refs, old) {
			refs[danglingPrefix+old] = old
		}
		return nil
	})
}

func referenced(refs map[string]string, d string) bool {
	for _, v := range refs {
		if v == d {
			return true
		}
	}
	return false
}

// RemoveImageOption configures RemoveImage.
type RemoveImageOption interface{ applyRemoveImage(*removeImageConfig) }

type removeImageConfig struct{ force bool }

type removeImageOptionFunc func(*removeImageConfig)

func (f removeImageOptionFunc) applyRemoveImage(c *removeImageConfig) { f(c) }

// WithForceRemove makes RemoveImage remove an image by ID even when several
// references name it, and untag an image containers use (docker rmi -f).
// Default: refuse both with ErrInUse.
func WithForceRemove() RemoveImageOption {
	return removeImageOptionFunc(func(c *removeImageConfig) { c.force = true })
}

// RemoveImage removes a reference, or every reference of an image given by
// ID (docker rmi). When no reference is left the image's content is deleted
// unless another image or a container (running or not) uses it. Removing
// the last reference of an image a container was run from, or the image
// by ID, is refused with ErrInUse unless WithForceRemove, which untags it
// and keeps its content for the container, as docker rmi -f does. It
// returns the familiar names it untagged.
func (r *Runtime) RemoveImage(ctx context.Context, ref string, opts ...RemoveImageOption) ([]string, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	var cfg removeImageConfig
	for _, o := range opts {
		o.applyRemoveImage(&cfg)
	}
	var untagged []string
	removed, deleted := "", false // the manifest untagged, and whether it went, for the events
	err := r.store.UpdateRefs(ctx, func(refs map[string]string) error {
		untagged = untagged[:0]
		defer func() { deleted = removed != "" && !referenced(refs, removed) }()
		if parsed, err := parseRef(ref, false); err == nil {
			if d, ok := refs[refKey(parsed)]; ok {
				removed = d
				untagged = append(untagged, familiar(refKey(parsed)))
				delete(refs, refKey(parsed))
				// Like docker, the image's digest references go with its
				// last tag.
				tagged := false
				for k, v := range refs {
					if v == d && !strings.HasPrefix(k, danglingPrefix) && !strings.Contains(k, "@") {
						tagged = true
					}
				}
				if !tagged {
					if !cfg.force {
						if user := r.imageUser(d); user != "" {
							return fmt.Errorf("unable to remove %s (must be forced): container %s is using its image: %w", ref, user, ErrInUse)
						}
					}
					for _, k := range sortedKeys(refs) {
						if refs[k] == d && strings.Contains(k, "@") && !strings.HasPrefix(k, danglingPrefix) {
							untagged = append(untagged, familiar(k))
							delete(refs, k)
						}
					}
				}
				return nil
			}
		}
		d, err := r.resolve(ref, refs)
		if err != nil {
			return err
		}
		removed = d
		var names []string
		for k, v := range refs {
			if v == d {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		tagged := 0
		for _, k := range names {
			if !strings.HasPrefix(k, danglingPrefix) {
				tagged++
			}
		}
		if tagged > 1 && !cfg.force {
			return fmt.Errorf("unable to delete %s (must be forced): image is referenced in multiple repositories: %w", shortID(d), ErrInUse)
		}
		if !cfg.force {
			if user := r.imageUser(d); user != "" {
				return fmt.Errorf("unable to delete %s (must be forced): container %s is using it: %w", shortID(d), user, ErrInUse)
			}
		}
		for _, k := range names {
			if !strings.HasPrefix(k, danglingPrefix) {
				untagged = append(untagged, familiar(k))
			}
			delete(refs, k)
		}
		// The build cache's hold goes too, as its reference did when build
		// steps were held by references.
		return r.store.RemoveRoot(d)
	})
	if err != nil {
		return nil, err
	}
	if id, err := r.configDigest(removed); err == nil { // removed is "" only on an error above
		for _, name := range untagged {
			r.emit("image", "untag", id, map[string]string{"name": name})
		}
		if deleted {
			r.emit("image", "delete", id, nil)
		}
	}
	// Collect what is no longer referenced now if no other program is
	// adding content; otherwise the next Prune will.
	if unlock, ok := r.store.TryLock("gc", true); ok {
		defer unlock()
		_, err = r.collect(ctx)
	}
	return untagged, err
}

// PruneReport says what Prune deleted.
type PruneReport struct {
	// Blobs and Snapshots count the deleted blobs and unpacked layers.
	Blobs, Snapshots int
	// SpaceReclaimed is the number of bytes of blobs freed.
	SpaceReclaimed int64
}

// Prune deletes every blob and unpacked layer that no reference and no
// container needs (garbage collection), and the temporary files that
// programs killed while writing a cache entry left in the root's caches.
// It waits for operations in other programs that are adding content to
// the same root, Runs before their container's record is written among
// them.
func (r *Runtime) Prune(ctx context.Context) (PruneReport, error) {
	if err := r.checkOpen(); err != nil {
		return PruneReport{}, err
	}
	unlock, err := r.store.Lock(ctx, "gc", true)
	if err != nil {
		return PruneReport{}, err
	}
	defer unlock()
	r.sweepCacheTemps(time.Now().Add(-staleTempAge))
	return r.collect(ctx)
}

// staleTempAge is how old a cache's temporary file must be for Prune to
// take it for a dead writer's: a live one renames it into place within
// milliseconds of making it.
const staleTempAge = 10 * time.Minute

// sweepCacheTemps deletes the temporary files (store.WriteCacheFile's
// ".tmp-" files) in the directories under cache/ last modified before
// cutoff. The caches' own entries are kept: each is worth a recomputation.
func (r *Runtime) sweepCacheTemps(cutoff time.Time) {
	caches := filepath.Join(r.root, "cache")
	dirs, _ := os.ReadDir(caches)
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(caches, d.Name())
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), ".tmp-") {
				continue
			}
			if info, err := e.Info(); err == nil && info.ModTime().Before(cutoff) {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// live returns the blobs and snapshots the references need. The caller
// holds the gc lock exclusively (collect).
func (r *Runtime) live() (blobs, snaps map[string]bool, err error) {
	refs, err := r.refsAndRoots()
	if err != nil {
		return nil, nil, err
	}
	blobs, snaps = map[string]bool{}, map[string]bool{}
	for name, d := range refs {
		if blobs[d] {
			continue
		}
		if strings.HasPrefix(name, intermediatePrefix) && !r.store.Has(d) {
			// A build's root whose manifest is gone (an older berth's
			// build wrote it outside the gc lock, and a collection took
			// the manifest): it keeps nothing, and reading it would fail
			// every collection from now on.
			r.store.RemoveRoot(d)
			continue
		}
		img, err := r.imageFromStore(d, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("reading image %s: %w", d, err)
		}
		keepImage(blobs, snaps, d, img)
	}
	// Containers, running or not, keep their image's content: its layers
	// are their lower directories, and Commit, Diff and Export read the
	// image (docker keeps an untagged image while a container uses it).
	for _, rec := range r.containerRecords() {
		for _, c := range rec.Config.ChainIDs {
			snaps[c] = true
		}
		d := rec.Config.ImageDigest
		if d == "" || blobs[d] || !r.store.Has(d) {
			continue
		}
		if img, err := r.imageFromStore(d, nil); err == nil {
			keepImage(blobs, snaps, d, img)
		}
	}
	return blobs, snaps, nil
}

// keepImage marks the blobs and snapshots of img, whose manifest is d.
func keepImage(blobs, snaps map[string]bool, d string, img *Image) {
	blobs[d] = true
	blobs[img.ID] = true
	for _, l := range img.Layers {
		blobs[l.Digest] = true
		snaps[l.ChainID] = true
	}
}

// containerRecords reads the record of every container of the root that
// has one.
func (r *Runtime) containerRecords() []*containerRecord {
	entries, _ := os.ReadDir(r.containersDir())
	var out []*containerRecord
	for _, e := range entries {
		if rec, err := r.readRecord(e.Name()); err == nil {
			out = append(out, rec)
		}
	}
	return out
}

// imageUser returns the name of a container run from the image whose
// manifest is d (the first by name), or "".
func (r *Runtime) imageUser(d string) string {
	user := ""
	for _, rec := range r.containerRecords() {
		if rec.Config.ImageDigest == d && (user == "" || rec.Name < user) {
			user = rec.Name
		}
	}
	return user
}

// collect deletes unreferenced content. The caller holds the gc lock
// exclusively.
func (r *Runtime) collect(ctx context.Context) (PruneReport, error) {
	var rep PruneReport
	liveBlobs, liveSnaps, err := r.live()
	if err != nil {
		return rep, err
	}
	all, err := r.store.Blobs()
	if err != nil {
		return rep, err
	}
	for _, d := range all {
		if liveBlobs[d] {
			continue
		}
		size, _ := r.store.Size(d)
		if err := r.store.Delete(d); err != nil {
			return rep, err
		}
		rep.Blobs++
		rep.SpaceReclaimed += size
	}
	snaps, err := r.snaps.List()
	if err != nil {
		return rep, err
	}
	for _, c := range snaps {
		if liveSnaps[c] {
			continue
		}
		if err := r.snaps.Remove(ctx, c); err != nil {
			return rep, err
		}
		rep.Snapshots++
	}
	return rep, nil
}

// Check verifies the store: every blob hashes to its name, every reference
// names a manifest whose config and layers are present and valid, and every
// layer of a referenced image is unpacked. It returns all problems found,
// joined. A store left by a program killed at any point passes Check.
func (r *Runtime) Check(ctx context.Context) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	var errs []error
	all, err := r.store.Blobs()
	if err != nil {
		return err
	}
	for _, d := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := store.ValidateDigest(d); err != nil {
			errs = append(errs, fmt.Errorf("stray file in blob store: %w", err))
			continue
		}
		if err := r.store.Verify(d); err != nil {
			errs = append(errs, err)
		}
	}
	refs, err := r.refsAndRoots()
	if err != nil {
		return err
	}
	for k, d := range refs {
		img, err := r.imageFromStore(d, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("reference %s: %w", familiar(k), err))
			continue
		}
		for _, l := range img.Layers {
			if !r.store.Has(l.Digest) {
				errs = append(errs, fmt.Errorf("reference %s: layer blob %s missing", familiar(k), l.Digest))
			}
			if !r.snaps.Exists(l.ChainID) {
				errs = append(errs, fmt.Errorf("reference %s: layer %s not unpacked", familiar(k), l.ChainID))
			}
		}
	}
	return errors.Join(errs...)
}
