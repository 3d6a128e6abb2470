package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Stats is a snapshot of a cgroup's resource use, the subset docker stats shows.
type Stats struct {
	// CPUUsageNanos is the CPU time used by all processes, past and present, in nanoseconds.
	CPUUsageNanos uint64
	// MemoryUsage is the memory charged to the cgroup in bytes less its inactive file pages
	// (docker stats' figure).
	MemoryUsage uint64
	// MemoryLimit is the cgroup's own memory limit in bytes, 0 when unlimited.
	MemoryLimit uint64
	// Pids is the number of tasks (threads included) in the cgroup.
	Pids uint64
}

// v1 reports "unlimited" as the largest int64 aligned to the page size, which varies by
// architecture; no real limit comes near this threshold.
const unlimitedV1 = 1 << 62

// Stats returns the cgroup's current resource use. Fields whose controller the host lacks are
// zero.
func (c *Cgroup) Stats() (Stats, error) {
	if c.layout.mode == ModeV2 {
		return c.statsV2()
	}
	return c.statsV1()
}

func (c *Cgroup) statsV1() (Stats, error) {
	v1, err := c.v1Cgroup()
	if err != nil {
		return Stats{}, err
	}
	m, err := v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroup %s: reading statistics: %w", c.path, err)
	}
	var s Stats
	if m.CPU != nil && m.CPU.Usage != nil {
		s.CPUUsageNanos = m.CPU.Usage.Total
	}
	if m.Memory != nil && m.Memory.Usage != nil {
		s.MemoryUsage = withoutInactiveFile(m.Memory.Usage.Usage, m.Memory.TotalInactiveFile)
		if m.Memory.Usage.Limit < unlimitedV1 {
			s.MemoryLimit = m.Memory.Usage.Limit
		}
	}
	if m.Pids != nil {
		s.Pids = m.Pids.Current
	}
	return s, nil
}

func (c *Cgroup) statsV2() (Stats, error) {
	if c.v2 == nil {
		return Stats{}, fmt.Errorf("cgroup %s: %s does not exist: %w", c.path, c.v2Dir, fs.ErrNotExist)
	}
	m, err := c.v2.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatPids)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroup %s: reading statistics: %w", c.path, err)
	}
	var s Stats
	if m.CPU != nil {
		s.CPUUsageNanos = m.CPU.UsageUsec * 1000
	}
	if m.Memory != nil {
		s.MemoryUsage = withoutInactiveFile(m.Memory.Usage, m.Memory.InactiveFile)
		if m.Memory.UsageLimit != math.MaxUint64 {
			s.MemoryLimit = m.Memory.UsageLimit
		}
	}
	if m.Pids != nil {
		s.Pids = m.Pids.Current
	}
	return s, nil
}

// withoutInactiveFile is memory usage as docker stats shows it: less the
// page cache the kernel can drop first (inactive file pages), so that a
// container that wrote a big file does not look near its limit.
func withoutInactiveFile(usage, inactiveFile uint64) uint64 {
	if inactiveFile < usage {
		return usage - inactiveFile
	}
	return usage
}

// OOMKilled reports whether the kernel's OOM killer has killed a process in the cgroup because
// of the cgroup's memory limit (docker inspect's State.OOMKilled). On v1 a cgroup currently
// under OOM counts too. Without a memory controller it reports false.
func (c *Cgroup) OOMKilled() (bool, error) {
	if dir, ok := c.v1Dirs[cgroup1.Memory]; ok {
		kv, err := readKV(dir, "memory.oom_control")
		if err != nil {
			return false, fmt.Errorf("cgroup %s: %w", c.path, err)
		}
		return kv["oom_kill"] > 0 || kv["under_oom"] > 0, nil
	}
	if c.layout.mode == ModeV2 {
		// memory.events is hierarchical (unless mounted with memory_localevents), so an OOM
		// kill in a cgroup the container made below its own counts.
		kv, err := readKV(c.v2Dir, "memory.events")
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := readKV(c.v2Dir, "cgroup.events"); serr == nil {
				return false, nil // no memory controller here
			}
		}
		if err != nil {
			return false, fmt.Errorf("cgroup %s: %w", c.path, err)
		}
		return kv["oom_kill"] > 0, nil
	}
	return false, nil
}
