// Package snapshot keeps unpacked image layers on disk, one directory per
// chain ID, each holding only its own layer's content in overlayfs form
// (whiteouts as 0:0 character devices, opaque directories marked by the
// trusted.overlay.opaque xattr). A container's root is an overlay mount of
// these directories, topmost layer first, under its own upper directory.
//
// Because every layer is unpacked into its own empty directory, the layers
// of one image unpack independently and in parallel. A snapshot becomes
// visible only by the rename of a complete, verified temp directory, so a
// killed unpack leaves nothing registered.
package snapshot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sys/unix"
)

// Meta describes an unpacked layer.
type Meta struct {
	ChainID string `json:"chainID"`
	DiffID  string `json:"diffID"`
	// Size is the length of the uncompressed layer tar.
	Size int64 `json:"size"`
}

// Snapshots is the set of unpacked layers under <root>/snapshots.
type Snapshots struct {
	dir   string // snapshots/<hex>: complete snapshots
	tmp   string // snapshots/.tmp/<hex>: unpacks and removals under way
	locks *store.Store
}

// New opens the snapshot directory of a berth root, sweeping temp
// directories of unpacks whose process died.
func New(locks *store.Store) (*Snapshots, error) {
	dir := filepath.Join(locks.Root(), "snapshots")
	s := &Snapshots{dir: dir, tmp: filepath.Join(dir, ".tmp"), locks: locks}
	if err := os.MkdirAll(s.tmp, 0o700); err != nil {
		return nil, err
	}
	// Unpacks and removals under way live in .tmp/, so that every program
	// opening the root reads only them, not the list of every snapshot.
	// Roots written before kept them as .tmp-<hex> among the snapshots:
	// those are swept once, the first time.
	sweep := func(dir, prefix string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			h, ok := strings.CutPrefix(e.Name(), prefix)
			if _, err := store.ValidateDigest("sha256:" + h); !ok || err != nil {
				continue // the marker below, or not berth's
			}
			if unlock, ok := locks.TryLock("snap-"+h, true); ok {
				os.RemoveAll(filepath.Join(dir, e.Name()))
				unlock()
			}
		}
		return nil
	}
	if err := sweep(s.tmp, ""); err != nil {
		return nil, err
	}
	legacy := filepath.Join(s.tmp, ".legacy-swept")
	if _, err := os.Stat(legacy); errors.Is(err, fs.ErrNotExist) {
		if err := sweep(dir, ".tmp-"); err != nil {
			return nil, err
		}
		if err := os.WriteFile(legacy, nil, 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Init returns the init layer of the snapshot chainID (init/ beside its
// fs/: a layer to stack above it that depends on nothing but the layers
// below, so every image with this top layer shares it and it goes when
// the snapshot goes), making it with fill if it is not there yet. fill
// gets an empty upper directory to fill and empty work and mnt directories
// beside it, on the same filesystem. It runs in the snapshots' temp space
// under a lock of its own, so a program killed meanwhile leaves nothing
// that the next New does not sweep, and under the snapshot's lock shared,
// so a removal waits. The result is renamed into place without replacing:
// of two programs making it at once, the second uses the first's.
func (s *Snapshots) Init(ctx context.Context, chainID string, fill func(upper, work, mnt string) error) (string, error) {
	d, err := s.Dir(chainID)
	if err != nil {
		return "", err
	}
	final := filepath.Join(d, "init")
	if _, err := os.Lstat(final); err == nil {
		return final, nil
	}
	unlock, err := s.locks.Lock(ctx, "snap-"+filepath.Base(d), false)
	if err != nil {
		return "", err
	}
	defer unlock()
	tmp, release, err := s.tempDir()
	if err != nil {
		return "", err
	}
	defer release()
	upper, work, mnt := filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "mnt")
	for _, dir := range []string{upper, work, mnt} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", err
		}
	}
	if err := fill(upper, work, mnt); err != nil {
		return "", err
	}
	err = unix.Renameat2(unix.AT_FDCWD, upper, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("registering the init layer of %s: %w", chainID, err)
	}
	return final, nil
}

// tempDir makes a directory in the snapshots' temp space, held under a
// lock of its own named like it (as an unpack's is), so that no sweep
// takes it while this program lives and the next New's does if it dies.
// release deletes it.
func (s *Snapshots) tempDir() (dir string, release func(), err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	name := hex.EncodeToString(b[:])
	unlock, ok := s.locks.TryLock("snap-"+name, true)
	if !ok {
		return "", nil, fmt.Errorf("temp snapshot lock %s is held", name)
	}
	dir = filepath.Join(s.tmp, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		unlock()
		return "", nil, err
	}
	return dir, func() {
		os.RemoveAll(dir)
		os.Remove(filepath.Join(s.locks.Root(), "locks", "snap-"+name))
		unlock()
	}, nil
}

// ChainIDs computes the chain IDs of a stack of diff IDs, as the OCI image
// spec defines them: the first is the first diff ID, each next one is
// sha256 of "parent diffID".
func ChainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// Dir returns the snapshot's directory (holding meta.json and fs/).
func (s *Snapshots) Dir(chainID string) (string, error) {
	h, err := store.ValidateDigest(chainID)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, h), nil
}

// FS returns the directory to use as an overlay lower layer.
func (s *Snapshots) FS(chainID string) (string, error) {
	d, err := s.Dir(chainID)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "fs"), nil
}

// Exists reports whether the snapshot is present and complete.
func (s *Snapshots) Exists(chainID string) bool {
	d, err := s.Dir(chainID)
	if err != nil {
		return false
	}
	_, err = os.Lstat(filepath.Join(d, "meta.json"))
	return err == nil
}

// Meta reads a snapshot's metadata.
func (s *Snapshots) Meta(chainID string) (Meta, error) {
	var m Meta
	d, err := s.Dir(chainID)
	if err != nil {
		return m, err
	}
	b, err := os.ReadFile(filepath.Join(d, "meta.json"))
	if err != nil {
		return m, fmt.Errorf("snapshot %s: %w", chainID, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("snapshot %s: %w", chainID, err)
	}
	return m, nil
}

// ErrDiffIDMismatch reports a layer whose uncompressed content does not hash
// to the diff ID the image config lists.
var ErrDiffIDMismatch = errors.New("layer content does not match its diff ID")

// Unpack reads the uncompressed layer tar r, applies it into a fresh
// directory, checks that the stream hashes to diffID and registers it as
// chainID. If the snapshot appears meanwhile (another process unpacked it),
// r is drained and the existing snapshot is kept. Limits bound what a
// hostile layer may make Unpack write. If beforeCommit is not nil it runs
// after the content verified and before the snapshot becomes visible; its
// error aborts the unpack.
func (s *Snapshots) Unpack(ctx context.Context, chainID, diffID string, r io.Reader, opts archive.ApplyOptions, beforeCommit func() error) (Meta, error) {
	return s.unpack(ctx, chainID, diffID, r, opts, beforeCommit, true)
}

// UnpackHashed is Unpack for a stream already known to hash to diffID: a
// layer this process has just hashed while writing it, or a blob the store
// verified under that very digest. It skips hashing the stream again,
// which for a layer of megabytes is milliseconds of CPU.
func (s *Snapshots) UnpackHashed(ctx context.Context, chainID, diffID string, r io.Reader, opts archive.ApplyOptions, beforeCommit func() error) (Meta, error) {
	return s.unpack(ctx, chainID, diffID, r, opts, beforeCommit, false)
}

func (s *Snapshots) unpack(ctx context.Context, chainID, diffID string, r io.Reader, opts archive.ApplyOptions, beforeCommit func() error, verify bool) (Meta, error) {
	h, err := store.ValidateDigest(chainID)
	if err != nil {
		return Meta{}, err
	}
	if _, err := store.ValidateDigest(diffID); err != nil {
		return Meta{}, err
	}
	unlock, err := s.locks.Lock(ctx, "snap-"+h, true)
	if err != nil {
		return Meta{}, err
	}
	defer unlock()
	if s.Exists(chainID) {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return Meta{}, err
		}
		if beforeCommit != nil {
			if err := beforeCommit(); err != nil {
				return Meta{}, err
			}
		}
		return s.Meta(chainID)
	}
	tmp := filepath.Join(s.tmp, h)
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, "fs"), 0o755); err != nil {
		return Meta{}, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	var hasher hash.Hash
	cr := &countingReader{r: r}
	if verify {
		hasher = sha256.New()
		cr.r = io.TeeReader(r, hasher)
	}
	opts.Overlay = true
	if _, err := archive.Apply(ctx, filepath.Join(tmp, "fs"), cr, opts); err != nil {
		return Meta{}, err
	}
	// The tar end marker may be followed by padding that still counts
	// towards the diff ID.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return Meta{}, err
	}
	if verify {
		if got := "sha256:" + hex.EncodeToString(hasher.Sum(nil)); got != diffID {
			return Meta{}, fmt.Errorf("%w: got %s, want %s", ErrDiffIDMismatch, got, diffID)
		}
	}
	m := Meta{ChainID: chainID, DiffID: diffID, Size: cr.n}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o600); err != nil {
		return Meta{}, err
	}
	if beforeCommit != nil {
		if err := beforeCommit(); err != nil {
			return Meta{}, err
		}
	}
	final := filepath.Join(s.dir, h)
	if err := os.Rename(tmp, final); err != nil {
		return Meta{}, fmt.Errorf("registering snapshot %s: %w", chainID, err)
	}
	ok = true
	return m, nil
}

// List returns the chain IDs of every complete snapshot.
func (s *Snapshots) List() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, err := store.ValidateDigest("sha256:" + e.Name()); err == nil {
			out = append(out, "sha256:"+e.Name())
		}
	}
	return out, nil
}

// Remove deletes a snapshot under its lock. Removing an absent one is not an
// error. The caller must know that no container uses it.
func (s *Snapshots) Remove(ctx context.Context, chainID string) error {
	d, err := s.Dir(chainID)
	if err != nil {
		return err
	}
	unlock, err := s.locks.Lock(ctx, "snap-"+filepath.Base(d), true)
	if err != nil {
		return err
	}
	defer unlock()
	// Rename first so that a half-removed snapshot is never seen as present.
	tmp := filepath.Join(s.tmp, filepath.Base(d))
	if err := os.Rename(d, tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(tmp)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
