package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Resources are the limits of a cgroup. The zero value means no limits. Every call that takes
// Resources sets all of them: a zero field lifts a limit set earlier.
type Resources struct {
	// MemoryLimit is the memory limit in bytes (docker run --memory); 0 means unlimited.
	MemoryLimit int64
	// MemorySwap is the limit of memory plus swap in bytes (docker run --memory-swap). As in
	// docker, 0 means twice MemoryLimit when MemoryLimit is set, and -1 means unlimited swap.
	// It must be at least MemoryLimit, and needs MemoryLimit. It is ignored where the kernel
	// does not account swap (as docker does, which warns).
	MemorySwap int64
	// NanoCPUs is the CPU limit in billionths of a CPU (docker run --cpus=1.5 is 1.5e9),
	// enforced as a quota over a 100 ms period; 0 means unlimited. The kernel's smallest quota
	// makes 0.01 CPU (1e7) the minimum.
	NanoCPUs int64
	// CPUPeriod and CPUQuota are the CFS period and quota in microseconds (docker run
	// --cpu-period, --cpu-quota), the other way to say NanoCPUs, which they exclude: a period
	// of 1000 to 1000000 (0: 100000) and a quota of at least 1000 (0 or -1: unlimited).
	CPUPeriod, CPUQuota int64
	// MemoryReservation is the soft memory limit in bytes (docker run --memory-reservation),
	// which the kernel reclaims a cgroup down to under memory pressure: memory.soft_limit_in_bytes
	// on v1, memory.low on v2. 0 means none; at least 6 MiB and at most MemoryLimit.
	MemoryReservation int64
	// CPUShares is the relative CPU weight (docker run --cpu-shares), 2 to 262144, 0 meaning
	// the default of 1024. On v2 it becomes cpu.weight with runc's conversion.
	CPUShares uint64
	// PidsLimit is the maximum number of tasks (docker run --pids-limit); 0 or -1 means
	// unlimited.
	PidsLimit int64
	// CpusetCpus are the CPUs the processes may run on (docker run --cpuset-cpus), a list
	// such as "0-2,4"; empty means the parent's. Only on a v1 cpuset hierarchy (v1 and hybrid
	// hosts).
	CpusetCpus string
	// CpusetMems are the memory nodes they may allocate on (docker run --cpuset-mems), a list
	// as CpusetCpus; empty means the parent's. Only on a v1 cpuset hierarchy.
	CpusetMems string
	// RestrictDevices limits device access to docker's default allow-list (null, zero, full,
	// random, urandom, tty, console, ptmx, the pts, tun; mknod of any device stays allowed, as
	// in docker, but opening one outside the list fails). Without it a container holding
	// CAP_MKNOD could make a node for a host disk and read it. On v1 and hybrid hosts it is
	// the devices controller; on v2 an eBPF device program (containerd/cgroups builds it).
	// Update without it leaves the device rules as they are.
	RestrictDevices bool
	// AllDevices, for New, restricts no device (docker run --privileged): no v2 device
	// program, and no directory in a v1 devices hierarchy, where a cgroup can allow no more
	// than its parent, which holds docker's policy for its other children (makeV1Dirs); the
	// processes stay in the devices cgroup of whoever joined them. Not with RestrictDevices.
	AllDevices bool
	// Devices are allowed besides docker's list, with RestrictDevices
	// (docker run --device and --device-cgroup-rule). On v1 the cgroup's
	// devices directory is then not below its parent, which holds
	// docker's policy, but in an open parent beside it (see
	// openDevicesParent).
	Devices []specs.LinuxDeviceCgroup
}

// defaultDevices is docker's default device allow-list, as the devices cgroup applies it.
func defaultDevices() []specs.LinuxDeviceCgroup {
	dev := func(typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Access: access}
		if major >= 0 {
			d.Major = &major
		}
		if minor >= 0 {
			d.Minor = &minor
		}
		return d
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"}, // deny everything, then allow the list
		dev("c", -1, -1, "m"),
		dev("b", -1, -1, "m"),
		dev("c", 1, 3, "rwm"),    // /dev/null
		dev("c", 1, 5, "rwm"),    // /dev/zero
		dev("c", 1, 7, "rwm"),    // /dev/full
		dev("c", 1, 8, "rwm"),    // /dev/random
		dev("c", 1, 9, "rwm"),    // /dev/urandom
		dev("c", 5, 0, "rwm"),    // /dev/tty
		dev("c", 5, 1, "rwm"),    // /dev/console
		dev("c", 5, 2, "rwm"),    // /dev/ptmx
		dev("c", 136, -1, "rwm"), // /dev/pts/*
		dev("c", 10, 200, "rwm"), // /dev/net/tun
	}
}

// writeDevicePolicy writes docker's default device policy, with extra
// allowed too, into the v1 devices directory dir: deny everything, then
// allow the list.
func writeDevicePolicy(dir string, extra []specs.LinuxDeviceCgroup) error {
	for _, d := range append(defaultDevices(), extra...) {
		file := "devices.deny"
		if d.Allow {
			file = "devices.allow"
		}
		if err := writeFile(dir, file, deviceRule(d)); err != nil {
			return err
		}
	}
	return nil
}

// hasDevicePolicy reports whether the v1 devices directory dir holds
// exactly docker's default policy: its devices.list names the allowed
// devices and nothing else ("a *:* rwm" is the line of a cgroup that
// allows everything).
func hasDevicePolicy(dir string) bool {
	b, err := readControl(filepath.Join(dir, "devices.list"))
	if err != nil {
		return false
	}
	want := map[string]bool{}
	for _, d := range defaultDevices() {
		if d.Allow {
			want[deviceRule(d)] = true
		}
	}
	got := strings.Fields(string(b)) // three fields a line
	if len(got) != 3*len(want) {
		return false
	}
	for i := 0; i < len(got); i += 3 {
		line := got[i] + " " + got[i+1] + " " + got[i+2]
		if !want[line] {
			return false
		}
		delete(want, line) // each once
	}
	return true
}

// checkDeviceRule refuses an allowed device rule the devices controller
// would not take: a type other than a, b or c, access other than a
// non-empty subset of "rwm", or a deny.
func checkDeviceRule(d specs.LinuxDeviceCgroup) error {
	switch {
	case !d.Allow:
		return fmt.Errorf("invalid device rule %q: only allowing rules are taken", deviceRule(d))
	case d.Type != "a" && d.Type != "b" && d.Type != "c":
		return fmt.Errorf("invalid device rule %q: the type must be a, b or c", deviceRule(d))
	case d.Access == "" || strings.Trim(d.Access, "rwm") != "":
		return fmt.Errorf("invalid device rule %q: the access must be made of r, w and m", deviceRule(d))
	case d.Major != nil && *d.Major < 0, d.Minor != nil && *d.Minor < 0:
		return fmt.Errorf("invalid device rule %q: negative device number", deviceRule(d))
	}
	return nil
}

// deviceRule is the line the v1 devices controller takes for d: "a" for
// every device, else "type major:minor access" with "*" for any number.
func deviceRule(d specs.LinuxDeviceCgroup) string {
	if d.Type == "" || d.Type == "a" {
		return "a"
	}
	num := func(n *int64) string {
		if n == nil {
			return "*"
		}
		return strconv.FormatInt(*n, 10)
	}
	return d.Type + " " + num(d.Major) + ":" + num(d.Minor) + " " + d.Access
}

const (
	cpuPeriodUs      = 100_000 // docker's and the kernel's default CFS period
	minNanoCPUs      = 10_000_000
	defaultCPUShares = 1024
	maxCPUShares     = 262144
	// minMemory is docker's smallest memory limit: below it the start's
	// own allocations (charged to the container while it forks) can run
	// the container's memory out before its program does.
	minMemory = 6 << 20
	// maxPids is the largest pids.max the kernel takes (PID_MAX_LIMIT).
	maxPids = 4 << 20
)

// Validate reports limits the kernel or docker would refuse, before
// anything is made with them.
func (r Resources) Validate() error {
	switch {
	case r.MemoryLimit < 0:
		return fmt.Errorf("invalid memory limit %d: must be 0 (unlimited) or positive", r.MemoryLimit)
	case r.MemoryLimit > 0 && r.MemoryLimit < minMemory:
		return fmt.Errorf("invalid memory limit %d: the minimum is 6 MiB (%d bytes), as docker's", r.MemoryLimit, minMemory)
	case r.MemorySwap < -1:
		return fmt.Errorf("invalid memory+swap limit %d: must be -1, 0 or positive", r.MemorySwap)
	case r.MemorySwap > 0 && r.MemoryLimit == 0:
		return fmt.Errorf("invalid memory+swap limit %d: set a memory limit too", r.MemorySwap)
	case r.MemorySwap > 0 && r.MemorySwap < r.MemoryLimit:
		return fmt.Errorf("invalid memory+swap limit %d: smaller than the memory limit %d", r.MemorySwap, r.MemoryLimit)
	case r.MemoryLimit > 0 && r.MemorySwap == 0 && r.MemoryLimit > math.MaxInt64/2:
		return fmt.Errorf("invalid memory limit %d: too large", r.MemoryLimit)
	case r.NanoCPUs < 0 || (r.NanoCPUs > 0 && r.NanoCPUs < minNanoCPUs):
		return fmt.Errorf("invalid CPU limit %d nanoCPUs: the minimum is 0.01 CPU (%d)", r.NanoCPUs, minNanoCPUs)
	case r.NanoCPUs > math.MaxInt64/cpuPeriodUs:
		return fmt.Errorf("invalid CPU limit %d nanoCPUs: too large", r.NanoCPUs)
	case r.NanoCPUs != 0 && r.CPUPeriod != 0:
		return fmt.Errorf("Conflicting options: Nano CPUs and CPU Period cannot both be set")
	case r.NanoCPUs != 0 && r.CPUQuota != 0:
		return fmt.Errorf("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
	case r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000):
		return fmt.Errorf("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	case r.CPUQuota < -1 || r.CPUQuota > 0 && r.CPUQuota < 1000:
		return fmt.Errorf("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	case r.MemoryReservation < 0 || r.MemoryReservation > 0 && r.MemoryReservation < minMemory:
		return fmt.Errorf("invalid memory reservation %d: the minimum is 6 MiB (%d bytes), as docker's", r.MemoryReservation, minMemory)
	case r.MemoryLimit > 0 && r.MemoryReservation > r.MemoryLimit:
		return fmt.Errorf("Minimum memory limit can not be less than memory reservation limit, see usage")
	case r.CPUShares == 1 || r.CPUShares > maxCPUShares:
		return fmt.Errorf("invalid CPU shares %d: must be 0 (default) or 2 to %d", r.CPUShares, maxCPUShares)
	case r.PidsLimit < -1:
		return fmt.Errorf("invalid pids limit %d: must be -1, 0 (unlimited) or positive", r.PidsLimit)
	case r.PidsLimit > maxPids:
		return fmt.Errorf("invalid pids limit %d: the kernel's maximum is %d", r.PidsLimit, maxPids)
	case r.RestrictDevices && r.AllDevices:
		return fmt.Errorf("invalid device rules: both restricted and all devices")
	case len(r.Devices) > 0 && !r.RestrictDevices:
		return fmt.Errorf("invalid device rules: devices allowed without restricting the others")
	}
	for _, d := range r.Devices {
		if err := checkDeviceRule(d); err != nil {
			return err
		}
	}
	for _, set := range [...]struct{ list, what string }{{r.CpusetCpus, "cpus"}, {r.CpusetMems, "mems"}} {
		if set.list == "" {
			continue
		}
		if _, err := parseCPUs(set.list); err != nil {
			return fmt.Errorf("Invalid value %s for cpuset %s", set.list, set.what)
		}
	}
	return nil
}

// maxCPU bounds a CPU number in a list (docker's ParseUintListMaximum
// bound, the kernel's NR_CPUS on large builds).
const maxCPU = 8191

// parseCPUs reads a cpuset list such as "0-2,4" as the set of its CPUs.
func parseCPUs(list string) (map[int]bool, error) {
	set := map[int]bool{}
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || lo == "" || a < 0 || b < a || b > maxCPU {
			return nil, fmt.Errorf("Invalid value %s for cpuset cpus", list)
		}
		for c := a; c <= b; c++ {
			set[c] = true
		}
	}
	return set, nil
}

// cpuSubset reports whether every CPU of the list cpus is in the list of.
func cpuSubset(cpus, of string) bool {
	want, err := parseCPUs(cpus)
	if err != nil {
		return false
	}
	have, err := parseCPUs(of)
	if err != nil {
		return false
	}
	for c := range want {
		if !have[c] {
			return false
		}
	}
	return true
}

// CheckCpus checks a cpuset list against the host before a container is
// made with it (docker's check at create and update): the host must have
// a v1 cpuset hierarchy (v2 is not supported) and every CPU of the list,
// as its root cpuset (the online CPUs) has them.
func CheckCpus(cpus string) error { return checkCpuset(cpusetCPUs, cpus) }

// CheckMems is CheckCpus for memory nodes (docker run --cpuset-mems).
func CheckMems(mems string) error { return checkCpuset(cpusetMems, mems) }

// cpusetFile is one of a v1 cpuset's lists: its file and what docker
// calls its members in errors.
type cpusetFile struct{ file, what string }

var (
	cpusetCPUs = cpusetFile{"cpuset.cpus", "CPUs"}
	cpusetMems = cpusetFile{"cpuset.mems", "memory nodes"}
)

func checkCpuset(f cpusetFile, list string) error {
	if _, err := parseCPUs(list); err != nil {
		return err
	}
	root, ok, err := hostV1Root(cgroup1.Cpuset)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("cpuset %s need a cgroup v1 cpuset hierarchy, which this host lacks: %w", f.what, errors.ErrUnsupported)
	}
	online, err := readString(root, f.file)
	if err != nil {
		return err
	}
	if online = strings.TrimSpace(online); !cpuSubset(list, online) {
		return fmt.Errorf("Requested %s are not available - requested %s, available: %s", f.what, list, online)
	}
	return nil
}

// setCpuset writes the list f of the cpuset directory dir: list, or its
// parent's when list is empty (lifting a restriction). The kernel takes
// only CPUs (and memory nodes) the parent has; a v1 cpuset loses a CPU
// that goes offline and gets it back only at the root, so berth's
// ancestors are widened to the root's first when the request needs it.
func setCpuset(dir string, f cpusetFile, list string) error {
	parent := filepath.Dir(dir)
	available, err := readString(parent, f.file)
	if err != nil {
		return err
	}
	available = strings.TrimSpace(available)
	if list != "" && !cpuSubset(list, available) {
		if err := widenCpusets(parent, f.file); err != nil {
			return err
		}
		if available, err = readString(parent, f.file); err != nil {
			return err
		}
		if available = strings.TrimSpace(available); !cpuSubset(list, available) {
			return fmt.Errorf("Requested %s are not available - requested %s, available: %s", f.what, list, available)
		}
	}
	if list == "" {
		list = available
	}
	if cur, err := readString(dir, f.file); err == nil && strings.TrimSpace(cur) == list {
		return nil
	}
	return writeFile(dir, f.file, list)
}

// widenCpusets gives dir and its ancestors below the hierarchy's root
// (the directory whose parent has no cpuset file) the root's list in
// file, top down.
func widenCpusets(dir, file string) error {
	var chain []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(filepath.Dir(d), file)); err != nil || d == "/" {
			root := d
			online, err := readString(root, file)
			if err != nil {
				return err
			}
			for i := len(chain) - 1; i >= 0; i-- {
				if err := writeFile(chain[i], file, strings.TrimSpace(online)); err != nil {
					return err
				}
			}
			return nil
		}
		chain = append(chain, d)
	}
}

// memory returns the memory limit and the memory+swap limit in bytes, -1 meaning unlimited.
func (r Resources) memory() (limit, memsw int64) {
	switch {
	case r.MemoryLimit == 0 || r.MemorySwap == -1:
		memsw = -1
	case r.MemorySwap == 0:
		memsw = 2 * r.MemoryLimit
	default:
		memsw = r.MemorySwap
	}
	if r.MemoryLimit == 0 {
		return -1, memsw
	}
	return r.MemoryLimit, memsw
}

// cfs returns the CFS quota and period in microseconds, the quota -1
// meaning unlimited: NanoCPUs over docker's 100 ms period, or CPUQuota
// and CPUPeriod.
func (r Resources) cfs() (quota, period int64) {
	period = cpuPeriodUs
	if r.CPUPeriod > 0 {
		period = r.CPUPeriod
	}
	switch {
	case r.NanoCPUs > 0:
		return r.NanoCPUs * cpuPeriodUs / 1e9, period
	case r.CPUQuota > 0:
		return r.CPUQuota, period
	}
	return -1, period
}

// cpuLimited reports whether r sets anything of the cpu controller.
func (r Resources) cpuLimited() bool {
	return r.NanoCPUs > 0 || r.CPUShares > 0 || r.CPUPeriod > 0 || r.CPUQuota > 0
}

func (r Resources) cpuShares() uint64 {
	if r.CPUShares == 0 {
		return defaultCPUShares
	}
	return r.CPUShares
}

// Update replaces the cgroup's limits with res, like docker update. Zero fields lift limits.
// A limit on a controller the host lacks is an error, not silently dropped.
func (c *Cgroup) Update(res Resources) error {
	return c.update(res, false)
}

// update applies res; fresh says the cgroup was just made, so that the
// kernel's defaults (no cpu, memory or pids limit) need not be written.
func (c *Cgroup) update(res Resources, fresh bool) error {
	if err := res.Validate(); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.path, err)
	}
	if c.layout.mode == ModeV2 {
		return c.updateV2(res, fresh)
	}
	return c.updateV1(res, fresh)
}

func (c *Cgroup) updateV1(res Resources, fresh bool) error {
	for _, need := range []struct {
		name   cgroup1.Name
		wanted bool
	}{
		{cgroup1.Memory, res.MemoryLimit > 0 || res.MemoryReservation > 0},
		{cgroup1.Cpu, res.cpuLimited()},
		{cgroup1.Pids, res.PidsLimit > 0},
		{cgroup1.Cpuset, res.CpusetCpus != "" || res.CpusetMems != ""},
	} {
		if _, ok := c.v1Dirs[need.name]; need.wanted && !ok {
			return fmt.Errorf("cgroup %s: a %s limit was requested but the host has no %s hierarchy: %w",
				c.path, need.name, need.name, errors.ErrUnsupported)
		}
	}
	if !c.v1ok {
		return fmt.Errorf("cgroup %s: no v1 directory exists: %w", c.path, fs.ErrNotExist)
	}
	// The files are written here rather than through cgroup1's Update,
	// which visits every controller and re-reads the ancestors' cpuset
	// files on each call.
	if dir, ok := c.v1Dirs[cgroup1.Cpu]; ok && (!fresh || res.cpuLimited()) {
		quota, period := res.cfs()
		for _, f := range []struct {
			name  string
			value int64
		}{
			{"cpu.shares", int64(res.cpuShares())},
			{"cpu.cfs_period_us", period},
			{"cpu.cfs_quota_us", quota},
		} {
			if err := writeFile(dir, f.name, strconv.FormatInt(f.value, 10)); err != nil {
				return fmt.Errorf("cgroup %s: %w", c.path, err)
			}
		}
	}
	if res.PidsLimit > 0 || !fresh { // a fresh cgroup has no limit to lift
		if err := c.SetPidsLimit(res.PidsLimit); err != nil {
			return fmt.Errorf("cgroup %s: %w", c.path, err)
		}
	}
	if res.RestrictDevices {
		dir, ok := c.v1Dirs[cgroup1.Devices]
		if !ok {
			return fmt.Errorf("cgroup %s: device restrictions need the devices hierarchy: %w", c.path, errors.ErrUnsupported)
		}
		// A v1 devices cgroup starts with a copy of its parent's policy:
		// when that is already docker's, as makeV1Dirs gives a parent it
		// makes, there is nothing to write (13 writes per container).
		if !fresh || len(res.Devices) > 0 || !hasDevicePolicy(dir) {
			if err := writeDevicePolicy(dir, res.Devices); err != nil {
				return fmt.Errorf("cgroup %s: %w", c.path, err)
			}
		}
	}
	if dir, ok := c.v1Dirs[cgroup1.Cpuset]; ok {
		for _, set := range []struct {
			f    cpusetFile
			list string
		}{{cpusetCPUs, res.CpusetCpus}, {cpusetMems, res.CpusetMems}} {
			if !fresh || set.list != "" {
				if err := setCpuset(dir, set.f, set.list); err != nil {
					return fmt.Errorf("cgroup %s: %w", c.path, err)
				}
			}
		}
	}
	if dir, ok := c.v1Dirs[cgroup1.Memory]; ok {
		if !fresh || res.MemoryLimit > 0 {
			limit, memsw := res.memory()
			if err := setV1Memory(dir, limit, memsw); err != nil {
				return fmt.Errorf("cgroup %s: %w", c.path, err)
			}
		}
		if !fresh || res.MemoryReservation > 0 {
			soft := int64(-1) // none
			if res.MemoryReservation > 0 {
				soft = res.MemoryReservation
			}
			if err := writeFile(dir, "memory.soft_limit_in_bytes", strconv.FormatInt(soft, 10)); err != nil {
				return fmt.Errorf("cgroup %s: %w", c.path, err)
			}
		}
	}
	return nil
}

// setV1Memory writes memory.limit_in_bytes and memory.memsw.limit_in_bytes (-1 meaning
// unlimited) in the order the kernel accepts: it refuses any moment where the memory limit
// exceeds the memory+swap limit. This is direct file code because cgroup1 writes memsw even
// where swap accounting is off (the file is then missing) and orders the two writes only when
// both values are positive, so lifting a limit with -1 fails.
func setV1Memory(dir string, limit, memsw int64) error {
	if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err != nil {
		return writeFile(dir, "memory.limit_in_bytes", strconv.FormatInt(limit, 10))
	}
	current, err := readInt(dir, "memory.limit_in_bytes")
	if err != nil {
		return err
	}
	files := []string{"memory.memsw.limit_in_bytes", "memory.limit_in_bytes"}
	values := []int64{memsw, limit}
	if memsw != -1 && memsw < current {
		// Lowering below the current memory limit: lower the memory limit first.
		files[0], files[1] = files[1], files[0]
		values[0], values[1] = values[1], values[0]
	}
	for i := range files {
		if err := writeFile(dir, files[i], strconv.FormatInt(values[i], 10)); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cgroup) updateV2(res Resources, fresh bool) error {
	if c.v2 == nil {
		return fmt.Errorf("cgroup %s: %s does not exist: %w", c.path, c.v2Dir, fs.ErrNotExist)
	}
	r2, err := c.v2Resources(res)
	if err != nil {
		return err
	}
	if fresh && res.MemoryReservation == 0 && r2.Memory != nil {
		r2.Memory.Low = nil // a fresh cgroup's memory.low is 0 already
	}
	if err := c.v2.Update(r2); err != nil {
		return fmt.Errorf("cgroup %s: updating limits: %w", c.path, err)
	}
	return nil
}

// v2Resources translates res for the controllers available in the unified tree, refusing a
// limit whose controller is missing.
func (c *Cgroup) v2Resources(res Resources) (*cgroup2.Resources, error) {
	raw, err := os.ReadFile(filepath.Join(c.layout.v2Mount, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", c.path, err)
	}
	available := make(map[string]bool)
	for _, name := range strings.Fields(string(raw)) {
		available[name] = true
	}
	// memory.swap.max is absent where the kernel does not account swap; the file in our own
	// directory says so once the memory controller is enabled there.
	_, err = os.Stat(filepath.Join(c.v2Dir, "memory.swap.max"))
	swap := err == nil
	return v2Resources(res, available, swap)
}

// v2Resources translates res into cgroup2 values. Unlimited memory is math.MaxInt64 because
// cgroup2.Memory holds numbers only; the kernel clamps any byte count above its maximum to
// "max", which is what reading memory.max then shows.
func v2Resources(res Resources, available map[string]bool, swap bool) (*cgroup2.Resources, error) {
	var r2 cgroup2.Resources
	if res.CpusetCpus != "" || res.CpusetMems != "" {
		return nil, fmt.Errorf("cpuset cpus or mems on a cgroup v2 host: %w", errors.ErrUnsupported)
	}
	wanted := map[string]bool{
		"memory": res.MemoryLimit > 0 || res.MemoryReservation > 0,
		"cpu":    res.cpuLimited(),
		"pids":   res.PidsLimit > 0,
	}
	for _, name := range []string{"memory", "cpu", "pids"} {
		if wanted[name] && !available[name] {
			return nil, fmt.Errorf("a %s limit was requested but the %s controller is not available: %w",
				name, name, errors.ErrUnsupported)
		}
	}
	if available["cpu"] {
		quota, period := res.cfs()
		var q *int64
		if quota > 0 {
			q = &quota
		}
		r2.CPU = &cgroup2.CPU{
			Weight: new(cgroup2.ConvertCPUSharesToCgroupV2Value(res.cpuShares())),
			Max:    cgroup2.NewCPUMax(q, new(uint64(period))),
		}
	}
	if available["memory"] {
		limit, memsw := res.memory()
		unlimited := func(v int64) int64 {
			if v == -1 {
				return math.MaxInt64
			}
			return v
		}
		// memory.low protects the reservation from reclaim: the nearest v2
		// has to a soft limit (runc maps docker's reservation to it too).
		r2.Memory = &cgroup2.Memory{Max: new(unlimited(limit)), Low: new(res.MemoryReservation)}
		if swap {
			// memory.swap.max counts swap alone, docker's value counts memory plus swap.
			swapOnly := int64(-1)
			if memsw != -1 {
				swapOnly = memsw - limit
			}
			r2.Memory.Swap = new(unlimited(swapOnly))
		}
	}
	if available["pids"] {
		limit := res.PidsLimit
		if limit <= 0 {
			limit = -1 // cgroup2.Pids writes "max" for negative values and nothing for 0.
		}
		r2.Pids = &cgroup2.Pids{Max: limit}
	}
	if res.RestrictDevices {
		r2.Devices = append(defaultDevices(), res.Devices...)
	}
	return &r2, nil
}
