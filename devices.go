package berth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) && dir != "/dev" {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing the host's devices: %w", err)
		}
		for _, e := range entries {
			name := filepath.Join(dir, e.Name())
			switch t := e.Type(); {
			case t.IsDir():
				switch e.Name() {
				case "pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev":
					continue
				}
				if err := walk(name); err != nil {
					return err
				}
			case t&fs.ModeDevice != 0 && e.Name() != "console":
				var st unix.Stat_t
				if err := unix.Lstat(name, &st); err != nil {
					continue // gone since the listing
				}
				kind := st.Mode & unix.S_IFMT
				if kind != unix.S_IFCHR && kind != unix.S_IFBLK {
					continue
				}
				devs = append(devs, initproc.Device{
					Path: name, Type: kind,
					Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev),
					Mode: st.Mode &^ unix.S_IFMT, UID: st.Uid, GID: st.Gid,
				})
			}
		}
		return nil
	}
	if err := walk("/dev"); err != nil {
		return nil, err
	}
	return devs, nil
}
