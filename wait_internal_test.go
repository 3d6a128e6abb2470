package berth

import (
	"context"
	"testing"
)

// WaitLockHeld reports whether some Wait holds container id's wait lock.
// (Exported for the external tests.)
func WaitLockHeld(rt *Runtime, id string) bool {
	unlock, ok := rt.store.TryLock("wait-"+id, true)
	if ok {
		unlock()
	}
	return !ok
}

// HoldWaitLock takes container id's wait lock as a Wait in another program
// holds it, between taking it and reading the exit; release lets it go.
// (Exported for the external tests.)
func HoldWaitLock(t testing.TB, rt *Runtime, id string) (release func()) {
	t.Helper()
	unlock, err := rt.store.Lock(context.Background(), "wait-"+id, false)
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}

// SetExecStarting has fn run in every Exec of the test once the container
// was found running, before anything starts. (Exported for the external
// tests.)
func SetExecStarting(t testing.TB, fn func()) {
	old := execStarting
	execStarting = fn
	t.Cleanup(func() { execStarting = old })
}
