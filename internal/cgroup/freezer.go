package cgroup

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// The freezer is direct file code: cgroup1 and cgroup2 both loop until the state is reached
// with no way out, and a v1 cgroup can stay FREEZING indefinitely (a task in an uninterruptible
// sleep on a fuse or NFS mount), which must not hang the caller.

// Freeze stops every process in the cgroup (docker pause) and returns once the kernel reports
// the cgroup frozen. If ctx ends first, Freeze thaws the cgroup again and returns an error
// wrapping ctx.Err(). It uses the v1 freezer where there is one, cgroup.freeze otherwise.
func (c *Cgroup) Freeze(ctx context.Context) error {
	return c.setFrozen(ctx, true)
}

// Thaw resumes the processes of a frozen cgroup (docker unpause) and returns once the kernel
// reports the cgroup thawed, or with an error wrapping ctx.Err() when ctx ends first.
func (c *Cgroup) Thaw(ctx context.Context) error {
	return c.setFrozen(ctx, false)
}

func (c *Cgroup) setFrozen(ctx context.Context, frozen bool) error {
	var err error
	switch dir, ok := c.v1Dirs[cgroup1.Freezer]; {
	case ok:
		err = setFrozenV1(ctx, dir, frozen)
	case c.v2Dir != "":
		err = setFrozenV2(ctx, c.v2Dir, frozen)
	default:
		err = fmt.Errorf("no freezer hierarchy: %w", errors.ErrUnsupported)
	}
	if err != nil {
		verb := "thawing"
		if frozen {
			verb = "freezing"
		}
		return fmt.Errorf("cgroup %s: %s: %w", c.path, verb, err)
	}
	return nil
}

func setFrozenV1(ctx context.Context, dir string, frozen bool) error {
	want := "THAWED"
	if frozen {
		want = "FROZEN"
	}
	// Each write of FROZEN makes the kernel try again to freeze the tasks that were busy
	// (FREEZING); reading freezer.state is what notices that all of them are now frozen.
	return poll(ctx, func() (bool, error) {
		if err := writeFile(dir, "freezer.state", want); err != nil {
			return false, err
		}
		state, err := readString(dir, "freezer.state")
		return state == want, err
	}, func() {
		if frozen {
			_ = writeFile(dir, "freezer.state", "THAWED")
		}
	}, filepath.Join(dir, "freezer.state"))
}

func setFrozenV2(ctx context.Context, dir string, frozen bool) error {
	want := uint64(0)
	if frozen {
		want = 1
	}
	// cgroup.freeze is the request and cgroup.events "frozen" the outcome, which the kernel
	// reaches asynchronously once every task has stopped.
	if err := writeFile(dir, "cgroup.freeze", fmt.Sprint(want)); err != nil {
		return err
	}
	return poll(ctx, func() (bool, error) {
		events, err := readKV(dir, "cgroup.events")
		return err == nil && events["frozen"] == want, err
	}, func() {
		if frozen {
			_ = writeFile(dir, "cgroup.freeze", "0")
		}
	}, filepath.Join(dir, "cgroup.events"))
}

// poll calls done with a growing pause until it reports true, fails, or ctx ends; in the last
// case it calls undo and names file in the error.
func poll(ctx context.Context, done func() (bool, error), undo func(), file string) error {
	delay := 100 * time.Microsecond
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			undo()
			return fmt.Errorf("waiting for %s: %w", file, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}
