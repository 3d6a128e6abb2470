package berth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
)

// TestRename: a running container renamed is found by its new name only,
// its old name is free at once, the other containers on its network
// resolve the new name and not the old, and the name outlives its stop; a
// taken, invalid or unchanged name is refused; an auto-removed container
// renamed while it runs frees its new name when it goes.
func TestRename(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if _, err := rt.CreateNetwork(ctx, "renet"); err != nil {
		t.Fatal(err)
	}
	c := sleeper(t, rt, "before", berth.WithNetwork("renet"))
	peer := sleeper(t, rt, "peer", berth.WithNetwork("renet"))
	if err := c.Rename(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if found, err := rt.Container(ctx, "after"); err != nil || found.ID != c.ID {
		t.Errorf("Container(after): %v, %v", found, err)
	}
	if _, err := rt.Container(ctx, "before"); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("Container(before) after the rename: %v, want ErrNotFound", err)
	}
	info, err := c.Inspect(ctx)
	if err != nil || info.Name != "after" || len(info.State.Networks) != 1 || info.State.Networks[0].Container != "after" {
		t.Errorf("Inspect after the rename: %+v, %v", info, err)
	}
	if out, err := execOutput(t, peer, "ping -c 1 -W 3 after >/dev/null && echo new; ping -c 1 -W 1 before >/dev/null 2>&1 || echo old-gone"); err != nil || out != "new\nold-gone\n" {
		t.Errorf("the peer resolving the names: %q, %v", out, err)
	}
	sleeper(t, rt, "before") // the old name is free

	for _, bad := range []struct {
		name string
		want error
	}{{"peer", berth.ErrExists}, {"bad name", berth.ErrInvalid}, {"after", berth.ErrInvalid}, {"", berth.ErrInvalid}} {
		if err := c.Rename(ctx, bad.name); !errors.Is(err, bad.want) {
			t.Errorf("Rename(%q): %v, want %v", bad.name, err, bad.want)
		}
	}
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if info, err := c.Inspect(ctx); err != nil || info.Name != "after" {
		t.Errorf("Inspect after the stop: %v, %v; want the new name kept", info.Name, err)
	}
	if err := c.Rename(ctx, "stopped"); err != nil {
		t.Errorf("renaming a stopped container: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := execOutput(t, peer, "ping -c 1 -W 3 stopped >/dev/null && echo found"); err != nil || out != "found\n" {
		t.Errorf("the peer resolving the stopped container's new name after its start: %q, %v", out, err)
	}

	rm := mustRun(t, rt, "busybox", sh("read line"), berth.WithName("rm-before"), berth.WithAutoRemove())
	if err := rm.Rename(ctx, "rm-after"); err != nil {
		t.Fatal(err)
	}
	if err := rm.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	rm.Wait(ctx)
	for _, name := range []string{"rm-before", "rm-after"} {
		if _, err := os.Lstat(filepath.Join(rt.Root(), "names", name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("names/%s after the renamed auto-removed container went: %v", name, err)
		}
	}
}

// TestNameOfRemovedContainer: a name whose container is gone (a removal
// that lost a race with Rename, or a program killed between the two) is
// given to the next container that asks for it; a live one is not.
func TestNameOfRemovedContainer(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	live := sleeper(t, rt, "live")
	names := filepath.Join(rt.Root(), "names")
	if err := os.WriteFile(filepath.Join(names, "left"), []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := sleeper(t, rt, "left")
	if owner, err := os.ReadFile(filepath.Join(names, "left")); err != nil || string(owner) != c.ID {
		t.Errorf("names/left after a container took it: %q, %v", owner, err)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithName("live")); !errors.Is(err, berth.ErrExists) {
		t.Errorf("a running container's name: %v, want ErrExists", err)
	}
	if err := live.Signal(ctx, 0); err != nil {
		t.Errorf("the container whose name was asked for: %v", err)
	}
}
