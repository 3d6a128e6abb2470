package berth

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// files is read access to the members of an image archive or layout, by
// their slash-separated path.
type files interface {
	open(name string) (io.ReadCloser, error)
	has(name string) bool
}

// tarFiles indexes a seekable tar once and serves members as section
// readers, so blobs stream straight from the archive into the store.
type tarFiles struct {
	f       io.ReaderAt
	members map[string]section
}

type section struct{ off, size int64 }

func indexTar(f *os.File) (*tarFiles, error) {
	tf := &tarFiles{f: f, members: map[string]section{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading image archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		tf.members[path.Clean("/" + h.Name)[1:]] = section{off: off, size: h.Size}
	}
}

func (t *tarFiles) has(name string) bool { _, ok := t.members[name]; return ok }

func (t *tarFiles) open(name string) (io.ReadCloser, error) {
	s, ok := t.members[name]
	if !ok {
		return nil, fmt.Errorf("image archive has no file %q: %w", name, ErrNotFound)
	}
	return io.NopCloser(io.NewSectionReader(t.f, s.off, s.size)), nil
}

// dirFiles serves an OCI layout directory. Every name is resolved inside
// the directory: a layout whose blobs are symlinks to elsewhere is refused.
type dirFiles struct{ root *os.Root }

func (d *dirFiles) has(name string) bool { _, err := d.root.Lstat(name); return err == nil }

// open opens a regular file of the layout. Without O_NONBLOCK, opening a
// FIFO someone left in the directory would block until a writer came,
// beyond any context, holding whatever locks the reader holds.
func (d *dirFiles) open(name string) (io.ReadCloser, error) {
	f, err := d.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: OCI layout: %s is not a regular file", ErrInvalid, name)
	}
	return f, nil
}

func readMember(fs files, name string, limit int64) ([]byte, error) {
	rc, err := fs.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, name, limit)
	}
	return b, nil
}

// Load reads images from a `docker save` archive or an OCI image layout
// tar (docker load), stores them and unpacks their layers, and returns
// them. The references recorded in the archive are set. A reader that is
// not a regular file is first copied to a temp file under the root.
func (r *Runtime) Load(ctx context.Context, rd io.Reader) ([]*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	f, ok := rd.(*os.File)
	if fi, err := fileInfo(f, ok); err != nil || !fi.Mode().IsRegular() {
		dir, release, err := r.store.TempDir("load-")
		if err != nil {
			return nil, err
		}
		defer release()
		tmp, err := os.Create(path.Join(dir, "archive.tar"))
		if err != nil {
			return nil, err
		}
		defer tmp.Close()
		src, err := archive.Decompress(bufio.NewReaderSize(rd, archive.CopyBufSize))
		if err != nil {
			return nil, fmt.Errorf("loading: %w", err)
		}
		if _, err := io.Copy(tmp, src); err != nil {
			return nil, fmt.Errorf("loading: reading archive: %w", err)
		}
		f = tmp
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tf, err := indexTar(f)
	if err != nil {
		return nil, fmt.Errorf("loading: %w", err)
	}
	imgs, err := r.loadFrom(ctx, tf)
	if err != nil {
		return nil, fmt.Errorf("loading: %w", err)
	}
	return imgs, nil
}

func fileInfo(f *os.File, ok bool) (fs.FileInfo, error) {
	if !ok || f == nil {
		return nil, errors.New("not a file")
	}
	// A compressed archive must go through decompression first.
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 4 && (bytes.Equal(magic[:2], []byte{0x1f, 0x8b}) || bytes.Equal(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd})) {
		return nil, errors.New("compressed")
	}
	return f.Stat()
}

// LoadLayout reads every image of an OCI image layout directory into the
// store. Images are named by their io.containerd.image.name annotation, or
// by org.opencontainers.image.ref.name when it is a full reference.
func (r *Runtime) LoadLayout(ctx context.Context, dir string) ([]*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("loading OCI layout: %w", err)
	}
	defer root.Close()
	imgs, err := r.loadFrom(ctx, &dirFiles{root: root})
	if err != nil {
		return nil, fmt.Errorf("loading OCI layout %s: %w", dir, err)
	}
	return imgs, nil
}

// loadedImage is a manifest found in an archive with the names it carries.
type loadedImage struct {
	manifest []byte
	names    []string  // canonical reference keys
	fetch    fetchFunc // serves blobs; nil means the layout's blobs/sha256
}

func (r *Runtime) loadFrom(ctx context.Context, fs files) ([]*Image, error) {
	var found []loadedImage
	var err error
	switch {
	case fs.has("index.json"):
		found, err = ociManifests(fs)
	case fs.has("manifest.json"):
		found, err = dockerManifests(fs)
	default:
		return nil, fmt.Errorf("%w: neither an OCI layout (index.json) nor a docker save archive (manifest.json)", ErrUnsupported)
	}
	if err != nil {
		return nil, err
	}
	fetch := func(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
		h, err := store.ValidateDigest(d.Digest.String())
		if err != nil {
			return nil, err
		}
		return fs.open("blobs/sha256/" + h)
	}
	unlock, err := r.gcShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []*Image
	for _, li := range found {
		f := fetch
		if li.fetch != nil {
			f = li.fetch
		}
		img, err := r.ingest(ctx, li.manifest, f, nil)
		if err != nil {
			return nil, err
		}
		for _, n := range li.names {
			if err := r.setRef(ctx, n, img.Digest); err != nil {
				return nil, err
			}
		}
		if len(li.names) == 0 {
			if err := r.store.UpdateRefs(ctx, func(refs map[string]string) error {
				if !referenced(refs, img.Digest) {
					refs[danglingPrefix+img.Digest] = img.Digest
				}
				return nil
			}); err != nil {
				return nil, err
			}
		}
		loaded, err := r.Image(ctx, img.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, loaded)
	}
	return out, nil
}

func ociManifests(fs files) ([]loadedImage, error) {
	raw, err := readMember(fs, "index.json", maxManifestSize)
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("decoding index.json: %w", err)
	}
	// Docker's manifest.json, when present, carries the familiar names.
	tagsByConfig := map[string][]string{}
	if fs.has("manifest.json") {
		if b, err := readMember(fs, "manifest.json", maxManifestSize); err == nil {
			var entries []dockerManifestEntry
			if json.Unmarshal(b, &entries) == nil {
				for _, e := range entries {
					tagsByConfig["sha256:"+path.Base(e.Config)] = e.RepoTags
				}
			}
		}
	}
	var out []loadedImage
	var walk func(descs []v1.Descriptor, depth int) error
	walk = func(descs []v1.Descriptor, depth int) error {
		for _, d := range descs {
			h, err := store.ValidateDigest(d.Digest.String())
			if err != nil {
				return err
			}
			b, err := readMember(fs, "blobs/sha256/"+h, maxManifestSize)
			if err != nil {
				return err
			}
			if store.Digest(b) != d.Digest.String() {
				return fmt.Errorf("%w: manifest %s does not match its digest", store.ErrDigestMismatch, d.Digest)
			}
			switch {
			case d.MediaType.IsIndex():
				if depth > 4 {
					return fmt.Errorf("%w: indexes nested too deep", ErrUnsupported)
				}
				var child v1.IndexManifest
				if err := json.Unmarshal(b, &child); err != nil {
					return err
				}
				// Pick this platform's image from a nested index.
				plat, _ := v1.ParsePlatform(hostPlatform())
				var pick []v1.Descriptor
				for _, m := range child.Manifests {
					if m.Platform == nil || m.Platform.Satisfies(*plat) {
						if d.Annotations != nil && m.Annotations == nil {
							m.Annotations = d.Annotations
						}
						pick = append(pick, m)
						break
					}
				}
				if err := walk(pick, depth+1); err != nil {
					return err
				}
			case d.MediaType.IsImage() || d.MediaType == "":
				li := loadedImage{manifest: b}
				if n := d.Annotations[annotationContainerdRef]; n != "" {
					if p, err := parseRef(n, false); err == nil {
						li.names = append(li.names, refKey(p))
					}
				} else if n := d.Annotations[annotationRefName]; n != "" {
					if p, err := parseRef(n, false); err == nil && (bytes.ContainsAny([]byte(n), ":/")) {
						li.names = append(li.names, refKey(p))
					}
				}
				if len(li.names) == 0 {
					if m, err := parseManifest(b); err == nil {
						for _, t := range tagsByConfig[m.Config.Digest.String()] {
							if p, err := parseRef(t, false); err == nil {
								li.names = append(li.names, refKey(p))
							}
						}
					}
				}
				out = append(out, li)
			}
		}
		return nil
	}
	return out, walk(idx.Manifests, 0)
}

// dockerManifests reads a legacy docker save archive, which has no image
// manifests, and makes an OCI manifest for each image from its config and
// layer files.
func dockerManifests(fs files) ([]loadedImage, error) {
	b, err := readMember(fs, "manifest.json", maxManifestSize)
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("decoding manifest.json: %w", err)
	}
	var out []loadedImage
	for _, e := range entries {
		cfg, err := readMember(fs, path.Clean("/" + e.Config)[1:], maxConfigSize)
		if err != nil {
			return nil, err
		}
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
		m.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfg))}
		m.Config.Digest, _ = v1.NewHash(store.Digest(cfg))
		paths := map[string]string{m.Config.Digest.String(): ""}
		for _, lp := range e.Layers {
			lp = path.Clean("/" + lp)[1:]
			d, size, mt, err := describeLayerFile(fs, lp)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", lp, err)
			}
			desc := v1.Descriptor{MediaType: mt, Size: size}
			desc.Digest, _ = v1.NewHash(d)
			m.Layers = append(m.Layers, desc)
			paths[d] = lp
		}
		raw, _ := json.Marshal(m)
		fetch := func(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
			if d.Digest == m.Config.Digest {
				return io.NopCloser(bytes.NewReader(cfg)), nil
			}
			lp, ok := paths[d.Digest.String()]
			if !ok {
				return nil, fmt.Errorf("no layer %s: %w", d.Digest, ErrNotFound)
			}
			return fs.open(lp)
		}
		li := loadedImage{manifest: raw, fetch: fetch}
		for _, t := range e.RepoTags {
			if p, err := parseRef(t, false); err == nil {
				li.names = append(li.names, refKey(p))
			}
		}
		out = append(out, li)
	}
	return out, nil
}

// describeLayerFile hashes a layer file of a docker archive and tells its
// compression from its first bytes.
func describeLayerFile(fs files, name string) (digest string, size int64, mt types.MediaType, err error) {
	rc, err := fs.open(name)
	if err != nil {
		return "", 0, "", err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		mt = types.OCILayer
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		mt = types.OCILayerZStd
	default:
		mt = types.OCIUncompressedLayer
	}
	h := newSHA256()
	size, err = io.Copy(h, br)
	if err != nil {
		return "", 0, "", err
	}
	return h.digest(), size, mt, nil
}

// ImportOption configures Import.
type ImportOption interface{ applyImport(*importConfig) }

type importConfig struct {
	message string
	changes []string
}

type importOptionFunc func(*importConfig)

func (f importOptionFunc) applyImport(c *importConfig) { f(c) }

// WithImportMessage sets the history comment of the imported layer
// (docker import -m). Default: "Imported from -".
func WithImportMessage(msg string) ImportOption {
	return importOptionFunc(func(c *importConfig) { c.message = msg })
}

// Import makes a one-layer image from a root filesystem tar, plain or
// compressed with gzip or zstd (docker import), and tags it ref when ref is
// not empty. The image's platform is this machine's.
func (r *Runtime) Import(ctx context.Context, rd io.Reader, ref string, opts ...ImportOption) (*Image, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	cfg := importConfig{message: "Imported from -"}
	for _, o := range opts {
		o.applyImport(&cfg)
	}
	var key string
	if ref != "" {
		parsed, err := parseRef(ref, false)
		if err != nil {
			return nil, err
		}
		key = refKey(parsed)
	}
	unlock, err := r.gcShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tarStream, err := archive.Decompress(rd)
	if err != nil {
		return nil, fmt.Errorf("importing: %w", err)
	}
	defer tarStream.Close()
	diffID, size, err := r.store.Ingest(tarStream)
	if err != nil {
		return nil, fmt.Errorf("importing: %w", err)
	}
	now := time.Now().UTC()
	cf := v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: now},
		RootFS:       v1.RootFS{Type: "layers"},
		History:      []v1.History{{Created: v1.Time{Time: now}, Comment: cfg.message}},
	}
	h, _ := v1.NewHash(diffID)
	cf.RootFS.DiffIDs = []v1.Hash{h}
	img, err := r.writeImage(ctx, &cf, []Layer{{Digest: diffID, DiffID: diffID, MediaType: string(types.DockerUncompressedLayer), Size: size}})
	if err != nil {
		return nil, fmt.Errorf("importing: %w", err)
	}
	if key != "" {
		err = r.setRef(ctx, key, img.Digest)
	} else {
		err = r.store.UpdateRefs(ctx, func(refs map[string]string) error {
			if !referenced(refs, img.Digest) {
				refs[danglingPrefix+img.Digest] = img.Digest
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	return r.Image(ctx, img.Digest)
}

// writeImage stores a config and a Docker schema 2 manifest for layers whose
// blobs are in the store, unpacking any layer not unpacked yet. The caller
// holds the gc lock shared.
func (r *Runtime) writeImage(ctx context.Context, cf *v1.ConfigFile, layers []Layer) (*Image, error) {
	rawCfg, err := json.Marshal(cf)
	if err != nil {
		return nil, err
	}
	cfgDigest, err := r.store.Put(rawCfg, "")
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2}
	m.Config = v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(rawCfg))}
	m.Config.Digest, _ = v1.NewHash(cfgDigest)
	for _, l := range layers {
		d := v1.Descriptor{MediaType: types.MediaType(l.MediaType), Size: l.Size}
		d.Digest, _ = v1.NewHash(l.Digest)
		m.Layers = append(m.Layers, d)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	fetch := func(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
		return r.store.Open(d.Digest.String())
	}
	return r.ingest(ctx, raw, fetch, nil)
}
