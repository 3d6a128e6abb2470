package initproc

import (
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOptions are the mount(8) words that map to flags. clear means the word
// removes the flag ("rw", "suid", ...).
var mountOptions = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"noatime": {false, unix.MS_NOATIME}, "atime": {true, unix.MS_NOATIME},
	"nodiratime": {false, unix.MS_NODIRATIME}, "diratime": {true, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"bind":        {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"defaults": {false, 0},
}

var propagationOptions = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func parseMountOptions(m Mount) (flags, propagation uintptr, data string) {
	flags = m.Flags
	var extra []string
	for _, o := range m.Options {
		if f, ok := mountOptions[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
		} else if p, ok := propagationOptions[o]; ok {
			propagation |= p
		} else {
			extra = append(extra, o)
		}
	}
	if m.Data != "" {
		extra = append(extra, m.Data)
	}
	if m.Type == "bind" {
		flags |= unix.MS_BIND
	}
	return flags, propagation, strings.Join(extra, ",")
}

// attrFlags are the mount(2) flags that have a mount_setattr(2) twin.
var attrFlags = []struct {
	flag uintptr
	attr uint64
}{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY}, {unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV}, {unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
}

// mountAttr converts mount(2) flags to mount_setattr(2) attributes.
func mountAttr(flags uintptr) *unix.MountAttr {
	a := &unix.MountAttr{}
	for _, f := range attrFlags {
		if flags&f.flag != 0 {
			a.Attr_set |= f.attr
		}
	}
	switch {
	case flags&unix.MS_NOATIME != 0:
		a.Attr_set |= unix.MOUNT_ATTR_NOATIME
		a.Attr_clr |= unix.MOUNT_ATTR__ATIME
	case flags&unix.MS_STRICTATIME != 0:
		a.Attr_set |= unix.MOUNT_ATTR_STRICTATIME
		a.Attr_clr |= unix.MOUNT_ATTR__ATIME
	}
	return a
}

// mountUser applies one Spec.Mounts entry with the new mount API, so that no
// step after resolving the destination looks a path up again:
//
//   - the destination, and every directory on the way to it, is resolved (and
//     created where missing) inside root with openat2 RESOLVE_IN_ROOT, giving
//     an O_PATH fd; a symlink the image or another container planted, or
//     swaps in while this runs, resolves inside root or makes openat2 retry
//     (CVE-2021-30465);
//   - the new mount is built detached: open_tree(OPEN_TREE_CLONE) of the
//     trusted host source for binds, fsopen/fsconfig/fsmount for a new
//     filesystem; read-only and the other attributes are set on the detached
//     tree with mount_setattr(AT_RECURSIVE), so a read-only bind is read-only
//     in every submount and there is no remount of a path that could have
//     been swapped in between;
//   - move_mount attaches the tree on the destination fd, and propagation is
//     set through the mount's own fd afterwards.
//
// For a bind, the destination is made a directory, or a file when a file is
// bound. A Seed mount first gets the image's content at its destination
// (see seedVolume).
func mountUser(root int, m Mount) error {
	if !path.IsAbs(m.Destination) {
		return &SetupError{Step: "mount", Path: m.Destination, Msg: "destination must be an absolute path"}
	}
	procFile := procFileBind(m)
	if inProc(m.Destination) && !procFile {
		return errProcMount(m.Destination)
	}
	flags, propagation, data := parseMountOptions(m)
	bind := flags&unix.MS_BIND != 0
	isDir := true
	var mnt int
	var err error
	if bind {
		treeFlags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
		if flags&unix.MS_REC != 0 {
			treeFlags |= unix.AT_RECURSIVE
		}
		if mnt, err = unix.OpenTree(unix.AT_FDCWD, m.Source, treeFlags); err != nil {
			return stepError("open bind source", m.Source, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(mnt, &st); err != nil {
			unix.Close(mnt)
			return stepError("stat bind source", m.Source, err)
		}
		isDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		if attr := mountAttr(flags); attr.Attr_set|attr.Attr_clr != 0 {
			if err := unix.MountSetattr(mnt, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
				unix.Close(mnt)
				return stepError("set bind attributes", m.Destination, err)
			}
		}
	} else if mnt, err = newFilesystem(m.Type, m.Source, flags, data); err != nil {
		return stepError("mount "+m.Type, m.Destination, err)
	}
	defer unix.Close(mnt)

	if m.Seed {
		if err := seedVolume(root, m); err != nil {
			return err
		}
	}
	var target int
	if isDir {
		target, err = mkdirIn(root, m.Destination, 0)
	} else {
		target, err = mkfileIn(root, m.Destination)
	}
	if err != nil {
		return stepError("create mount target", m.Destination, err)
	}
	// Reached through a symlink of the image, where the child stage has
	// mounted procfs already.
	var fs unix.Statfs_t
	if !procFile && unix.Fstatfs(target, &fs) == nil && fs.Type == unix.PROC_SUPER_MAGIC {
		unix.Close(target)
		return errProcMount(m.Destination)
	}
	err = unix.MoveMount(mnt, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	unix.Close(target)
	if err != nil {
		return stepError("mount "+m.Type, m.Destination, err)
	}
	if propagation != 0 {
		attr := &unix.MountAttr{Propagation: uint64(propagation &^ unix.MS_REC)}
		at := uint(unix.AT_EMPTY_PATH)
		if propagation&unix.MS_REC != 0 {
			at |= unix.AT_RECURSIVE
		}
		if err := unix.MountSetattr(mnt, "", at, attr); err != nil {
			return stepError("set propagation", m.Destination, err)
		}
	}
	return nil
}

// inProc reports whether a mount destination is /proc or under it. As
// runc does, berth mounts nothing there but procFileBinds: the container's
// procfs is what Exec finds its helper through (/proc/self/fd), and an
// image VOLUME there would be seeded from the live procfs.
func inProc(dest string) bool {
	d := path.Clean(dest)
	return d == "/proc" || strings.HasPrefix(d, "/proc/")
}

// procFiles are the files of /proc a bind may cover, runc's list: what
// lxcfs serves so that free and top see the container's limits.
var procFiles = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true,
	"/proc/swaps": true, "/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true,
	"/proc/sys/kernel/ns_last_pid": true, "/proc/sys/crypto/fips_enabled": true,
}

// procFileBind reports a bind onto one of procFiles. (Whether its source
// is a file is the mount's to find: a directory there fails to mount.)
func procFileBind(m Mount) bool {
	return procFiles[path.Clean(m.Destination)] && m.Type == "bind"
}

func errProcMount(dest string) error {
	return &SetupError{Step: "mount", Path: dest, Msg: "cannot mount on /proc or inside it"}
}

// MountUser applies m inside the tree whose root is the O_PATH fd root,
// as a container's start does (mountUser): a stopped container's volumes
// and binds, mounted for a copy the way docker cp sees them. Seeding is
// the caller's to ask for, or not.
func MountUser(root int, m Mount) error { return mountUser(root, m) }

// newFilesystem makes a detached mount of a new filesystem of type fstype
// (fsopen, fsconfig, fsmount). data holds comma-separated key[=value]
// options, as mount(8) takes them.
func newFilesystem(fstype, source string, flags uintptr, data string) (int, error) {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	if source != "" {
		if err := unix.FsconfigSetString(fs, "source", source); err != nil {
			return -1, err
		}
	}
	for _, o := range strings.Split(data, ",") {
		if o == "" {
			continue
		}
		if k, v, ok := strings.Cut(o, "="); ok {
			err = unix.FsconfigSetString(fs, k, v)
		} else {
			err = unix.FsconfigSetFlag(fs, k)
		}
		if err != nil {
			return -1, fmt.Errorf("option %q: %w", o, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, int(mountAttr(flags).Attr_set))
}
