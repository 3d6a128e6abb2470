package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
)

const refsFile = "refs.json"

// Refs returns a snapshot of every reference: image name → manifest digest.
func (s *Store) Refs() (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(s.root, refsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading references: %w", err)
	}
	// Parsing is most of the cost once a root holds many build steps'
	// references; a file whose bytes are unchanged parses as before.
	s.refsMu.Lock()
	defer s.refsMu.Unlock()
	if s.refsLast != nil && bytes.Equal(b, s.refsRaw) {
		return maps.Clone(s.refsLast), nil
	}
	refs := map[string]string{}
	if err := json.Unmarshal(b, &refs); err != nil {
		return nil, fmt.Errorf("reading references %s: %w", filepath.Join(s.root, refsFile), err)
	}
	s.refsRaw, s.refsLast = b, maps.Clone(refs)
	return refs, nil
}

// UpdateRefs applies fn to the references under the refs lock and writes
// the result atomically (temp file, fsync, rename). If fn fails nothing is
// written.
func (s *Store) UpdateRefs(ctx context.Context, fn func(refs map[string]string) error) error {
	unlock, err := s.Lock(ctx, "refs", true)
	if err != nil {
		return err
	}
	defer unlock()
	refs, err := s.Refs()
	if err != nil {
		return err
	}
	before := maps.Clone(refs)
	if err := fn(refs); err != nil {
		return err
	}
	if maps.Equal(refs, before) {
		return nil // nothing to write (a rebuild tagging what the tag names)
	}
	for name, d := range refs {
		if _, err := ValidateDigest(d); err != nil {
			return fmt.Errorf("reference %q: %w", name, err)
		}
	}
	b, err := json.MarshalIndent(refs, "", "\t")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(s.root, refsFile), b, 0o600); err != nil {
		return err
	}
	// What was written is what the next Refs reads, unless another program
	// writes meanwhile (the byte comparison in Refs sees that).
	s.refsMu.Lock()
	s.refsRaw, s.refsLast = b, maps.Clone(refs)
	s.refsMu.Unlock()
	return nil
}

// WriteFileAtomic writes b to path through a fsynced temp file and a rename,
// so readers see the old or the new content, never a part.
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	return writeFileAtomic(path, b, perm, true)
}

// WriteCacheFile is WriteFileAtomic without forcing anything to disk, for
// files whose loss or emptiness after a crash costs only recomputing them
// (build cache entries, digest memos): their readers treat an unreadable
// file as absent. Each fsync costs a build step about a millisecond. The
// directory is made (0700) if it is missing: cache directories come and
// go with the caches.
func WriteCacheFile(path string, b []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(path, b, perm, false)
}

func writeFileAtomic(path string, b []byte, perm os.FileMode, durable bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// AddRoot keeps the image whose manifest digest is d from garbage
// collection without naming it: the images of build steps, which the
// build cache points at. Each is an empty file under roots/, so adding one
// costs a file creation however many there are, where a reference in
// refs.json rewrote the whole file (hundreds of kilobytes on a root that
// has built for a while) at every build step. A root lost in a crash only
// lets Prune take a cache entry's image, which the next build remakes.
func (s *Store) AddRoot(d string) error {
	h, err := ValidateDigest(d)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.root, "roots")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, h), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// Roots returns the manifest digests added by AddRoot.
func (s *Store) Roots() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "roots"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		d := "sha256:" + e.Name()
		if _, err := ValidateDigest(d); err == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// IsRoot reports whether AddRoot added d.
func (s *Store) IsRoot(d string) bool {
	h, err := ValidateDigest(d)
	if err != nil {
		return false
	}
	_, err = os.Lstat(filepath.Join(s.root, "roots", h))
	return err == nil
}

// RemoveRoot undoes AddRoot; a root that is not there is no error.
func (s *Store) RemoveRoot(d string) error {
	h, err := ValidateDigest(d)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.root, "roots", h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
