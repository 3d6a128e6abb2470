package berth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/berth-dev/berth/internal/cgroup"
)

// ContainerUpdate is what Update changes (docker update). A nil field is
// left as it is.
type ContainerUpdate struct {
	// Resources replaces the container's limits, all of them: read them
	// with Inspect and change what should change. A zero field lifts its
	// limit.
	Resources *Resources
	// RestartPolicy replaces the container's restart policy, which needs
	// a detached container that is not auto-removed (WithRestartPolicy).
	RestartPolicy *RestartPolicy
}

// Update changes a container's limits and restart policy (docker
// update): a running or paused container's cgroup gets the new limits at
// once, and the record keeps them for its next starts; a new policy
// decides about the container's next exit. Limits the kernel refuses for
// the running container (a memory limit below what it uses, say) fail
// the update and change nothing. Invalid values fail with ErrInvalid.
func (c *Container) Update(ctx context.Context, u ContainerUpdate) error {
	r := c.rt
	if err := r.checkOpen(); err != nil {
		return err
	}
	if u.Resources != nil {
		if err := cgroupResources(*u.Resources).Validate(); err != nil {
			return fmt.Errorf("%w: updating container %s: %w", ErrInvalid, c.Name, err)
		}
	}
	// Under the lock a start takes while it reads the record it launches
	// with (prepareStartAgain), and once no start is in progress: the
	// launch writes that record whole, and would undo a change made
	// between the two.
	unlock, err := r.lockNetworks(ctx, c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := r.notStarting(ctx, c.ID); err != nil {
		return err
	}
	_, err = r.updateRecord(ctx, c.ID, func(cur *containerRecord) error {
		if p := u.RestartPolicy; p != nil {
			if p.restarts() && cur.Config.AutoRemove {
				return fmt.Errorf("%w: restart policy cannot be updated because container %s is auto-removed", ErrInvalid, c.Name)
			}
			if err := p.check(cur.Config.Detached, cur.Config.AutoRemove); err != nil {
				return err
			}
			cur.Config.Restart = *p
		}
		if u.Resources == nil {
			return nil
		}
		old := cur.Config.Resources
		cur.Config.Resources = *u.Resources
		if !cur.State.Running {
			return nil // the next start makes its cgroup with them
		}
		// Under the record's lock: the run's exit, recorded under it too,
		// comes before (the cgroup is gone) or after.
		cg, err := cgroup.Load(r.cgroupPath(c.ID))
		if errors.Is(err, fs.ErrNotExist) {
			return nil // it exited: its next start takes them
		}
		if err == nil {
			if err = cg.Update(liveLimits(*u.Resources)); err != nil {
				cg.Update(liveLimits(old)) // what was written before the refusal
			}
		}
		if err != nil {
			return fmt.Errorf("updating container %s's limits: %w", c.Name, err)
		}
		return nil
	})
	return err
}

// liveLimits are res for a running container's cgroup: its device rules
// stay as they were made (written again, they would deny every device for
// a moment).
func liveLimits(res Resources) cgroup.Resources {
	l := cgroupResources(res)
	l.RestrictDevices = false
	return l
}
