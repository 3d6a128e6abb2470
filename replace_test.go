package berth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestReplaceFile replaces a file while readers read it: each read is one
// version whole, never a mix, a part or nothing, and no temporary file is
// left beside it.
func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	versions := [][]byte{[]byte(strings.Repeat("a", 100)), []byte(strings.Repeat("b", 5000))}
	write := func(i int) {
		t.Helper()
		tmp := filepath.Join(dir, ".state.json.tmp")
		if err := os.WriteFile(tmp, versions[i%2], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := replaceFile(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(0) // no file yet: a plain rename
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad []string
	var mu sync.Mutex
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1]) {
					mu.Lock()
					bad = append(bad, string(b[:min(len(b), 20)])+"…")
					mu.Unlock()
				}
			}
		}()
	}
	for i := 1; i <= 500; i++ {
		write(i)
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d reads saw neither version whole, e.g. %q", len(bad), bad[0])
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, versions[0]) {
		t.Errorf("after the last replacement the file holds %d bytes, want version 0", len(b))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the directory holds %v, want state.json alone", names)
	}
}
