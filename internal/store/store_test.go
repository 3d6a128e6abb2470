package store

import (
	"bytes"
	"context"
	"errors"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestValidateDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	if _, err := ValidateDigest(good); err != nil {
		t.Errorf("%s: %v", good, err)
	}
	for _, bad := range []string{
		"", "sha256:", "sha512:" + strings.Repeat("a", 128), "sha256:" + strings.Repeat("A", 64),
		"sha256:../../../../etc/passwd", "sha256:" + strings.Repeat("a", 63), "sha256:" + strings.Repeat("a", 65),
		"sha256:" + strings.Repeat("a", 62) + "/x", strings.Repeat("a", 64),
	} {
		if _, err := ValidateDigest(bad); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("ValidateDigest(%q) = %v, want ErrInvalidDigest", bad, err)
		}
		if _, err := (&Store{root: t.TempDir()}).Path(bad); err == nil {
			t.Errorf("Path(%q) accepted", bad)
		}
	}
}

func TestWriterVerifies(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("hello blob")
	d := Digest(content)
	for _, tc := range []struct {
		name  string
		write []byte
		size  int64
		want  error
	}{
		{"flipped byte", []byte("hellO blob"), int64(len(content)), ErrDigestMismatch},
		{"short", content[:5], int64(len(content)), ErrDigestMismatch},
		{"long", append(content, '!'), int64(len(content)), ErrDigestMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.Writer(d, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			_, werr := w.Write(tc.write)
			cerr := w.Commit()
			if !errors.Is(werr, tc.want) && !errors.Is(cerr, tc.want) {
				t.Errorf("write %v, commit %v; want %v", werr, cerr, tc.want)
			}
			if s.Has(d) {
				t.Error("a blob that failed verification became visible")
			}
			if ents, _ := os.ReadDir(filepath.Join(s.root, "ingest")); len(ents) != 0 {
				t.Errorf("ingest files left: %d", len(ents))
			}
		})
	}
	if _, err := s.Put(content, d); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(d); err != nil {
		t.Error(err)
	}
}

// TestSweepKeepsLiveWriters checks that Open removes the ingest file of a
// dead writer but never one a live writer holds.
func TestSweepKeepsLiveWriters(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	live := Digest([]byte("live"))
	w, err := s.Writer(live, 4)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("li"))
	dead := filepath.Join(root, "ingest", strings.Repeat("0", 64))
	os.WriteFile(dead, []byte("partial"), 0o600)
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Error("stale ingest file survived Open")
	}
	w.Write([]byte("ve"))
	if err := w.Commit(); err != nil {
		t.Fatalf("live writer broken by a concurrent Open: %v", err)
	}
}

func TestRefsAtomicUnderConcurrency(t *testing.T) {
	s, _ := Open(t.TempDir())
	ctx := context.Background()
	d := Digest([]byte("x"))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				name := filepath.Join("r", string(rune('a'+i)), string(rune('a'+j)))
				if err := s.UpdateRefs(ctx, func(refs map[string]string) error { refs[name] = d; return nil }); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	refs, err := s.Refs()
	if err != nil || len(refs) != 400 {
		t.Errorf("refs: %d, %v; want 400 (no update lost)", len(refs), err)
	}
	// A failing update writes nothing.
	boom := errors.New("boom")
	if err := s.UpdateRefs(ctx, func(refs map[string]string) error { refs = nil; return boom }); !errors.Is(err, boom) {
		t.Error(err)
	}
	if err := s.UpdateRefs(ctx, func(refs map[string]string) error { refs["bad"] = "sha256:../x"; return nil }); err == nil {
		t.Error("a reference to an invalid digest was written")
	}
	if refs, _ := s.Refs(); len(refs) != 400 {
		t.Errorf("failed updates changed the references: %d", len(refs))
	}
}

func TestLockWaitsAndCancels(t *testing.T) {
	s, _ := Open(t.TempDir())
	unlock, err := s.Lock(context.Background(), "x", true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "x", true); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second exclusive lock: %v, want deadline exceeded", err)
	}
	unlock()
	u2, err := s.Lock(context.Background(), "x", false)
	if err != nil {
		t.Fatal(err)
	}
	u3, ok := s.TryLock("x", false)
	if !ok {
		t.Error("two shared locks must coexist")
	}
	u2()
	u3()
}

func TestIngest(t *testing.T) {
	s, _ := Open(t.TempDir())
	d, n, err := s.Ingest(bytes.NewReader([]byte("ingested")))
	if err != nil || n != 8 || d != Digest([]byte("ingested")) || !s.Has(d) {
		t.Fatalf("Ingest = %s %d %v", d, n, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.root, "tmp")); len(ents) != 0 {
		t.Errorf("tmp files left: %d", len(ents))
	}
}

// TestTryLockIfExists: without its file a lock is free and no file is
// made; with one, the lock is taken unless someone holds it.
func TestTryLockIfExists(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, exists, ok := s.TryLockIfExists("w", true); exists || ok {
		t.Errorf("TryLockIfExists without a file = exists %v, ok %v; want false, false", exists, ok)
	}
	if _, err := os.Stat(filepath.Join(s.root, "locks", "w")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("TryLockIfExists made the lock file (Stat: %v)", err)
	}
	unlockShared, err := s.Lock(context.Background(), "w", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, exists, ok := s.TryLockIfExists("w", true); !exists || ok {
		t.Errorf("TryLockIfExists of a held lock = exists %v, ok %v; want true, false", exists, ok)
	}
	unlockShared()
	unlock, exists, ok := s.TryLockIfExists("w", true)
	if !exists || !ok {
		t.Fatalf("TryLockIfExists of a free lock = exists %v, ok %v; want true, true", exists, ok)
	}
	if _, taken := s.TryLock("w", false); taken {
		t.Error("the lock TryLockIfExists took is not held")
	}
	unlock()
}

// TestSweepTmpDirectories: Open removes a temporary directory whose maker
// died (its lock file is there and free) with its lock file, and leaves a
// fresh directory without a lock file (a removal another program is
// finishing in the background).
func TestSweepTmpDirectories(t *testing.T) {
	root := t.TempDir()
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(root, "tmp", "unpack-0123")
	lock := filepath.Join(root, "locks", "tmp-unpack-0123")
	removal := filepath.Join(root, "tmp", "rm-0123")
	for _, d := range []string{dead, filepath.Join(removal, "upper")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead maker's temporary directory survived Open (Stat: %v)", err)
	}
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("its lock file survived Open (Stat: %v)", err)
	}
	if _, err := os.Stat(filepath.Join(removal, "upper")); err != nil {
		t.Errorf("a fresh removal directory was swept: %v", err)
	}
}

// TestObjectLocks: a container's locks are bytes of one file, with flock's
// semantics: two holders in one process conflict, shared holders coexist,
// closing another lock of the same file releases nothing (classic POSIX
// record locks would fail both), and no file is made per lock.
func TestObjectLocks(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	unlock, ok := s.TryLock("owner-"+id1, true)
	if !ok {
		t.Fatal("TryLock of a free object lock failed")
	}
	if _, ok := s.TryLock("owner-"+id1, false); ok {
		t.Error("a second holder in the same process took a held exclusive lock")
	}
	for _, other := range []string{"owner-" + id2, "ctr-" + id1, "wait-" + id1} {
		u, ok := s.TryLock(other, true)
		if !ok {
			t.Errorf("%s conflicts with owner-%s", other, id1)
			continue
		}
		u() // closes another open of locks/objects
	}
	if _, ok := s.TryLock("owner-"+id1, true); ok {
		t.Error("closing another lock of the same file released owner-" + id1)
	}
	if _, exists, ok := s.TryLockIfExists("owner-"+id1, true); !exists || ok {
		t.Errorf("TryLockIfExists of a held object lock = exists %v, ok %v; want true, false", exists, ok)
	}
	unlock()
	u1, ok1 := s.TryLock("wait-"+id1, false)
	u2, ok2 := s.TryLock("wait-"+id1, false)
	if !ok1 || !ok2 {
		t.Error("two shared object locks must coexist")
	} else {
		u1()
		u2()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u, err := s.Lock(ctx, "owner-"+id1, true)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	u()
	ents, err := os.ReadDir(filepath.Join(s.root, "locks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), id1) {
			t.Errorf("locks/%s made by an object lock", e.Name())
		}
	}
	// An older program's lock file for the same lock (a root from before
	// object locks) counts while it is held, and is left alone.
	old, err := os.OpenFile(filepath.Join(s.root, "locks", "owner-"+id2), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := unix.Flock(int(old.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.TryLock("owner-"+id2, false); ok {
		t.Error("owner-" + id2 + " was taken while an older program's lock file of it is held")
	}
	unix.Flock(int(old.Fd()), unix.LOCK_UN)
	if u, ok := s.TryLock("owner-"+id2, true); !ok {
		t.Error("owner-" + id2 + " not taken once the older lock file is free")
	} else {
		u()
	}
	// A name that is not a kind and an ID stays a file of its own.
	if _, ok := objectLockByte("owner-" + id1[:63]); ok {
		t.Error("a 63-digit ID was taken for an object lock")
	}
	if _, ok := objectLockByte("volume-" + id1); ok {
		t.Error("volume-<id> was taken for an object lock")
	}
	if _, ok := objectLockByte("net-" + id1); !ok {
		t.Error("net-<id>, a container's network lock, is not an object lock")
	}
}

// TestLockFileDeletedByHolder: a holder that deletes its lock file before
// it lets go (a volume's lock, as the volume goes) does not leave a waiter
// holding the deleted file while a newcomer locks the new one: the waiter
// locks the file the name leads to, so of the waiter and the newcomer
// exactly one holds the lock at a time, whichever comes first.
func TestLockFileDeletedByHolder(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Lock(context.Background(), "volume-x", true)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		// A blocking wait holds the file open all along (Lock polls, and
		// has the same gap between its open and its lock, only shorter).
		unlock, err := s.lockFile("volume-x", true, true)
		if err != nil {
			t.Error(err)
		}
		got <- unlock
	}()
	time.Sleep(50 * time.Millisecond) // the waiter has the old file open
	os.Remove(filepath.Join(s.root, "locks", "volume-x"))
	first()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	third, err := s.Lock(ctx, "volume-x", true)
	if err != nil {
		// The waiter came first and holds it: it must have said so.
		select {
		case unlock := <-got:
			unlock()
		default:
			t.Fatalf("neither the waiter nor a newcomer holds the lock: %v", err)
		}
		return
	}
	select {
	case unlock := <-got:
		unlock()
		third()
		t.Fatal("the waiter and a newcomer both hold the exclusive lock")
	case <-time.After(300 * time.Millisecond):
	}
	third()
	select {
	case unlock := <-got:
		unlock()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter never got the lock")
	}
}
