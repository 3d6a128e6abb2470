package berth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/bridge"
)

// Start starts a container that Create made, or one that has exited,
// again (docker start): the same ID, name, configuration and root
// filesystem, with the changes its processes made (or CopyTo), and the
// same volumes. Its networks (those Connect added while it was stopped
// among them), published ports (a host port left to the kernel may
// change, as with docker), name server entries and /etc/hosts are made
// anew, and its output is appended to its log. Starting a container that
// runs already does nothing (docker start), and so does starting one
// that its restart policy is about to restart; a paused one fails with an
// error wrapping ErrInvalid, and an auto-removed one is gone once it exits
// (ErrNotFound).
//
// The container has the lifetime Run gives one. A detached container
// (WithDetach) runs on after the program that started it; any program on
// the root can start it. An attached one belongs to the Runtime that
// started it and dies with it or with the program, as at Run; once it has
// run before, it is then left exited rather than removed. With no
// Process of Run's to write to, its output goes to its log only (Logs).
// Start returns once the container's process runs; use Wait for its end.
// If the command cannot be run, Start fails as Run does, and the container
// is left exited with the reason in its State (or removed, if it is
// auto-removed).
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
	if err := r.prepareStartAgain(ctx, c, rec, false); err != nil {
		unlock()
		return fmt.Errorf("starting container %s: %w", c.Name, err)
	}
	if rec.Config.Detached {
		unlock() // the monitor takes it to start the container
		if err := r.startDetached(ctx, rec); err != nil {
			r.abandonStart(c, err.Error())
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

// prepareStartAgain readies container rec, exited or never started and
// under its owner lock, for a launch: what its last run left is cleared, and its record
// says "created", with this program as its starter (so that a sweep
// elsewhere settles a start cut short by this program's death as it
// settles a Run's). rec is updated to the record written. A start the
// user asked for (not byPolicy: a restart by the container's
// restart policy, by the monitor or by a program that claimed it after
// the monitor died) resets the policy's count and its user's stop.
func (r *Runtime) prepareStartAgain(ctx context.Context, c *Container, rec *containerRecord, byPolicy bool) error {
	for _, id := range rec.Config.ChainIDs {
		if !r.snaps.Exists(id) {
			return fmt.Errorf("its image's layer %s is gone from the store", shortID(id))
		}
	}
	if rec.State.Status == statusDead {
		// Its owner died: the sweep's cleaning, done here.
		r.deleteCgroup(rec.ID)
		r.removeStrayEndpoints(rec.ID)
	}
	// The host ends of the last run's veths go with its network namespace,
	// in the background; the new ones have the same names.
	if !rec.neverStarted() && len(rec.Config.Networks) > 0 {
		if err := bridge.DeletePrefixed(hostVethPrefix(rec.ID)); err != nil {
			return err
		}
	}
	// Its volumes' locks, shared, until the record says "created": a
	// forced volume removal either sees the container live or is done
	// before, and then the start fails here.
	for _, m := range rec.Config.Mounts {
		if m.Type != MountVolume {
			continue
		}
		unlockVolume, err := r.store.Lock(ctx, volumeLock(m.Source), false)
		if err != nil {
			return err
		}
		defer unlockVolume()
		if _, err := os.Stat(r.volumeDir(m.Source)); err != nil {
			return fmt.Errorf("its volume %s: %w", m.Source, err)
		}
	}
	// Under the container's network lock, which Connect and Disconnect
	// hold: one made before is in the record read here, one after waits
	// for the start (notStarting). Under the record's lock, which a copy
	// to or from the stopped container holds while its overlay is mounted.
	unlockNetworks, err := r.lockNetworks(ctx, rec.ID)
	if err != nil {
		return err
	}
	defer unlockNetworks()
	cur, err := r.updateRecord(ctx, rec.ID, func(cur *containerRecord) error {
		if byPolicy && (!cur.State.Restarting || cur.Starts != rec.Starts || cur.StopRequested) {
			return errRestartCalledOff
		}
		if !byPolicy {
			cur.StopRequested, cur.RestartCount = false, 0
		}
		// A restart by the policy is shown as restarting, with the last
		// run's end, until it runs.
		last := cur.State
		cur.State = ContainerState{Status: statusCreated, Health: last.Health}
		if byPolicy {
			cur.State.Restarting = true
			cur.State.ExitCode, cur.State.OOMKilled, cur.State.Error, cur.State.FinishedAt = last.ExitCode, last.OOMKilled, last.Error, last.FinishedAt
		}
		cur.Creator, cur.CreatorStart = os.Getpid(), selfStart()
		return nil
	})
	if err != nil {
		return err
	}
	*rec = *cur
	return nil
}

// Restart stops the container as Stop does (timeout as there) if it runs,
// then starts it again as Start does (docker restart). A container that
// is not running is only started; a paused one is stopped all the same.
// An auto-removed container, which stopping would remove, fails with an
// error wrapping ErrInvalid.
func (c *Container) Restart(ctx context.Context, timeout time.Duration) error {
	rec, err := c.rt.readRecord(c.ID)
	if err != nil {
		return err
	}
	if rec.Config.AutoRemove && rec.State.Status != statusCreated {
		return fmt.Errorf("%w: container %s is removed when it stops (auto-remove) and cannot be restarted", ErrInvalid, c.Name)
	}
	if err := c.Stop(ctx, timeout); err != nil {
		return err
	}
	return c.Start(ctx)
}

// lockExited waits until container c has exited (or its owner died, or
// it was made by Create and never started) and
// no other program holds it (one that is finishing its exit, or starting
// it), and returns its record with its owner lock held; or a nil record
// when the container runs, or was started by another program meanwhile.
func (r *Runtime) lockExited(ctx context.Context, c *Container) (*containerRecord, func(), error) {
	for {
		rec, err := r.currentRecord(c.ID)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case rec.State.Status == statusPaused:
			return nil, nil, fmt.Errorf("%w: container %s is paused; unpause it instead", ErrInvalid, c.Name)
		case rec.State.Running && rec.alive():
			return nil, nil, nil
		case rec.State.Running:
			// Exited; its owner is recording that: a moment.
		case rec.creatorGone():
			if r.settleCreated(c.ID, errCreatorGone) {
				continue // read what it was settled as
			}
		case rec.starting():
			// Another program is starting it: it runs in a moment.
		case rec.State.Restarting:
			// Its policy restarts it (docker start does nothing then).
			return nil, nil, nil
		case rec.Config.AutoRemove && rec.State.Status != statusCreated:
			// Removed as it exited, or about to be.
			return nil, nil, fmt.Errorf("container %s: %w", c.Name, ErrNotFound)
		default: // exited, created (Create), or dead: running when its owner died
			locked, unlock, err := r.lockOwner(c.ID)
			if err == nil {
				switch {
				case locked.State.Status == statusExited || locked.neverStarted():
					return locked, unlock, nil
				case locked.processGone():
					locked.State.Status, locked.State.Running = statusDead, false
					return locked, unlock, nil
				}
				unlock()
				continue
			}
			if !errors.Is(err, errOwned) {
				return nil, nil, err
			}
			// Its owner is letting go of it after recording its exit.
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("starting container %s: %w", c.Name, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}
