package cgroup

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// Hierarchy is one cgroup filesystem as a container sees it under
// /sys/fs/cgroup.
type Hierarchy struct {
	// Dir is its directory under /sys/fs/cgroup ("memory",
	// "cpu,cpuacct"), or "" for the cgroup2 tree of a v2 host, which is
	// mounted at /sys/fs/cgroup itself.
	Dir string
	// Options are the mount options naming a v1 hierarchy: its
	// controllers ("cpu,cpuacct"), or "none,name=systemd".
	Options string
	// Links are the names of symlinks to Dir beside it: each controller
	// of a co-mounted hierarchy ("cpu" and "cpuacct" for "cpu,cpuacct").
	Links []string
}

// Hierarchies is what a container's /sys/fs/cgroup holds on this host,
// as docker makes it: on v1 and hybrid hosts each v1 hierarchy (not a
// hybrid host's unified tree, which docker's cgroup v1 mode leaves out
// too), on v2 hosts the cgroup2 tree. It is read once per process.
func Hierarchies() ([]Hierarchy, error) { return hostHierarchies() }

var hostHierarchies = sync.OnceValues(func() ([]Hierarchy, error) {
	l, err := hostLayout()
	if err != nil {
		return nil, err
	}
	if l.mode == ModeV2 {
		return []Hierarchy{{}}, nil
	}
	roots, err := l.v1Roots()
	if err != nil {
		return nil, err
	}
	return v1Hierarchies(roots, func(p string) string {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return real
		}
		return p
	}), nil
})

// v1Hierarchies groups the v1 roots of each controller by the directory
// they resolve to (a host mounting cpu and cpuacct together names both
// /sys/fs/cgroup/cpu and /sys/fs/cgroup/cpuacct, links to
// cpu,cpuacct): one Hierarchy per mount, whose options name all of its
// controllers, with a link for each controller named otherwise.
func v1Hierarchies(roots map[cgroup1.Name]string, resolve func(string) string) []Hierarchy {
	byDir := map[string][]string{}
	for name, root := range roots {
		dir := filepath.Base(resolve(root))
		byDir[dir] = append(byDir[dir], string(name))
	}
	var hs []Hierarchy
	for dir, names := range byDir {
		slices.Sort(names)
		h := Hierarchy{Dir: dir, Options: strings.Join(names, ",")}
		if len(names) == 1 && names[0] == string(cgroup1.SystemdDbus) {
			h.Options = "none,name=systemd" // the named hierarchy, no controller
		}
		for _, n := range names {
			if n != dir && n != string(cgroup1.SystemdDbus) {
				h.Links = append(h.Links, n)
			}
		}
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b Hierarchy) int { return strings.Compare(a.Dir, b.Dir) })
	return hs
}
