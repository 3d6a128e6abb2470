package berth

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/snapshot"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// fetchFunc opens the content of a blob (config or layer) from wherever an
// image comes from: a registry, an archive, a layout. The store verifies
// every byte against the descriptor, so a source need not.
type fetchFunc func(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)

// maxParallelLayers bounds concurrent layer downloads and unpacks.
const maxParallelLayers = 6

// ingest makes the image whose manifest is raw complete in the store: every
// missing blob is fetched once and verified, every layer is unpacked into
// its snapshot while it downloads, then config and manifest are stored. The
// caller holds the gc lock shared and sets references afterwards.
func (r *Runtime) ingest(ctx context.Context, raw []byte, fetch fetchFunc, prog *progress) (*Image, error) {
	m, err := parseManifest(raw)
	if err != nil {
		return nil, err
	}
	rawCfg, err := r.ensureConfig(ctx, m.Config, fetch)
	if err != nil {
		return nil, err
	}
	cf, err := parseConfig(rawCfg, m)
	if err != nil {
		return nil, err
	}
	img := newImage(raw, m, rawCfg, cf)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallelLayers)
	for i, l := range img.Layers {
		desc := m.Layers[i]
		g.Go(func() error {
			if err := r.ensureLayer(gctx, desc, l, fetch, prog); err != nil {
				return fmt.Errorf("layer %s: %w", shortID(l.Digest), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if _, err := r.store.Put(raw, ""); err != nil {
		return nil, err
	}
	return img, nil
}

func (r *Runtime) ensureConfig(ctx context.Context, d v1.Descriptor, fetch fetchFunc) ([]byte, error) {
	if !r.store.Has(d.Digest.String()) {
		// Take the blob's lock before fetching so that programs pulling
		// the same image at once fetch it once.
		w, err := r.store.Writer(d.Digest.String(), d.Size)
		if err != nil {
			return nil, err
		}
		defer w.Close()
		if !w.Present() {
			rc, err := fetch(ctx, d)
			if err != nil {
				return nil, fmt.Errorf("fetching image config: %w", err)
			}
			defer rc.Close()
			if _, err := io.Copy(w, io.LimitReader(rc, d.Size+1)); err != nil {
				return nil, fmt.Errorf("fetching image config: %w", err)
			}
			if err := w.Commit(); err != nil {
				return nil, fmt.Errorf("image config: %w", err)
			}
		}
	}
	return r.store.ReadAll(d.Digest.String(), maxConfigSize)
}

// checkDiffID reads the compressed layer stream src to its end and checks
// that its uncompressed content is diffID.
func checkDiffID(src io.Reader, diffID string) error {
	tarStream, err := archive.Decompress(src)
	if err != nil {
		return err
	}
	defer tarStream.Close()
	h := newSHA256()
	if _, err := io.Copy(h, tarStream); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, src); err != nil { // a trailer, padding
		return err
	}
	if got := h.digest(); got != diffID {
		return fmt.Errorf("%w: got %s, want %s", snapshot.ErrDiffIDMismatch, got, diffID)
	}
	return nil
}

// ensureLayer makes the layer's blob and snapshot present. A missing blob
// is streamed once: written to the store and, in the same pass,
// decompressed and unpacked, so download, verification and unpack overlap.
// The snapshot is registered only after the blob verified.
func (r *Runtime) ensureLayer(ctx context.Context, desc v1.Descriptor, l Layer, fetch fetchFunc, prog *progress) error {
	haveSnap := r.snaps.Exists(l.ChainID)
	if r.store.Has(l.Digest) && haveSnap {
		prog.cached(l.Digest, l.Size)
		return nil
	}
	w, err := r.store.Writer(l.Digest, l.Size)
	if err != nil {
		return err
	}
	defer w.Close()
	if w.Present() {
		// Another program fetched it while we waited for its lock.
		w.Close()
		if haveSnap || r.snaps.Exists(l.ChainID) {
			prog.cached(l.Digest, l.Size)
			return nil
		}
		return r.unpackFromStore(ctx, l, prog)
	}
	rc, err := fetch(ctx, desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	src := io.TeeReader(prog.reader(l.Digest, l.Size, rc), w)
	if haveSnap {
		// The snapshot of this diff ID is here already, but the blob is
		// new: it must hold what the config says it does, or Save and
		// Push would ship other content under the image's name.
		if err := checkDiffID(src, l.DiffID); err != nil {
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		return w.Commit()
	}
	tarStream, err := archive.Decompress(src)
	if err != nil {
		return err
	}
	defer tarStream.Close()
	_, err = r.snaps.Unpack(ctx, l.ChainID, l.DiffID, tarStream, r.applyOptions(), func() error {
		// Read the rest of the compressed stream (trailer, padding) and
		// verify the blob before the snapshot becomes visible.
		if _, err := io.Copy(io.Discard, src); err != nil {
			return err
		}
		return w.Commit()
	})
	if err != nil {
		return err
	}
	prog.done(l.Digest, l.Size)
	return nil
}

func (r *Runtime) unpackFromStore(ctx context.Context, l Layer, prog *progress) error {
	f, err := r.store.Open(l.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	tarStream, err := archive.Decompress(f)
	if err != nil {
		return err
	}
	defer tarStream.Close()
	unpack := r.snaps.Unpack
	if l.Digest == l.DiffID {
		// An uncompressed blob: the store holds it under the digest its
		// content hashes to (checked when it was written), which is the
		// diff ID.
		unpack = r.snaps.UnpackHashed
	}
	if _, err := unpack(ctx, l.ChainID, l.DiffID, tarStream, r.applyOptions(), nil); err != nil {
		return err
	}
	prog.done(l.Digest, l.Size)
	return nil
}

func (r *Runtime) applyOptions() archive.ApplyOptions {
	return archive.ApplyOptions{}
}

// Progress reports how far the transfer of one layer got.
//
// A pull reports per layer. A push reports the whole image: Layer is
// empty, Current and Total count all the bytes to upload, and Done comes
// with the last of them.
type Progress struct {
	// Layer is the digest of the layer blob (pull only).
	Layer string
	// Current and Total are bytes transferred so far and the blob's size.
	Current, Total int64
	// Done reports that the layer is complete (downloaded and unpacked),
	// or on push that the upload is.
	Done bool
	// Cached reports that nothing had to be transferred: the layer was
	// already present (pull only).
	Cached bool
}

// progress serializes and rate-limits progress callbacks. A nil *progress
// reports nothing.
type progress struct {
	mu   sync.Mutex
	fn   func(Progress)
	last map[string]time.Time
}

func newProgress(fn func(Progress)) *progress {
	if fn == nil {
		return nil
	}
	return &progress{fn: fn, last: map[string]time.Time{}}
}

func (p *progress) report(ev Progress, force bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(p.last[ev.Layer]) < 50*time.Millisecond {
		return
	}
	p.last[ev.Layer] = now
	p.fn(ev)
}

func (p *progress) cached(layer string, size int64) {
	p.report(Progress{Layer: layer, Current: size, Total: size, Done: true, Cached: true}, true)
}

func (p *progress) done(layer string, size int64) {
	p.report(Progress{Layer: layer, Current: size, Total: size, Done: true}, true)
}

func (p *progress) reader(layer string, total int64, r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return &progressReader{p: p, layer: layer, total: total, r: r}
}

type progressReader struct {
	p     *progress
	layer string
	total int64
	n     int64
	r     io.Reader
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.n += int64(n)
	pr.p.report(Progress{Layer: pr.layer, Current: pr.n, Total: pr.total}, false)
	return n, err
}
