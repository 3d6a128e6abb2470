package berth_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
)

// TestGroupAdd: WithGroupAdd gives the container's user the groups named
// (from the container's /etc/group) or numbered, besides its own, and so
// to the processes Exec starts; a name /etc/group lacks fails the start
// naming it. busybox's user is in 1000 and, through /etc/group, staff (50).
func TestGroupAdd(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	p := sh("id -G")
	p.User = "user"
	out, errOut, err := runOut(t, rt, "busybox", p, berth.WithAutoRemove(), berth.WithGroupAdd("daemon", "4321", "staff"))
	if err != nil {
		t.Fatalf("%v: %s", err, errOut)
	}
	got := strings.Fields(out)
	slices.Sort(got)
	if strings.Join(got, " ") != "1 1000 4321 50" {
		t.Errorf("id -G = %q, want 1000, 50 (staff, by membership), 1 (daemon) and 4321, each once", out)
	}

	c, err := rt.Run(ctx, "busybox", sh("sleep 60"), berth.WithDetach(), berth.WithGroupAdd("tty"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
	if got := execOut(t, c, sh("id -G")); got != "0 5\n" {
		t.Errorf("an exec'd process's groups: %q, want 0 5", got)
	}
	if info, err := c.Inspect(ctx); err != nil || strings.Join(info.GroupAdd, ",") != "tty" {
		t.Errorf("Inspect GroupAdd = %v (%v), want [tty]", info.GroupAdd, err)
	}

	_, _, err = runOut(t, rt, "busybox", sh("true"), berth.WithAutoRemove(), berth.WithGroupAdd("nosuchgroup"))
	if err == nil || !strings.Contains(err.Error(), "unable to find group nosuchgroup") {
		t.Errorf("an unknown group: %v, want a start error naming it", err)
	}
}
