package berth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEventsRotation: a reader following the events sees every one of
// them, in order, while writers rotate the file many times, and a
// reader from a time finds those the rotated file still keeps.
func TestEventsRotation(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: New makes the root's cgroups")
	}
	old := eventsMaxSize
	eventsMaxSize = 4096
	t.Cleanup(func() { eventsMaxSize = old })
	rt, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 1000)
	done := make(chan error, 1)
	go func() {
		done <- rt.Events(ctx, func(ev Event) error {
			got <- ev.ID
			return nil
		}, WithEventsSince(start))
	}()
	const n = 300 // ~90 bytes each: six rotations
	next := 0     // the next event the reader must give
	receive := func(upTo int) {
		t.Helper()
		for ; next < upTo; next++ {
			select {
			case id := <-got:
				if want := fmt.Sprintf("v%03d", next); id != want {
					t.Fatalf("event %d: %s, want %s", next, id, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("only %d of %d events arrived", next, upTo)
			}
		}
	}
	for i := range n {
		rt.emit("volume", "create", fmt.Sprintf("v%03d", i), nil)
		if i%40 == 39 {
			receive(i + 1) // the reader at the end of a file, then more
		}
	}
	receive(n)
	// A burst of two rotations while the reader waits: the file rotated
	// out in between is read too.
	for i := n; i < n+80; i++ {
		rt.emit("volume", "create", fmt.Sprintf("v%03d", i), nil)
	}
	receive(n + 80)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Events after its context ended: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rt.root, eventsFile+".1")); err != nil {
		t.Errorf("no rotated file: %v", err)
	}
	var replayed []string
	err = rt.Events(context.Background(), func(ev Event) error {
		replayed = append(replayed, ev.ID)
		return nil
	}, WithEventsSince(start), WithEventsUntil(time.Now()))
	if err != nil || len(replayed) == 0 || replayed[len(replayed)-1] != fmt.Sprintf("v%03d", n+79) {
		t.Errorf("replay of the kept events: %d events ending %v, %v", len(replayed), replayed[max(len(replayed)-1, 0):], err)
	}
}
