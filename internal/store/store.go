// Package store is berth's content-addressed blob store, its references
// (name → manifest digest) and the cross-process file locks that let several
// programs share one root.
//
// Durability rule: nothing becomes visible under its final name before its
// bytes are verified and fsynced. Blobs are written to ingest/<hex>, checked
// against the expected digest and size, fsynced and renamed into
// blobs/sha256/<hex>; references are rewritten whole through a temp file and
// a rename. A process killed at any moment therefore leaves either the old
// state or the new one, plus ingest files that the next Open sweeps.
package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrDigestMismatch reports content whose sha256 or size differs from what
// its descriptor promised.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrInvalidDigest reports a digest string that is not "sha256:" followed by
// 64 lowercase hex characters. Such a string never reaches a file path.
var ErrInvalidDigest = errors.New("invalid digest")

// Store is a content store rooted at a directory. A Store is safe for
// concurrent use by several goroutines and several processes.
type Store struct {
	root string

	refsMu   sync.Mutex
	refsRaw  []byte            // refs.json as last parsed
	refsLast map[string]string // what it parsed to; callers get copies
}

// Open opens (creating if needed) the store under root and removes ingest
// files left by dead writers.
func Open(root string) (*Store, error) {
	for _, d := range []string{"blobs/sha256", "ingest", "locks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("creating store directory: %w", err)
		}
	}
	s := &Store{root: root}
	if err := s.sweepIngest(); err != nil {
		return nil, err
	}
	s.sweepTmp()
	return s, nil
}

// Root returns the directory the store lives in.
func (s *Store) Root() string { return s.root }

// ValidateDigest checks that d is a well-formed sha256 digest and returns its
// hex part. It is the only way a digest becomes part of a path.
func ValidateDigest(d string) (string, error) {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != 64 {
		return "", fmt.Errorf("%w: %q", ErrInvalidDigest, d)
	}
	for _, c := range []byte(hexPart) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%w: %q", ErrInvalidDigest, d)
		}
	}
	return hexPart, nil
}

// Digest returns the sha256 digest of b as "sha256:hex".
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Path returns the file path of blob d, validating d first.
func (s *Store) Path(d string) (string, error) {
	h, err := ValidateDigest(d)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, "blobs", "sha256", h), nil
}

// Has reports whether blob d is present.
func (s *Store) Has(d string) bool {
	p, err := s.Path(d)
	if err != nil {
		return false
	}
	_, err = os.Lstat(p)
	return err == nil
}

// Size returns the size of blob d.
func (s *Store) Size(d string) (int64, error) {
	p, err := s.Path(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, notFound(d, err)
	}
	return fi.Size(), nil
}

// Open opens blob d for reading.
func (s *Store) Open(d string) (*os.File, error) {
	p, err := s.Path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound(d, err)
	}
	return f, nil
}

// ReadAll reads blob d whole, refusing blobs larger than limit.
func (s *Store) ReadAll(d string, limit int64) ([]byte, error) {
	f, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, limit)
	}
	return b, nil
}

// ErrBlobNotFound is wrapped by errors about absent blobs.
var ErrBlobNotFound = errors.New("blob not found")

func notFound(d string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrBlobNotFound, d)
	}
	return fmt.Errorf("opening blob %s: %w", d, err)
}

// Put stores b, which must hash to want unless want is empty, and returns
// its digest.
func (s *Store) Put(b []byte, want string) (string, error) {
	d := Digest(b)
	if want != "" && want != d {
		return "", fmt.Errorf("%w: content hashes to %s, expected %s", ErrDigestMismatch, d, want)
	}
	if s.Has(d) {
		return d, nil
	}
	w, err := s.Writer(d, int64(len(b)))
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		return "", err
	}
	return d, w.Commit()
}

// Writer is an in-progress blob. Write to it, then Commit; Close without
// Commit discards it. The writer holds the digest's ingest lock, so two
// writers of one digest (in any processes) never interleave.
type Writer struct {
	s       *Store
	want    string
	size    int64
	f       *os.File
	h       hash.Hash
	n       int64
	unlock  func()
	done    bool
	present bool
}

// Writer starts writing blob want, of the given size (-1 if unknown). The
// call blocks while another writer of the same digest holds its lock. If the
// blob became present meanwhile, the returned Writer reports Present and its
// Commit is a no-op.
func (s *Store) Writer(want string, size int64) (*Writer, error) {
	h, err := ValidateDigest(want)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockFile("blob-"+h, true, true)
	if err != nil {
		return nil, err
	}
	w := &Writer{s: s, want: want, size: size, h: sha256.New(), unlock: unlock}
	if s.Has(want) {
		w.present = true
		return w, nil
	}
	f, err := os.OpenFile(filepath.Join(s.root, "ingest", h), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("creating ingest file for %s: %w", want, err)
	}
	w.f = f
	return w, nil
}

// Present reports that the blob already existed when the writer was made.
func (w *Writer) Present() bool { return w.present }

// Write appends p to the blob.
func (w *Writer) Write(p []byte) (int, error) {
	if w.present {
		return len(p), nil
	}
	if w.size >= 0 && w.n+int64(len(p)) > w.size {
		return 0, fmt.Errorf("%w: blob %s is longer than its declared %d bytes", ErrDigestMismatch, w.want, w.size)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Commit verifies size and digest, fsyncs and renames the blob into place.
func (w *Writer) Commit() error {
	if w.done {
		return errors.New("blob writer already closed")
	}
	defer w.Close()
	if w.present {
		return nil
	}
	if w.size >= 0 && w.n != w.size {
		return fmt.Errorf("%w: blob %s has %d bytes, expected %d", ErrDigestMismatch, w.want, w.n, w.size)
	}
	got := "sha256:" + hex.EncodeToString(w.h.Sum(nil))
	if got != w.want {
		return fmt.Errorf("%w: content hashes to %s, expected %s", ErrDigestMismatch, got, w.want)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing blob %s: %w", w.want, err)
	}
	final, _ := w.s.Path(w.want)
	if err := os.Rename(w.f.Name(), final); err != nil {
		return fmt.Errorf("committing blob %s: %w", w.want, err)
	}
	return syncDir(filepath.Dir(final))
}

// Close discards an uncommitted blob and releases the lock. It is idempotent.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if w.f != nil {
		name := w.f.Name()
		w.f.Close()
		os.Remove(name) // gone already after a successful rename
	}
	w.unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sweepIngest removes ingest files whose writer is gone: a live writer holds
// the file's lock, a dead one released it when its process died.
func (s *Store) sweepIngest() error {
	entries, err := os.ReadDir(filepath.Join(s.root, "ingest"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		unlock, err := s.lockFile("blob-"+e.Name(), true, false)
		if err != nil {
			continue // in use
		}
		os.Remove(filepath.Join(s.root, "ingest", e.Name()))
		unlock()
	}
	return nil
}

// Blobs lists the digests of every stored blob.
func (s *Store) Blobs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "blobs", "sha256"))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, "sha256:"+e.Name())
	}
	return out, nil
}

// Delete removes blob d. Deleting an absent blob is not an error.
func (s *Store) Delete(d string) error {
	p, err := s.Path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting blob %s: %w", d, err)
	}
	return nil
}

// Verify re-hashes blob d and reports whether it matches its name.
func (s *Store) Verify(d string) error {
	f, err := s.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading blob %s: %w", d, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
		return fmt.Errorf("%w: blob %s hashes to %s", ErrDigestMismatch, d, got)
	}
	return nil
}

// Ingest stores a blob whose digest is not known in advance (an imported
// tar, a layer just diffed): IngestFrom with a copy of r.
func (s *Store) Ingest(r io.Reader) (digest string, size int64, err error) {
	return s.IngestFrom(func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
}

// IngestFrom stores the blob that write produces, hashing it as it goes
// to a temp file under tmp/, then commits it under its digest: one pass,
// where spooling a blob and then ingesting the spool takes two. The temp
// file carries an flock for as long as it lives, which tells the next Open
// whether it belongs to a live writer.
func (s *Store) IngestFrom(write func(io.Writer) error) (digest string, size int64, err error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "ingest-")
	if err != nil {
		return "", 0, err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return "", 0, err
	}
	cw := &countingHash{f: f, h: sha256.New()}
	if err := write(cw); err != nil {
		return "", 0, err
	}
	size = cw.n
	digest = "sha256:" + hex.EncodeToString(cw.h.Sum(nil))
	if err := f.Sync(); err != nil {
		return "", 0, err
	}
	unlock, err := s.lockFile("blob-"+digest[len("sha256:"):], true, true)
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	if s.Has(digest) {
		return digest, size, nil
	}
	final, _ := s.Path(digest)
	if err := os.Rename(f.Name(), final); err != nil {
		return "", 0, fmt.Errorf("committing blob %s: %w", digest, err)
	}
	return digest, size, syncDir(filepath.Dir(final))
}

// countingHash writes to a file and hashes and counts what was written.
type countingHash struct {
	f *os.File
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// sweepTmp removes temp files whose writer died (their flock is free).
// LeftPrefix names, under tmp/, the directory of a removed container that
// a program left for the next one to make a spare of (berth's
// WithLeaveSpares); the sweep of tmp/ leaves these to the berth package.
const LeftPrefix = "left-"

func (s *Store) sweepTmp() {
	dir := filepath.Join(s.root, "tmp")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() && strings.HasPrefix(e.Name(), LeftPrefix) {
			// Left by a program for the next one to make a spare of: the
			// berth package takes them, renaming each first (deleting one
			// here could empty it under a program that just took it).
			continue
		}
		if e.IsDir() {
			// Directories from TempDir carry a lock file named after them,
			// held while they live. Others are a removal's, emptied in the
			// background by the program that renamed them here: swept only
			// once unchanged for a minute, or the sweep could delete what
			// that program is making a spare of, or has just handed on.
			unlock, exists, ok := s.TryLockIfExists("tmp-"+e.Name(), true)
			switch {
			case ok:
				os.RemoveAll(p)
				os.Remove(filepath.Join(s.root, "locks", "tmp-"+e.Name()))
				unlock()
			case !exists && ChangedBefore(p, time.Now().Add(-time.Minute)):
				os.RemoveAll(p)
			}
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
	// Interrupted reference updates leave their temp file behind.
	if unlock, ok := s.TryLock("refs", true); ok {
		if old, _ := filepath.Glob(filepath.Join(s.root, ".tmp-"+refsFile+"-*")); old != nil {
			for _, p := range old {
				os.Remove(p)
			}
		}
		unlock()
	}
}

// ChangedBefore reports whether p's inode last changed before t (its
// ctime: a rename into place counts as a change).
func ChangedBefore(p string, t time.Time) bool {
	var st unix.Stat_t
	return unix.Lstat(p, &st) == nil && time.Unix(st.Ctim.Unix()).Before(t)
}

// TempDir makes a directory under tmp/ that lives as long as the returned
// release function is not called, and that the next Open removes if the
// process dies first.
func (s *Store) TempDir(prefix string) (dir string, release func(), err error) {
	dir, err = os.MkdirTemp(filepath.Join(s.root, "tmp"), prefix)
	if err != nil {
		return "", nil, err
	}
	unlock, err := s.lockFile("tmp-"+filepath.Base(dir), true, true)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, func() {
		os.RemoveAll(dir)
		unlock()
		os.Remove(filepath.Join(s.root, "locks", "tmp-"+filepath.Base(dir)))
	}, nil
}
