package berth

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestSweepLeftovers: what a program killed at the wrong moment left is
// swept by the next Runtime, so that a name is never blocked for good: a
// container directory holding a name but no record (Run claims the name
// before it writes the record), and an auto-removed container whose exit
// is recorded but which its owner did not live to remove.
func TestSweepLeftovers(t *testing.T) {
	root := t.TempDir()
	rt, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	defer func(d time.Duration) { unrecordedAge = d }(unrecordedAge)
	unrecordedAge = 0

	unrecorded := newContainerID()
	if err := makeContainerDir(rt.containerDir(unrecorded)); err != nil {
		t.Fatal(err)
	}
	if err := rt.claimName("claimed", unrecorded); err != nil {
		t.Fatal(err)
	}
	exited := &containerRecord{ID: newContainerID(), Name: "exited", Created: time.Now().UTC(),
		Config: containerConfig{AutoRemove: true}, State: ContainerState{Status: statusExited, ExitCode: 3}}
	if err := makeContainerDir(rt.containerDir(exited.ID)); err != nil {
		t.Fatal(err)
	}
	if err := rt.claimName(exited.Name, exited.ID); err != nil {
		t.Fatal(err)
	}
	if err := rt.writeRecord(exited); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the directories' change time is past

	next, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	for _, id := range []string{unrecorded, exited.ID} {
		if _, err := os.Stat(next.containerDir(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("containers/%s is still there after the sweep (%v)", id, err)
		}
	}
	for _, name := range []string{"claimed", "exited"} {
		id := newContainerID()
		if err := makeContainerDir(next.containerDir(id)); err != nil {
			t.Fatal(err)
		}
		if err := next.claimName(name, id); err != nil {
			t.Errorf("the name %q is still taken after the sweep: %v", name, err)
		}
	}
	if _, err := next.Container(context.Background(), "exited"); err == nil {
		t.Error("the auto-removed container is still listed")
	}
}

// TestSweepAfterRecordedExit: a sweep that read a container's record as
// running, and gets its owner lock only after the owner recorded the exit
// and let go, leaves the recorded exit alone. It used to judge the record
// it had read first, and marked the container exited with 255.
func TestSweepAfterRecordedExit(t *testing.T) {
	root := t.TempDir()
	rt, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	rec := &containerRecord{ID: newContainerID(), Name: "killed", Created: time.Now().UTC(), Config: containerConfig{Detached: true},
		State: ContainerState{Status: statusRunning, Running: true, Pid: os.Getpid(), StartedAt: time.Now().UTC()}, PidStart: 1}
	if err := makeContainerDir(rt.containerDir(rec.ID)); err != nil {
		t.Fatal(err)
	}
	if err := rt.writeRecord(rec); err != nil {
		t.Fatal(err)
	}
	unlockOwner, ok := rt.store.TryLock("owner-"+rec.ID, true)
	if !ok {
		t.Fatal("owner lock taken")
	}
	// The owner records the exit and lets go between the sweep's read and
	// its try of the lock.
	defer func(f func(string)) { sweepLocking = f }(sweepLocking)
	sweepLocking = func(id string) {
		if id != rec.ID {
			return
		}
		rt.updateRecord(context.Background(), id, func(cur *containerRecord) error {
			cur.State.Status, cur.State.Running, cur.State.Pid, cur.State.ExitCode = statusExited, false, 0, 137
			return nil
		})
		unlockOwner()
	}
	next, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	got, err := next.readRecord(rec.ID)
	if err != nil || got.State.Status != statusExited || got.State.ExitCode != 137 {
		t.Errorf("after the sweep: %+v, %v; want the recorded exit, 137", got.State, err)
	}
}
