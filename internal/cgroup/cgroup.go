// Package cgroup places container processes in control groups and limits them, on cgroup v1,
// hybrid and unified (v2) hosts, behind one concrete type.
//
// A cgroup is named by a path such as "/berth/<id>", relative to the root of every hierarchy
// (not to the caller's own cgroup), so that any program opening the same berth root finds it.
// Which hierarchies a path lives in depends on the host:
//
//   - v1: one directory per mounted v1 hierarchy (cpu, cpuacct, cpuset, memory, devices,
//     freezer, blkio, pids, name=systemd, ...).
//   - hybrid: the same v1 directories plus one in the cgroup2 tree at /sys/fs/cgroup/unified.
//     That tree usually has no controllers, but processes must be placed there too, as runc and
//     systemd do, so that the container's /proc/self/cgroup and its cgroup namespace are
//     consistent and so that cgroup.kill can reach the whole container.
//   - v2: one directory in the unified tree at /sys/fs/cgroup, with the cpu, memory and pids
//     controllers enabled.
//
// containerd/cgroups v3 does the parts it does well: detecting the host mode, creating the v1
// directories (including the cpuset parents that must be filled before a task can join),
// applying cpu and pids limits, moving processes, reading statistics, and creating, enabling
// and updating v2 cgroups. The rest is small direct file code, each for a stated reason:
// memory limits on v1 (the library writes memory.memsw.limit_in_bytes unconditionally and
// orders it against memory.limit_in_bytes only when both are positive), lifting a pids limit
// on v1 (the library never writes "max"), the freezer (the library spins forever with no
// context), Kill, Delete and List (the library's versions log, wait on processes it does not
// own, are not idempotent and cannot remove nested cgroups).
//
// Every function needs root, or at least write access to the cgroup filesystems. The methods
// of a Cgroup may be called from several goroutines, but two concurrent Updates interleave
// their file writes, so callers serialise those.
package cgroup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// ErrPopulated is returned (wrapped) by Delete when processes are still in the cgroup.
var ErrPopulated = errors.New("cgroup still has processes")

// Host modes, as returned by Mode.
const (
	ModeV1     = "v1"
	ModeHybrid = "hybrid"
	ModeV2     = "v2"
)

// Mode reports how cgroups are mounted on this host: ModeV1 ("v1"), ModeHybrid ("hybrid": v1
// controllers plus a cgroup2 tree at /sys/fs/cgroup/unified) or ModeV2 ("v2": only the unified
// tree at /sys/fs/cgroup). It returns "" when no cgroup filesystem is mounted at /sys/fs/cgroup.
func Mode() string {
	l, err := hostLayout()
	if err != nil {
		return ""
	}
	return l.mode
}

// layout says which hierarchies a cgroup path lives in. It is a value so that tests can run
// the v2 code paths against the controller-less cgroup2 tree of a hybrid host.
type layout struct {
	mode    string
	v1      cgroup1.Hierarchy // nil on v2 hosts
	v2Mount string            // "" on v1 hosts
}

// defaultHierarchy is cgroup1.Default computed once per process: it parses
// /proc/self/mountinfo and /proc/self/cgroup, which cost about a millisecond
// on every cgroup created or loaded, and the host's cgroup mounts do not
// change under a running program.
var defaultHierarchy = sync.OnceValues(cgroup1.Default)

func cachedDefault() ([]cgroup1.Subsystem, error) { return defaultHierarchy() }

func hostLayout() (layout, error) {
	switch cgroups.Mode() {
	case cgroups.Legacy:
		return layout{mode: ModeV1, v1: cachedDefault}, nil
	case cgroups.Hybrid:
		return layout{mode: ModeHybrid, v1: cachedDefault, v2Mount: "/sys/fs/cgroup/unified"}, nil
	case cgroups.Unified:
		return layout{mode: ModeV2, v2Mount: "/sys/fs/cgroup"}, nil
	}
	return layout{}, fmt.Errorf("no cgroup filesystem mounted at /sys/fs/cgroup: %w", errors.ErrUnsupported)
}

// v1Roots returns the root directory of every mounted v1 hierarchy, keyed by controller name.
// Co-mounted controllers (cpu,cpuacct) appear under each name with their own path.
func (l layout) v1Roots() (map[cgroup1.Name]string, error) {
	if l.v1 == nil {
		return nil, nil
	}
	subsystems, err := l.v1()
	if err != nil {
		return nil, fmt.Errorf("listing cgroup v1 hierarchies: %w", err)
	}
	roots := make(map[cgroup1.Name]string, len(subsystems))
	for _, s := range subsystems {
		if p, ok := s.(interface{ Path(string) string }); ok {
			roots[s.Name()] = p.Path("/")
		}
	}
	return roots, nil
}

// roots returns every hierarchy root directory of the layout, v1 ones first, without
// duplicates.
func (l layout) roots() ([]string, error) {
	v1, err := l.v1Roots()
	if err != nil {
		return nil, err
	}
	var roots []string
	for _, r := range v1 {
		roots = append(roots, r)
	}
	slices.Sort(roots)
	roots = slices.Compact(roots)
	if l.v2Mount != "" {
		roots = append(roots, l.v2Mount)
	}
	return roots, nil
}

// Cgroup is one cgroup path in every hierarchy of the host. It is created by New or Load.
type Cgroup struct {
	path   string
	layout layout

	v1     cgroup1.Cgroup // loaded on first use by v1Cgroup (statistics)
	v1ok   bool           // the v1 directories exist
	v1Once sync.Once
	v1Err  error
	v1Dirs map[cgroup1.Name]string // absolute directory per v1 controller
	// v1Roots is each v1 hierarchy's root directory, which v1Dirs are
	// paths in: below it at path, but a devices directory moved to the
	// open devices parent (openDevices).
	v1Roots map[cgroup1.Name]string
	v2      *cgroup2.Manager // the unified tree (all of it on v2, controller-less on hybrid)
	v2Dir   string
	dirs    []string // every directory, existing or not: what Delete removes
	// noDevices: the host has a v1 devices hierarchy and the cgroup no
	// directory in it (AllDevices).
	noDevices bool
	// openDevices is the open devices parent of a cgroup whose v1 devices
	// directory is there (moveDevices), "" for any other.
	openDevices string
}

// New creates the cgroup at path (for example "/berth/<id>", relative to the root of each
// hierarchy) in every hierarchy of the host and applies res. If the cgroup exists already, New
// applies res to it and returns it. If creating a new cgroup fails, New removes what it
// created. The caller owns the result and must call Delete when the last process has gone.
func New(path string, res Resources) (*Cgroup, error) {
	l, err := hostLayout()
	if err != nil {
		return nil, err
	}
	return l.create(path, res)
}

// Load returns the existing cgroup at path. If it exists in no hierarchy, the error wraps
// fs.ErrNotExist. A cgroup left half-created by a crashed program loads as long as one of its
// directories exists, so that it can be deleted.
func Load(path string) (*Cgroup, error) {
	l, err := hostLayout()
	if err != nil {
		return nil, err
	}
	return l.load(path)
}

// List returns the paths of the cgroups directly under parent (for example "/berth") in any
// hierarchy, sorted. It is meant for sweeping the cgroups of crashed programs: a path is listed
// even if it exists in only some hierarchies. A parent that does not exist has no children.
func List(parent string) ([]string, error) {
	l, err := hostLayout()
	if err != nil {
		return nil, err
	}
	return l.list(parent)
}

func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("cgroup path %q: must be absolute, clean and not the root", p)
	}
	return nil
}

func (l layout) newCgroup(p string) (*Cgroup, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	roots, err := l.v1Roots()
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", p, err)
	}
	c := &Cgroup{path: p, layout: l, v1Dirs: make(map[cgroup1.Name]string, len(roots)), v1Roots: roots}
	for name, root := range roots {
		dir := filepath.Join(root, p)
		c.v1Dirs[name] = dir
		c.dirs = append(c.dirs, dir)
	}
	slices.Sort(c.dirs)
	c.dirs = slices.Compact(c.dirs)
	if l.v2Mount != "" {
		c.v2Dir = filepath.Join(l.v2Mount, p)
		c.dirs = append(c.dirs, c.v2Dir)
	}
	return c, nil
}

// dropV1 leaves the v1 hierarchy of controller name out of the cgroup,
// which has no directory there, and reports whether the host has it.
func (c *Cgroup) dropV1(name cgroup1.Name) bool {
	dir, ok := c.v1Dirs[name]
	if !ok {
		return false
	}
	delete(c.v1Dirs, name)
	for _, other := range c.v1Dirs {
		if other == dir {
			return true // a hierarchy mounted with another controller, which stays
		}
	}
	c.dirs = slices.DeleteFunc(c.dirs, func(d string) bool { return d == dir })
	return true
}

// openDevicesParent is the cgroup path beside parent under which a
// cgroup in parent with devices of its own (Resources.Devices) has its v1
// devices directory: "/berth/<root>" holds docker's device policy for its
// children (makeDevicesParent), and a child can allow no device its
// parent does not, so such a cgroup's devices directory is made in
// "/berth/<root>.devices", which allows every device as the hierarchy's
// root does, and gets the whole policy written (updateV1).
func openDevicesParent(parent string) string { return parent + ".devices" }

// movedDevicesDir is where the cgroup's v1 devices directory is when it
// has devices of its own, and the open parent it is in; "" without a v1
// devices hierarchy.
func (c *Cgroup) movedDevicesDir() (dir, open string) {
	root, ok := c.v1Roots[cgroup1.Devices]
	if !ok {
		return "", ""
	}
	open = filepath.Join(root, openDevicesParent(path.Dir(c.path)))
	return filepath.Join(open, path.Base(c.path)), open
}

// moveDevices puts the cgroup's v1 devices directory into the open
// devices parent (movedDevicesDir), with any controller mounted with
// devices, but for cpuset, whose directories makeV1Dirs fills along the
// cgroup's path.
func (c *Cgroup) moveDevices() error {
	dir, ok := c.v1Dirs[cgroup1.Devices]
	if !ok {
		return nil
	}
	if c.v1Dirs[cgroup1.Cpuset] == dir {
		return fmt.Errorf("cgroup %s: devices of its own with devices and cpuset in one hierarchy: %w", c.path, errors.ErrUnsupported)
	}
	moved, open := c.movedDevicesDir()
	for name, d := range c.v1Dirs {
		if d == dir {
			c.v1Dirs[name] = moved
		}
	}
	c.dirs[slices.Index(c.dirs, dir)] = moved
	c.openDevices = open
	return nil
}

// NoDevicesDir reports whether the cgroup has no directory in the host's
// v1 devices hierarchy: it was made with AllDevices (or lost it since),
// and a process joining it keeps the devices cgroup it is in.
func (c *Cgroup) NoDevicesDir() bool { return c.noDevices }

func (c *Cgroup) exists() bool {
	for _, d := range c.dirs {
		if _, err := os.Stat(d); err == nil {
			return true
		}
	}
	return false
}

func (l layout) create(p string, res Resources) (_ *Cgroup, retErr error) {
	c, err := l.newCgroup(p)
	if err != nil {
		return nil, err
	}
	if err := res.Validate(); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", p, err)
	}
	if len(res.Devices) > 0 {
		if err := c.moveDevices(); err != nil {
			return nil, err
		}
	}
	// Creating is idempotent (it only makes missing directories), which also completes a
	// cgroup a crashed program left half-made. Only what this call created is rolled back.
	fresh := !c.exists()
	if fresh {
		defer func() {
			if retErr != nil {
				_ = c.Delete()
			}
		}()
	}
	// Another program on the same root removes the parent (/berth/<root>)
	// whenever it finds it empty (RemoveIfEmpty, at its Close), which can
	// fall between making the parent and making p in it: that shows as a
	// missing directory (or ENODEV from a file of it opened just before),
	// and making them again is the remedy. Once p exists the parent stays,
	// so a few tries are plenty; a missing directory for another reason
	// (a controller the host lacks) fails after as few.
	const tries = 10
	gone := func(err error) bool { return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) }
	if l.v1 != nil {
		if res.AllDevices {
			c.noDevices = c.dropV1(cgroup1.Devices)
		}
		err := c.makeV1Dirs(res.RestrictDevices)
		for try := 1; try < tries && gone(err); try++ {
			err = c.makeV1Dirs(res.RestrictDevices)
		}
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: creating v1 directories: %w", p, err)
		}
		c.v1ok = true
	}
	if l.v2Mount != "" {
		r2 := &cgroup2.Resources{}
		if l.mode == ModeV2 {
			// Enabling the controllers happens here, in every ancestor's
			// cgroup.subtree_control; the values follow in Update.
			r2, err = c.v2Resources(Resources{})
			if err != nil {
				return nil, err
			}
		}
		m, err := cgroup2.NewManager(l.v2Mount, p, r2)
		for try := 1; try < tries && gone(err); try++ {
			m, err = cgroup2.NewManager(l.v2Mount, p, r2)
		}
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: creating %s: %w", p, c.v2Dir, err)
		}
		c.v2 = m
	}
	if err := c.update(res, fresh); err != nil {
		return nil, err
	}
	return c, nil
}

// makeV1Dirs makes the cgroup's directory in every v1 hierarchy, parents
// first. cgroup1.New does the same but re-reads and rewrites the cpuset
// files of every ancestor on each call (32 file opens per container on the
// machine this was measured on); a cpuset directory needs its cpus and
// mems filled from its parent when it is new or still empty (another
// program or goroutine made it and has not filled it yet), before a task
// can join.
//
// With restrictDevices, a devices directory this call makes for the
// parent gets docker's device policy, for its children to inherit (see
// restrictDevices).
func (c *Cgroup) makeV1Dirs(restrictDevices bool) error {
	for name, dir := range c.v1Dirs {
		if name != cgroup1.Cpuset {
			// Mkdir first: the parent (/berth/<root>) exists but for the
			// first container, and MkdirAll would stat every level.
			err := os.Mkdir(dir, 0o755)
			if errors.Is(err, fs.ErrNotExist) {
				parent := filepath.Dir(dir)
				if err := os.MkdirAll(filepath.Dir(parent), 0o755); err != nil {
					return err
				}
				if name == cgroup1.Devices && restrictDevices && c.openDevices == "" {
					if err := makeDevicesParent(parent); err != nil {
						return err
					}
				} else if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
				err = os.Mkdir(dir, 0o755)
			}
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			continue
		}
		cur := c.v1Roots[name]
		for _, part := range strings.Split(strings.TrimPrefix(c.path, "/"), "/") {
			parent := cur
			cur = filepath.Join(cur, part)
			if err := os.Mkdir(cur, 0o755); errors.Is(err, fs.ErrExist) {
				// Made by another program or goroutine, which may not have
				// filled it yet: a task cannot join an empty cpuset.
				if cpusetFilled(cur) {
					continue
				}
			} else if err != nil {
				return err
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := readString(parent, f)
				if err != nil {
					return err
				}
				if err := writeFile(cur, f, v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// makeDevicesParent makes the v1 devices directory parent holding
// docker's device policy, for the children made in it to inherit, unless
// it exists. It writes the policy into a new sibling of a temporary name
// and renames that into place, so that parent never shows without its
// whole policy: a child made meanwhile would copy a partial one, and a
// deny written to a directory with children fails (EINVAL). Losing a race
// to another program making parent is success.
func makeDevicesParent(parent string) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(parent), "."+filepath.Base(parent)+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	err := writeDevicePolicy(tmp, nil)
	if err == nil {
		err = os.Rename(tmp, parent)
	}
	if err != nil {
		unix.Rmdir(tmp)
		if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
			return nil // made by another program meanwhile
		}
		return fmt.Errorf("making %s with docker's device policy: %w", parent, err)
	}
	return nil
}

// staleTempAge is how old a temporary devices parent (makeDevicesParent)
// must be before SweepTemporary removes it: older than any making of one
// still under way.
var staleTempAge = 10 * time.Second

// hostV1Root is the root directory of the host's v1 hierarchy of
// controller name; ok is false when the host has none.
func hostV1Root(name cgroup1.Name) (root string, ok bool, err error) {
	l, err := hostLayout()
	if err != nil {
		return "", false, err
	}
	roots, err := l.v1Roots()
	if err != nil {
		return "", false, err
	}
	root, ok = roots[name]
	return root, ok, nil
}

// SweepTemporary removes what a program killed in makeDevicesParent left
// for parent (a cgroup path such as /berth/<root tag>): empty devices
// directories of a temporary name beside it, once they are old enough
// that no program is still filling them.
func SweepTemporary(parent string) {
	if err := checkPath(parent); err != nil {
		return
	}
	root, ok, err := hostV1Root(cgroup1.Devices)
	if err != nil || !ok {
		return
	}
	dir := filepath.Join(root, path.Dir(parent))
	prefix := "." + path.Base(parent) + "-"
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		var st unix.Stat_t
		p := filepath.Join(dir, e.Name())
		if unix.Stat(p, &st) == nil && time.Since(time.Unix(st.Ctim.Unix())) > staleTempAge {
			unix.Rmdir(p) // fails, harmlessly, if anything is in it
		}
	}
}

// cpusetFilled reports whether the cpuset directory dir has cpus and mems.
func cpusetFilled(dir string) bool {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if v, err := readString(dir, f); err != nil || strings.TrimSpace(v) == "" {
			return false
		}
	}
	return true
}

func (l layout) load(p string) (*Cgroup, error) {
	c, err := l.newCgroup(p)
	if err != nil {
		return nil, err
	}
	// The v1 side is loaded through cgroup1 only when statistics need it
	// (v1Cgroup): Exec loads the container's cgroup every time. With no v1
	// directory left, only the v2 one of a hybrid cgroup is, and it stays
	// deletable.
	// The devices directory first: the common cgroup has it, and one stat
	// decides; a cgroup made with AllDevices has the others only.
	devGone := false
	if dir, ok := c.v1Dirs[cgroup1.Devices]; ok {
		_, err := os.Stat(dir)
		c.v1ok, devGone = err == nil, errors.Is(err, fs.ErrNotExist)
		// Made with devices of its own, in the open devices parent?
		if devGone {
			moved, _ := c.movedDevicesDir()
			if _, err := os.Stat(moved); err == nil && c.moveDevices() == nil {
				c.v1ok, devGone = true, false
			}
		}
	}
	if !c.v1ok {
		for name, dir := range c.v1Dirs {
			if name == cgroup1.Devices {
				continue
			}
			if _, err := os.Stat(dir); err == nil {
				c.v1ok = true
				break
			}
		}
		if c.v1ok && devGone {
			c.noDevices = c.dropV1(cgroup1.Devices)
		}
	}
	hasV2 := false
	if l.v2Mount != "" {
		_, err := os.Stat(c.v2Dir)
		hasV2 = err == nil
	}
	if !c.v1ok && !hasV2 {
		return nil, fmt.Errorf("cgroup %s: %w", p, fs.ErrNotExist)
	}
	if hasV2 {
		m, err := cgroup2.Load(p, cgroup2.WithMountpoint(l.v2Mount))
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: loading %s: %w", p, c.v2Dir, err)
		}
		c.v2 = m
	}
	return c, nil
}

func (l layout) list(parent string) ([]string, error) {
	if parent != "/" {
		if err := checkPath(parent); err != nil {
			return nil, err
		}
	}
	roots, err := l.roots()
	if err != nil {
		return nil, err
	}
	// A cgroup with devices of its own has its devices directory under
	// the open devices parent, and may have only that one left.
	dirs := make([]string, 0, len(roots)+1)
	for _, root := range roots {
		dirs = append(dirs, filepath.Join(root, parent))
	}
	if v1, _ := l.v1Roots(); v1[cgroup1.Devices] != "" && parent != "/" {
		dirs = append(dirs, filepath.Join(v1[cgroup1.Devices], openDevicesParent(parent)))
	}
	var children []string
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing cgroups under %s: %w", parent, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				children = append(children, path.Join(parent, e.Name()))
			}
		}
	}
	slices.Sort(children)
	return slices.Compact(children), nil
}

// Path returns the cgroup's path relative to each hierarchy root, as given to New or Load.
func (c *Cgroup) Path() string { return c.path }

// Add moves the process pid into the cgroup in every hierarchy: each v1 hierarchy including
// name=systemd, and the cgroup2 tree on hybrid and v2 hosts. Its threads move with it, and
// children it forks afterwards start inside. To keep user code from escaping the limits, add
// a process before it runs any (start it blocked, Add, then release it). If Add fails, the
// process may be in some hierarchies and not others; the caller should kill it.
func (c *Cgroup) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroup %s: adding pid %d: invalid pid", c.path, pid)
	}
	if c.v1ok {
		for _, dir := range c.dirs { // each v1 directory once, then the v2 one
			if dir == c.v2Dir {
				continue
			}
			if err := writeFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("cgroup %s: adding pid %d: %w", c.path, pid, err)
			}
		}
	}
	if c.v2 != nil {
		if err := c.v2.AddProc(uint64(pid)); err != nil {
			return fmt.Errorf("cgroup %s: adding pid %d: %w", c.path, pid, err)
		}
	}
	return nil
}

// v1Cgroup returns containerd's view of the v1 directories (for
// statistics), loading it on first use: loading reads every ancestor's
// cpuset files, which a container start need not pay for.
func (c *Cgroup) v1Cgroup() (cgroup1.Cgroup, error) {
	c.v1Once.Do(func() {
		if c.v1 == nil && c.v1ok {
			c.v1, c.v1Err = cgroup1.Load(cgroup1.StaticPath(c.path), cgroup1.WithHierarchy(c.layout.v1))
		}
	})
	if c.v1Err != nil {
		return nil, c.v1Err
	}
	if c.v1 == nil {
		return nil, fmt.Errorf("cgroup %s: no v1 directory exists: %w", c.path, fs.ErrNotExist)
	}
	return c.v1, nil
}

// RemoveIfEmpty removes the directory of path in every hierarchy when it has no child cgroup
// and no process. It is for parents such as "/berth/<root>" that hold the cgroups of one
// root's containers: removing them when the last container is gone keeps the hierarchies
// tidy, and a parent still in use by another program stays. A container's cgroup is in every
// hierarchy (but a v1 devices one, made with AllDevices, whose parent may then go while the
// others stay; it is made again with its policy when needed), so the first rmdir refused as
// busy ends it: a parent in use costs one system
// call, not one per hierarchy (ten on a hybrid host, 0.1-0.2 ms of a CLI command).
func RemoveIfEmpty(p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	l, err := hostLayout()
	if err != nil {
		return err
	}
	roots, err := l.roots()
	if err != nil {
		return err
	}
	for _, r := range roots {
		// rmdir refuses a cgroup with children (EBUSY) or tasks: exactly the cases to keep.
		if err := unix.Rmdir(filepath.Join(r, p)); err == unix.EBUSY || err == unix.ENOTEMPTY {
			return nil
		}
	}
	// Gone, so no cgroup is in p's open devices parent either (each has
	// its other directories in p) but what a program killed making one
	// left; Delete removes it with its last cgroup otherwise.
	if v1, _ := l.v1Roots(); v1[cgroup1.Devices] != "" {
		unix.Rmdir(filepath.Join(v1[cgroup1.Devices], openDevicesParent(p)))
	}
	return nil
}
