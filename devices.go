package berth

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DeviceMapping is a host device given to a container (docker run
// --device; see WithDevices).
type DeviceMapping struct {
	// PathOnHost is the host's device node, or a directory of them.
	PathOnHost string
	// PathInContainer is where the node is made in the container's /dev
	// (for a directory, where its nodes go, by their paths below it).
	PathInContainer string
	// CgroupPermissions are what the container's cgroup lets it do with
	// the device: "rwm" (read, write, mknod) or part of it.
	CgroupPermissions string
}

// parseDevice reads docker's --device form,
// HOST[:CONTAINER][:PERMISSIONS], where the container path defaults to
// the host's and the permissions to "rwm"; with two parts, the second is
// the permissions when it reads as such.
func parseDevice(spec string) (DeviceMapping, error) {
	d := DeviceMapping{CgroupPermissions: "rwm"}
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 3:
		d.PathOnHost, d.PathInContainer, d.CgroupPermissions = parts[0], parts[1], parts[2]
		if !validDeviceMode(parts[2]) {
			return d, fmt.Errorf("%w: device %q: bad mode %q: want r, w and m, each at most once", ErrInvalid, spec, parts[2])
		}
	case 2:
		d.PathOnHost = parts[0]
		if validDeviceMode(parts[1]) {
			d.CgroupPermissions = parts[1]
		} else {
			d.PathInContainer = parts[1]
		}
	case 1:
		d.PathOnHost = parts[0]
	default:
		return d, fmt.Errorf("%w: invalid device specification %q: want HOST[:CONTAINER][:PERMISSIONS]", ErrInvalid, spec)
	}
	if d.PathInContainer == "" {
		d.PathInContainer = d.PathOnHost
	}
	for _, p := range []string{d.PathOnHost, d.PathInContainer} {
		if !path.IsAbs(p) {
			return d, fmt.Errorf("%w: device %q: %q is not an absolute path", ErrInvalid, spec, p)
		}
	}
	d.PathInContainer = path.Clean(d.PathInContainer)
	if err := checkDevicePath(d.PathInContainer); err != nil {
		return d, fmt.Errorf("%w: device %q: %v", ErrInvalid, spec, err)
	}
	return d, nil
}

// checkDevicePath refuses a container path berth cannot make a node at:
// outside /dev (berth makes device nodes only in the container's fresh
// /dev, never in its filesystem, where a commit would keep them), or at
// or below one of the directories, mounts and links /dev has already
// (/dev/pts, /dev/shm, /dev/fd, ...).
func checkDevicePath(p string) error {
	switch {
	case p == "/dev":
		return fmt.Errorf("/dev is the container's /dev itself: name a path in it")
	case !strings.HasPrefix(p, "/dev/"):
		return fmt.Errorf("%s is not under /dev: berth makes device nodes only in the container's /dev", p)
	case initproc.DevEntry(p):
		return fmt.Errorf("%s is in or at one of the container's own /dev directories, mounts or links", p)
	}
	return nil
}

// validDeviceMode reports whether mode is a non-empty set of r, w and m.
func validDeviceMode(mode string) bool {
	if mode == "" || len(mode) > 3 {
		return false
	}
	for i, c := range mode {
		if !strings.ContainsRune("rwm", c) || strings.ContainsRune(mode[i+1:], c) {
			return false
		}
	}
	return true
}

// deviceCgroupRule is docker's --device-cgroup-rule form: a type (a, b
// or c), major:minor numbers or *, and access.
var deviceCgroupRule = regexp.MustCompile(`^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$`)

// parseDeviceCgroupRule reads a rule such as "c 10:229 rw".
func parseDeviceCgroupRule(rule string) (specs.LinuxDeviceCgroup, error) {
	m := deviceCgroupRule.FindStringSubmatch(rule)
	if m == nil {
		return specs.LinuxDeviceCgroup{}, fmt.Errorf("%w: invalid device cgroup rule %q: want TYPE MAJOR:MINOR ACCESS, such as \"c 10:229 rwm\"", ErrInvalid, rule)
	}
	num := func(s string) (*int64, error) {
		if s == "*" {
			return nil, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n > 1<<32-1 {
			return nil, fmt.Errorf("%w: invalid device cgroup rule %q: device number %s out of range", ErrInvalid, rule, s)
		}
		return &n, nil
	}
	r := specs.LinuxDeviceCgroup{Allow: true, Type: m[1], Access: m[4]}
	var err error
	if r.Major, err = num(m[2]); err != nil {
		return r, err
	}
	r.Minor, err = num(m[3])
	return r, err
}

// containerDevices resolves the container's devices on the host, as it
// starts: the nodes to make in its /dev (every host device for a
// privileged container, then WithDevices'), and the cgroup rules letting
// it use them and those of WithDeviceCgroupRules (none for a privileged
// container, whose cgroup restricts no device). A host path that is a
// symlink is followed; a directory gives every device node below it, and
// must have one.
func containerDevices(cfg *containerConfig) ([]initproc.Device, []specs.LinuxDeviceCgroup, error) {
	var nodes []initproc.Device
	if cfg.Privileged {
		var err error
		if nodes, err = hostDevices(); err != nil {
			return nil, nil, err
		}
	}
	var rules []specs.LinuxDeviceCgroup
	for _, m := range cfg.Devices {
		found, err := devicesAt(m)
		if err != nil {
			return nil, nil, fmt.Errorf("error gathering device information while adding custom device %q: %w", m.PathOnHost, err)
		}
		for _, d := range found {
			kind := "c"
			if d.Type == unix.S_IFBLK {
				kind = "b"
			}
			major, minor := int64(d.Major), int64(d.Minor)
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: kind, Major: &major, Minor: &minor, Access: m.CgroupPermissions})
		}
		nodes = append(nodes, found...)
	}
	for _, rule := range cfg.DeviceCgroupRules {
		r, err := parseDeviceCgroupRule(rule)
		if err != nil {
			return nil, nil, err
		}
		rules = append(rules, r)
	}
	if cfg.Privileged {
		rules = nil
	}
	return nodes, rules, nil
}

// devicesAt lists the device nodes m gives: the one at its host path, or
// those below it when it is a directory, each with the container path
// it maps to.
func devicesAt(m DeviceMapping) ([]initproc.Device, error) {
	host, err := filepath.EvalSymlinks(m.PathOnHost)
	if err != nil {
		return nil, err
	}
	d, err := deviceNode(host)
	switch {
	case err != nil:
		return nil, err
	case d != nil:
		d.Path = m.PathInContainer
		return []initproc.Device{*d}, nil
	}
	var devs []initproc.Device
	err = filepath.WalkDir(host, func(name string, e fs.DirEntry, err error) error {
		switch {
		case name == host && err == nil && !e.IsDir():
			return fmt.Errorf("%s is not a device node", host)
		case err != nil && name != host:
			return nil // gone since the listing, or unreadable: skipped, as docker skips it
		case err != nil:
			return err
		case e.Type()&fs.ModeDevice == 0:
			return nil
		}
		d, err := deviceNode(name)
		if err != nil || d == nil {
			return nil // gone, or not a node of a kind a container takes
		}
		// Below PathInContainer, which checkDevicePath took: no entry
		// of the container's /dev is below another path in it.
		rel, _ := filepath.Rel(host, name)
		d.Path = path.Join(m.PathInContainer, filepath.ToSlash(rel))
		devs = append(devs, *d)
		return nil
	})
	if err == nil && len(devs) == 0 {
		err = fmt.Errorf("no device node in %s", host)
	}
	return devs, err
}

// deviceNode describes the character or block device node at name, or
// is nil for anything else.
func deviceNode(name string) (*initproc.Device, error) {
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	kind := st.Mode & unix.S_IFMT
	if kind != unix.S_IFCHR && kind != unix.S_IFBLK {
		return nil, nil
	}
	return &initproc.Device{
		Path: name, Type: kind,
		Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev),
		Mode: st.Mode &^ unix.S_IFMT, UID: st.Uid, GID: st.Gid,
	}, nil
}

// hostDevices lists the device nodes of the host's /dev for a privileged
// container, as runc lists them for docker: character and block devices,
// with their owners and modes, but none below /dev/pts, /dev/shm,
// /dev/mqueue, /dev/fd, /dev/.lxc, /dev/.lxd-mounts or /dev/.udev, none
// named console (the container gets its own), and no symlink. A
// directory that goes away meanwhile (a device unplugged) is skipped.
func hostDevices() ([]initproc.Device, error) {
	var devs []initproc.Device
	err := filepath.WalkDir("/dev", func(name string, e fs.DirEntry, err error) error {
		switch {
		case err != nil && name != "/dev" && errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case e.IsDir():
			switch e.Name() {
			case "pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev":
				return fs.SkipDir
			}
			return nil
		case e.Type()&fs.ModeDevice == 0 || e.Name() == "console":
			return nil
		}
		if d, err := deviceNode(name); err == nil && d != nil { // else gone since the listing
			devs = append(devs, *d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the host's devices: %w", err)
	}
	return devs, nil
}
