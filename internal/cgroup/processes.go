package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// killTimeout bounds how long Kill waits for the cgroup to empty. SIGKILL cannot be caught, so
// only a task stuck in the kernel (an uninterruptible sleep on a dead NFS server) takes longer.
const killTimeout = 10 * time.Second

// Pids returns the processes in the cgroup and in any cgroup below it, sorted, merged over
// every hierarchy (a process moved out of one hierarchy by someone else is still listed).
func (c *Cgroup) Pids() ([]int, error) {
	pids, _, err := c.pids()
	return pids, err
}

func (c *Cgroup) pids() (pids []int, found string, err error) {
	for _, dir := range c.dirs {
		p, f, err := procsIn(dir)
		if err != nil {
			return nil, "", fmt.Errorf("cgroup %s: listing processes: %w", c.path, err)
		}
		pids = append(pids, p...)
		if found == "" {
			found = f
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids), found, nil
}

// Kill sends SIGKILL to every process in the cgroup and waits, up to 10 seconds, until none is
// left. It writes cgroup.kill where the kernel has it (5.14 and later, v2 and hybrid hosts),
// which kills atomically even a process forking in a loop; otherwise it freezes the v1
// cgroup, signals each process and thaws it, so that none forks between listing and killing.
// A frozen cgroup is thawed so that the signal is delivered. Kill does not reap: the processes'
// parent must wait for them, or they stay zombies (outside the cgroup, which empties anyway).
func (c *Cgroup) Kill() error {
	deadline := time.Now().Add(killTimeout)
	killFile := c.v2Dir != ""
	freezer, hasFreezer := c.v1Dirs[cgroup1.Freezer]
	delay := time.Millisecond
	for {
		if killFile {
			err := writeFile(c.v2Dir, "cgroup.kill", "1")
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// Either the kernel predates cgroup.kill or the v2 directory is gone (a
				// cgroup loaded from partial leftovers); signal one by one.
				killFile = false
			case err != nil:
				return fmt.Errorf("cgroup %s: %w", c.path, err)
			}
		}
		frozeHere := false
		if !killFile && hasFreezer {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			frozeHere = setFrozenV1(ctx, freezer, true) == nil
			cancel()
		}
		pids, found, err := c.pids()
		if err != nil {
			return err
		}
		// Never signal ourselves: procsIn leaves out a process whose
		// threads inside do not include its leader (a direct start's
		// thread, before it leaves), so this holds only if this program's
		// main thread was put in the cgroup.
		if i := slices.Index(pids, os.Getpid()); i >= 0 {
			if hasFreezer && frozeHere {
				setFrozenV1(context.Background(), freezer, false)
			}
			return fmt.Errorf("cgroup %s: a thread of this program is inside (listed in %s); not killing it", c.path, found)
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cgroup %s: killing pid %d (listed in %s): %w", c.path, pid, found, err)
			}
		}
		if hasFreezer && (frozeHere || len(pids) > 0) {
			// Frozen tasks take the signal only once thawed, whoever froze them.
			if err := setFrozenV1(context.Background(), freezer, false); err != nil {
				return fmt.Errorf("cgroup %s: thawing to let SIGKILL through: %w", c.path, err)
			}
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v (listed in %s) still alive %v after SIGKILL",
				c.path, pids, found, killTimeout)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// Delete removes the cgroup, and any cgroup a container created below it, from every
// hierarchy. It kills nothing: while a process is inside, it fails with an error wrapping
// ErrPopulated that names the processes and the file listing them (call Kill first). Deleting
// a cgroup that is already gone succeeds.
func (c *Cgroup) Delete() error {
	// The common case, an empty cgroup with no child cgroups, needs one
	// rmdir per hierarchy; listing every directory for processes and
	// children first cost about twice as long. Anything the kernel
	// refuses takes the careful path below.
	rest := c.dirs[:0:0]
	for _, dir := range c.dirs {
		if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
			rest = append(rest, dir)
		}
	}
	if len(rest) == 0 {
		c.removeOpenDevices()
		return nil
	}
	pids, found, err := c.pids()
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		return fmt.Errorf("cgroup %s: deleting: processes %v listed in %s: %w; kill them first",
			c.path, pids, found, ErrPopulated)
	}
	var errs []error
	for _, dir := range rest {
		dirs, err := subtree(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range dirs {
			if err := rmdirRetry(d); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cgroup %s: deleting: %w", c.path, err)
	}
	c.removeOpenDevices()
	return nil
}

// removeOpenDevices removes the open devices parent the cgroup's devices
// directory was in, unless another cgroup is in it (rmdir refuses).
func (c *Cgroup) removeOpenDevices() {
	if c.openDevices != "" {
		unix.Rmdir(c.openDevices)
	}
}
