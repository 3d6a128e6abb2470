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
