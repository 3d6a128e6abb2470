package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/store"
)

func layerTar(t *testing.T, name, content string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
	tw.Write([]byte(content))
	tw.Close()
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}

func newSnaps(t *testing.T) *Snapshots {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers with ownership needs root")
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(st)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestChainIDs(t *testing.T) {
	a := "sha256:" + hex.EncodeToString(make([]byte, 32))
	b := "sha256:" + hex.EncodeToString(bytes.Repeat([]byte{1}, 32))
	got := ChainIDs([]string{a, b})
	sum := sha256.Sum256([]byte(a + " " + b))
	if got[0] != a || got[1] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("ChainIDs = %v", got)
	}
}

func TestUnpackVerifiesDiffID(t *testing.T) {
	s := newSnaps(t)
	b, _ := layerTar(t, "f", "content")
	_, other := layerTar(t, "f", "other")
	_, err := s.Unpack(context.Background(), other, other, bytes.NewReader(b), archive.ApplyOptions{}, nil)
	if !errors.Is(err, ErrDiffIDMismatch) {
		t.Fatalf("Unpack with a wrong diff ID: %v", err)
	}
	if s.Exists(other) {
		t.Error("a snapshot whose content failed verification is registered")
	}
	for _, dir := range []string{s.dir, s.tmp} {
		ents, _ := os.ReadDir(dir)
		var left []string
		for _, e := range ents {
			if e.Name() != ".tmp" && e.Name() != ".legacy-swept" {
				left = append(left, e.Name())
			}
		}
		if len(left) != 0 {
			t.Errorf("left in %s: %q", dir, left)
		}
	}
}

// New sweeps the unpacks of dead programs from .tmp/, and once, those a
// root written before .tmp/ existed kept among the snapshots; the
// snapshots themselves stay.
func TestNewSweepsTemporary(t *testing.T) {
	s := newSnaps(t)
	b, diffID := layerTar(t, "f", "content")
	if _, err := s.Unpack(context.Background(), diffID, diffID, bytes.NewReader(b), archive.ApplyOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	h := strings.Repeat("ab", 32)
	legacy := filepath.Join(s.dir, ".tmp-"+h, "fs")
	dead := filepath.Join(s.tmp, strings.Repeat("cd", 32), "fs")
	for _, d := range []string{legacy, dead} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The legacy sweep already ran when s was opened: a root from before
	// .tmp/ is one without its marker.
	if err := os.Remove(filepath.Join(s.tmp, ".legacy-swept")); err != nil {
		t.Fatal(err)
	}
	s2, err := New(s.locks)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{legacy, dead} {
		if _, err := os.Stat(filepath.Dir(d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived New (%v)", filepath.Dir(d), err)
		}
	}
	if !s2.Exists(diffID) {
		t.Error("New removed a complete snapshot")
	}
	// Later opens do not read the list of snapshots again.
	if err := os.MkdirAll(legacy, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(s.locks); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(legacy); err != nil {
		t.Errorf("a second New swept the snapshots' directory again (%v)", err)
	}
}

func TestUnpackOnceConcurrently(t *testing.T) {
	s := newSnaps(t)
	b, d := layerTar(t, "f", "shared")
	var wg sync.WaitGroup
	var mu sync.Mutex
	commits := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Unpack(context.Background(), d, d, bytes.NewReader(b), archive.ApplyOptions{}, func() error {
				mu.Lock()
				commits++
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	fs, _ := s.FS(d)
	if got, err := os.ReadFile(filepath.Join(fs, "f")); err != nil || string(got) != "shared" {
		t.Errorf("f = %q, %v", got, err)
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Errorf("List = %v", list)
	}
	if err := s.Remove(context.Background(), d); err != nil || s.Exists(d) {
		t.Errorf("Remove: %v, exists %v", err, s.Exists(d))
	}
	if err := s.Remove(context.Background(), d); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// Init makes a snapshot's init layer once, from what fill leaves in the
// upper directory it is given; a fill that fails registers nothing, and
// neither leaves anything in the temp space.
func TestInit(t *testing.T) {
	s := newSnaps(t)
	ctx := context.Background()
	b, chainID := layerTar(t, "f", "content")
	if _, err := s.Unpack(ctx, chainID, chainID, bytes.NewReader(b), archive.ApplyOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("fill failed")
	if _, err := s.Init(ctx, chainID, func(upper, _, _ string) error {
		os.WriteFile(filepath.Join(upper, "half"), nil, 0o644)
		return failed
	}); !errors.Is(err, failed) {
		t.Fatalf("Init with a failing fill: %v", err)
	}
	d, _ := s.Dir(chainID)
	if _, err := os.Lstat(filepath.Join(d, "init")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed fill registered an init layer: %v", err)
	}
	calls := 0
	for i := 0; i < 2; i++ {
		init, err := s.Init(ctx, chainID, func(upper, work, mnt string) error {
			calls++
			for _, dir := range []string{work, mnt} {
				if st, err := os.Stat(dir); err != nil || !st.IsDir() || filepath.Dir(dir) != filepath.Dir(upper) {
					t.Errorf("%s beside %s: %v", dir, upper, err)
				}
			}
			return os.WriteFile(filepath.Join(upper, "hosts"), nil, 0o644)
		})
		if err != nil || init != filepath.Join(d, "init") {
			t.Fatalf("Init: %q, %v", init, err)
		}
		if _, err := os.Stat(filepath.Join(init, "hosts")); err != nil {
			t.Fatalf("the init layer lacks what fill made: %v", err)
		}
	}
	if calls != 1 {
		t.Errorf("fill ran %d times for one layer", calls)
	}
	ents, _ := os.ReadDir(s.tmp)
	for _, e := range ents {
		if e.Name() != ".legacy-swept" {
			t.Errorf("left in the temp space: %s", e.Name())
		}
	}
}
