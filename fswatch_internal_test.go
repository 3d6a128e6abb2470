package berth

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFSWatch checks the process's shared inotify instance: watches of
// one directory share its descriptor and each gets the events of its own
// mask; one closed leaves the other working; the last closed ends the
// instance; a watched directory removed wakes its watch.
func TestFSWatch(t *testing.T) {
	watcher.mu.Lock()
	watchedBefore := len(watcher.subs) // other tests' followers, if any
	watcher.mu.Unlock()
	dir := t.TempDir()
	writes, err := watchPath(dir, unix.IN_MODIFY)
	if err != nil {
		t.Fatal(err)
	}
	creates, err := watchPath(dir, unix.IN_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	if writes.wd != creates.wd {
		t.Errorf("two watches of one directory: descriptors %d and %d", writes.wd, creates.wd)
	}
	woken := func(w *fsWatch) bool {
		select {
		case <-w.C:
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	}
	quiet := func(w *fsWatch) bool {
		select {
		case <-w.C:
			return false
		default:
			return true
		}
	}
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil { // a create only
		t.Fatal(err)
	}
	if !woken(creates) {
		t.Error("the create watch missed a create")
	}
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil { // a write
		t.Fatal(err)
	}
	if !woken(writes) {
		t.Error("the write watch missed a write")
	}
	if !quiet(creates) {
		t.Error("the create watch woke for a write")
	}
	creates.Close()
	creates.Close()
	select {
	case <-writes.C: // the last write's second event (a truncate, then the data)
	default:
	}
	if err := os.WriteFile(p, []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !woken(writes) {
		t.Error("the write watch missed a write after the other watch closed")
	}
	writes.Close()
	watcher.mu.Lock()
	open, watched := watcher.file != nil, len(watcher.subs)
	watcher.mu.Unlock()
	if watched != watchedBefore || watchedBefore == 0 && open {
		t.Errorf("after the watches closed: %d watched (%d before), instance open %v", watched, watchedBefore, open)
	}

	gone := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(gone, 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := watchPath(gone, unix.IN_MODIFY)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	if !woken(w) {
		t.Error("a removed directory did not wake its watch")
	}
}
