package initproc

import (
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

// mountUser applies one Spec.Mounts entry. Binds open the (trusted) host
// source first and mount from its fd; the destination is made inside root
// as a directory, or as a file when a file is bound.
func mountUser(root int, m Mount) error {
	if !path.IsAbs(m.Destination) {
		return &SetupError{Step: "mount", Path: m.Destination, Msg: "destination must be an absolute path"}
	}
	flags, propagation, data := parseMountOptions(m)
	step := "mount " + m.Type
	src := m.Source
	isDir := true
	if flags&unix.MS_BIND != 0 {
		fd, err := unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return stepError("open bind source", m.Source, err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return stepError("stat bind source", m.Source, err)
		}
		isDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		src = fdPath(fd)
		step = "bind"
	}
	var target int
	var err error
	if isDir {
		target, err = mkdirIn(root, m.Destination, 0)
	} else {
		target, err = mkfileIn(root, m.Destination)
	}
	if err != nil {
		return stepError("create mount target", m.Destination, err)
	}
	defer unix.Close(target)

	if flags&unix.MS_BIND != 0 {
		// A bind ignores every flag but MS_REC; the others need a remount of
		// the new mount, which sits on top of the fd's dentry.
		if err := mountOn(src, target, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return stepError(step, m.Destination, err)
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
			top, err := reopenTop(root, m.Destination)
			if err != nil {
				return stepError("reopen mount", m.Destination, err)
			}
			err = mountOn("", top, "", unix.MS_BIND|unix.MS_REMOUNT|rest, "")
			unix.Close(top)
			if err != nil {
				return stepError("remount "+m.Destination, m.Destination, err)
			}
		}
	} else if err := mountOn(src, target, m.Type, flags, data); err != nil {
		return stepError(step, m.Destination, err)
	}
	if propagation != 0 {
		top, err := reopenTop(root, m.Destination)
		if err != nil {
			return stepError("reopen mount", m.Destination, err)
		}
		err = mountOn("", top, "", propagation, "")
		unix.Close(top)
		if err != nil {
			return stepError("set propagation", m.Destination, err)
		}
	}
	return nil
}

func reopenTop(root int, p string) (int, error) {
	return openIn(root, p, unix.O_PATH, 0)
}
