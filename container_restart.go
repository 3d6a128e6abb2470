package berth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/bridge"
)

// Start starts a container that has exited again (docker start): the same
// ID, name, configuration and root filesystem, with the changes its
// processes made, and the same volumes. Its networks, published ports
// (a host port left to the kernel may change, as with docker), name server
// entries and /etc/hosts are made anew, and its output is appended to its
// log. Starting a container that runs already does nothing (docker start);
// a paused one fails with an error wrapping ErrInvalid, an auto-removed
// one is gone once it exits.
//
// The container keeps the lifetime Run gave it. A detached container
// (WithDetach) runs on after the program that started it; any program on
// the root can start it. An attached one now belongs to this Runtime and
// dies with it or with the program, as at Run; with no Process of Run's
// to write to, its output goes to its log only (Logs). Start returns once
// the container's process runs; use Wait for its end. If the command
// cannot be run, Start fails as Run does, and the container is left
// exited with the reason in its State.
func (c *Container) Start(ctx context.Context) error {
	r := c.rt
	done, err := r.beginRun()
	if err != nil {
		return err
	}
	defer done()
	rec, unlock, err := r.lockExited(ctx, c)
	if err != nil || rec == nil {
		return err // nil and nil: it runs already
	}
	for _, id := range rec.Config.ChainIDs {
		if !r.snaps.Exists(id) {
			unlock()
			return fmt.Errorf("starting container %s: its image's layer %s is gone from the store", c.Name, shortID(id))
		}
	}
	// The host ends of the last run's veths go with its network namespace,
	// in the background; the new ones have the same names.
	if len(rec.Config.Networks) > 0 {
		if err := bridge.DeletePrefixed(hostVethPrefix(rec.ID)); err != nil {
			unlock()
			return fmt.Errorf("starting container %s: %w", c.Name, err)
		}
	}
	// "created" until it runs, as a Run's container is, with this program
	// named as its starter: a sweep elsewhere that finds it so after this
	// program died settles it as it does a Run's (settleCreated).
	rec.State = ContainerState{Status: statusCreated}
	rec.Creator, rec.CreatorStart = os.Getpid(), selfStart()
	if err := r.writeRecord(rec); err != nil {
		unlock()
		return err
	}
	if rec.Config.Detached {
		unlock() // the monitor takes it to start the container
		if err := r.startDetached(ctx, rec); err != nil {
			if !r.settleCreated(c.ID, err.Error()) {
				r.stopAbandoned(c)
			}
			return fmt.Errorf("starting container %s: %w", c.Name, err)
		}
		return nil
	}
	// Wait finds the run through the Runtime (owned), on every handle.
	if _, err := r.launch(ctx, rec, stdio{}, unlock); err != nil {
		return fmt.Errorf("starting container %s: %w", c.Name, err)
	}
	return nil
}

// Restart stops the container as Stop does (timeout as there) if it runs,
// then starts it again as Start does (docker restart). A container that
// is not running is only started.
func (c *Container) Restart(ctx context.Context, timeout time.Duration) error {
	if err := c.Stop(ctx, timeout); err != nil {
		return err
	}
	return c.Start(ctx)
}

// lockExited waits until container c has exited and no other program
// holds it (one that is finishing its exit, or starting it), and returns
// its record with its owner lock held; or a nil record when the container
// runs, or was started by another program meanwhile.
func (r *Runtime) lockExited(ctx context.Context, c *Container) (*containerRecord, func(), error) {
	for {
		rec, err := r.currentRecord(c.ID)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case rec.State.Status == statusPaused:
			return nil, nil, fmt.Errorf("%w: container %s is paused; unpause it instead", ErrInvalid, c.Name)
		case rec.State.Running:
			return nil, nil, nil
		case rec.Config.AutoRemove:
			// Removed as it exited, or about to be.
			return nil, nil, fmt.Errorf("container %s: %w", c.Name, ErrNotFound)
		case rec.creatorGone():
			r.settleCreated(c.ID, errCreatorGone)
			continue
		case rec.State.Status == statusExited:
			locked, unlock, err := r.lockOwner(c.ID)
			if err == nil && locked.State.Status == statusExited {
				return locked, unlock, nil
			}
			if err == nil {
				unlock()
				continue
			}
			if !errors.Is(err, errOwned) {
				return nil, nil, err
			}
		}
		// Another program is starting it, or has recorded its exit and
		// is letting go of it: a moment.
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("starting container %s: %w", c.Name, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}
