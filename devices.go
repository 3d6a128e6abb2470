package berth

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/berth-dev/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

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
		var st unix.Stat_t
		if err := unix.Lstat(name, &st); err != nil {
			return nil // gone since the listing
		}
		kind := st.Mode & unix.S_IFMT
		if kind != unix.S_IFCHR && kind != unix.S_IFBLK {
			return nil
		}
		devs = append(devs, initproc.Device{
			Path: name, Type: kind,
			Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev),
			Mode: st.Mode &^ unix.S_IFMT, UID: st.Uid, GID: st.Gid,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the host's devices: %w", err)
	}
	return devs, nil
}
