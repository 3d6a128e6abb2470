package berth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/berth-dev/berth/internal/cgroup"
)

// ContainerUpdate is what Update changes (docker update).
type ContainerUpdate struct {
	// Resources are the container's limits. A zero field means no limit.
	Resources Resources
	// RestartPolicy is the container's restart policy, which needs a
	// detached container that is not auto-removed (WithRestartPolicy).
	RestartPolicy RestartPolicy
}

// Update changes a container's limits and restart policy (docker
// update). change is called once, with the container's current limits
// and restart policy, and changes what should change; an error from it
// fails the update, which then changes nothing. It is called with the
// container's record locked, so that two updates never undo each other:
// it must return promptly and must not call methods that change a
// container of the root (Inspect and State are safe).
//
// A running or paused container's cgroup gets the new limits at once, and
// the record keeps them for its next starts; a new policy decides about
// the container's next exit. Invalid values fail with ErrInvalid. On
// cgroup v1 (and hybrid hosts, for their v1 controllers) the kernel
// refuses a memory limit below what the container uses and cannot
// reclaim: the update then fails and the old limits are put back. On
// cgroup v2 the kernel takes it and reclaims, OOM-killing processes of
// the container if it must, as with docker.
func (c *Container) Update(ctx context.Context, change func(*ContainerUpdate) error) error {
	r := c.rt
	if err := r.checkOpen(); err != nil {
		return err
	}
	if change == nil {
		return fmt.Errorf("%w: Update of container %s without a change", ErrInvalid, c.Name)
	}
	_, unlock, err := r.lockNotStarting(ctx, c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = r.updateRecord(ctx, c.ID, func(cur *containerRecord) error {
		old := ContainerUpdate{Resources: cur.Config.Resources, RestartPolicy: cur.Config.Restart}
		u := old
		if err := change(&u); err != nil {
			return err
		}
		if u == old {
			return errUnchanged
		}
		if u.RestartPolicy != old.RestartPolicy {
			if err := u.RestartPolicy.check(cur.Config.Detached, cur.Config.AutoRemove); err != nil {
				return err
			}
		}
		if u.Resources != old.Resources {
			if err := checkLimits(u.Resources); err != nil {
				return fmt.Errorf("updating container %s: %w", c.Name, err)
			}
		}
		cur.Config.Resources, cur.Config.Restart = u.Resources, u.RestartPolicy
		if !cur.State.Running || u.Resources == old.Resources {
			return nil // the next start makes its cgroup with them
		}
		// The run's exit deletes its cgroup before it takes the record's
		// lock to record the exit: a cgroup gone, or going, is the exit's.
		cg, err := cgroup.Load(r.cgroupPath(c.ID))
		if err == nil {
			if err = cg.Update(liveLimits(u.Resources)); err != nil && !cgroupGone(err) {
				if rerr := cg.Update(liveLimits(old.Resources)); rerr != nil && !cgroupGone(rerr) {
					err = errors.Join(err, fmt.Errorf("putting the old limits back: %w", rerr))
				}
			}
		}
		switch {
		case err == nil, cgroupGone(err):
			return nil // if it exited, its next start takes them
		}
		return fmt.Errorf("updating container %s's limits: %w", c.Name, err)
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// checkLimits checks limits before a container is made or updated with
// them: what docker refuses, and CPUs the host lacks.
func checkLimits(res Resources) error {
	if err := cgroupResources(res).Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for _, c := range []struct {
		list  string
		check func(string) error
	}{{res.CpusetCpus, cgroup.CheckCpus}, {res.CpusetMems, cgroup.CheckMems}} {
		if c.list == "" {
			continue
		}
		if err := c.check(c.list); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// liveLimits are res for a running container's cgroup: its device rules
// stay as they were made (written again, they would deny every device for
// a moment).
func liveLimits(res Resources) cgroup.Resources {
	l := cgroupResources(res)
	l.RestrictDevices = false
	return l
}

// cgroupGone reports an error from a cgroup that is deleted, or being
// deleted, under the caller.
func cgroupGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}
