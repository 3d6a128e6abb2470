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
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
