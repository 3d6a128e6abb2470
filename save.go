package berth

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations that name an image inside an OCI layout, as containerd and
// docker write them.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerdRef = "io.containerd.image.name"
)

// dockerManifestEntry is one entry of a docker save archive's manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// savedImage is an image chosen for Save with the reference it was named by.
type savedImage struct {
	img *Image
	key string // canonical reference, or "" when saved by ID
}

func (r *Runtime) imagesForSave(ctx context.Context, refs []string) ([]savedImage, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("%w: no image to save", ErrInvalid)
	}
	stored, err := r.store.Refs()
	if err != nil {
		return nil, err
	}
	var out []savedImage
	for _, ref := range refs {
		img, err := r.Image(ctx, ref)
		if err != nil {
			return nil, err
		}
		key := ""
		if parsed, err := parseRef(ref, false); err == nil {
			if _, ok := stored[refKey(parsed)]; ok && !strings.Contains(refKey(parsed), "@") {
				key = refKey(parsed)
			}
		}
		out = append(out, savedImage{img: img, key: key})
	}
	return out, nil
}

// Save writes images to w as one tar archive that both `docker load` and
// OCI tools read (docker save): an OCI image layout (oci-layout, index.json,
// blobs/sha256/…) plus docker's manifest.json, as Docker 25 and later
// write it. Each blob is written once.
func (r *Runtime) Save(ctx context.Context, w io.Writer, refs ...string) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	images, err := r.imagesForSave(ctx, refs)
	if err != nil {
		return err
	}
	index, dockerManifest, blobs := layoutOf(images)
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	writeFile := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := writeFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, d := range blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.writeBlob(tw, d, epoch); err != nil {
			return fmt.Errorf("saving: %w", err)
		}
	}
	if err := writeFile("index.json", index); err != nil {
		return err
	}
	if err := writeFile("manifest.json", dockerManifest); err != nil {
		return err
	}
	return tw.Close()
}

func (r *Runtime) writeBlob(tw *tar.Writer, d string, mtime time.Time) error {
	f, err := r.store.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h, _ := store.ValidateDigest(d)
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + h, Mode: 0o644, Size: fi.Size(), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// layoutOf builds index.json, manifest.json and the ordered, deduplicated
// list of blobs for a set of images.
func layoutOf(images []savedImage) (index, dockerManifest []byte, blobs []string) {
	seen := map[string]bool{}
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			blobs = append(blobs, d)
		}
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	entries := []dockerManifestEntry{}
	byConfig := map[string]int{}
	for _, s := range images {
		img := s.img
		add(img.Digest)
		add(img.ID)
		var layers []string
		for _, l := range img.Layers {
			add(l.Digest)
			h, _ := store.ValidateDigest(l.Digest)
			layers = append(layers, "blobs/sha256/"+h)
		}
		desc := v1.Descriptor{MediaType: types.MediaType(img.MediaType), Size: int64(len(img.manifest))}
		desc.Digest, _ = v1.NewHash(img.Digest)
		if s.key != "" {
			_, tag := splitRepoTag(s.key)
			desc.Annotations = map[string]string{annotationContainerdRef: s.key, annotationRefName: tag}
		}
		idx.Manifests = append(idx.Manifests, desc)
		i, ok := byConfig[img.ID]
		if !ok {
			h, _ := store.ValidateDigest(img.ID)
			entries = append(entries, dockerManifestEntry{Config: "blobs/sha256/" + h, RepoTags: []string{}, Layers: layers})
			i = len(entries) - 1
			byConfig[img.ID] = i
		}
		if s.key != "" {
			entries[i].RepoTags = append(entries[i].RepoTags, familiar(s.key))
		}
	}
	index, _ = json.Marshal(idx)
	dockerManifest, _ = json.Marshal(entries)
	return index, dockerManifest, blobs
}

// SaveLayout writes images into dir as an OCI image layout directory,
// creating dir if needed. Existing blobs in dir are kept; index.json is
// replaced.
func (r *Runtime) SaveLayout(ctx context.Context, dir string, refs ...string) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	images, err := r.imagesForSave(ctx, refs)
	if err != nil {
		return err
	}
	index, _, blobs := layoutOf(images)
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	for _, d := range blobs {
		if err := r.copyBlobTo(d, dir); err != nil {
			return fmt.Errorf("saving layout: %w", err)
		}
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	return store.WriteFileAtomic(filepath.Join(dir, "index.json"), index, 0o644)
}

// copyBlobTo copies blob d of the store into the layout at dir, unless a
// regular file of its size is there already (an earlier save's; one torn
// or replaced by something else is written again).
func (r *Runtime) copyBlobTo(d, dir string) error {
	h, _ := store.ValidateDigest(d)
	dst := filepath.Join(dir, "blobs", "sha256", h)
	src, err := r.store.Open(d)
	if err != nil {
		return err
	}
	defer src.Close()
	if have, err := os.Lstat(dst); err == nil {
		if want, err := src.Stat(); err == nil && have.Mode().IsRegular() && have.Size() == want.Size() {
			return nil
		}
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return err
	}
	f.Chmod(0o644)
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
