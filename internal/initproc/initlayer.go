package initproc

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Mountpoints are the paths every container's root needs before anything
// is mounted on them: the directories of /proc, /dev and /sys and the
// files the container's own /etc/hosts, /etc/hostname and /etc/resolv.conf
// are bound on. An image without them has them made in each container's
// upper directory, which on a disk that frees blocks dearly costs a
// millisecond or so per container, made and deleted; an init layer holds
// them once per image instead (docker's "-init" layer).
var (
	mountpointDirs  = []string{"/proc", "/dev", "/sys"}
	mountpointFiles = []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
)

// MakeInitLayer makes, in the fresh directory upper, what a container of
// the image whose layers are lower (topmost first) would have made in its
// own upper directory for its mount points: the overlay of lower is
// mounted with upper (and work, an empty directory beside it) on mnt, and
// each mount point is made as setupRootfs makes it, by the same code (an
// image symlink is followed only inside the root, and not at all at /proc,
// /dev or /sys). A mount point that cannot be made is left out: the
// container's start makes it, or reports why not, as it would without an
// init layer. upper can then serve as the topmost lower layer of the
// image's containers, whose setup finds every mount point there and writes
// nothing. It runs on a thread of its own in a private mount namespace,
// which the mount leaves with.
func MakeInitLayer(lower []string, upper, work, mnt string) error {
	errc := make(chan error, 1)
	go OnOwnThread(func() { errc <- makeInitLayer(lower, upper, work, mnt) })
	return <-errc
}

func makeInitLayer(lower []string, upper, work, mnt string) error {
	if len(lower) == 0 {
		return fmt.Errorf("init layer: no image layers")
	}
	// The container's / takes the mode of the topmost layer's root when it
	// has no upper directory: an image's root is 0755.
	if err := os.Chmod(upper, 0o755); err != nil {
		return err
	}
	// CLONE_FS too: the kernel refuses a new mount namespace to a thread
	// that shares its root and working directory with others.
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("init layer: private mount namespace: %w", err)
	}
	// The modes the code below asks for, whatever the program's umask (the
	// thread's own now): a container's start makes them under umask 0 too,
	// and the layer is shared by every container of the image.
	unix.Umask(0)
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("init layer: making / rprivate: %w", err)
	}
	if err := mountOverlay(&Spec{Lower: lower, Upper: upper, Work: work, Rootfs: mnt}); err != nil {
		return err
	}
	// Unmounted before the caller goes on: upper is about to become a
	// lower layer, and overlayfs must not find it still the upper
	// directory of a mount (the namespace would outlive this call until
	// the thread ends).
	defer unix.Unmount(mnt, 0)
	root, err := unix.Open(mnt, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("init layer: %w", err)
	}
	defer unix.Close(root)
	for _, d := range mountpointDirs {
		if fd, err := mountpoint(root, d, strings.TrimPrefix(d, "/")); err == nil {
			unix.Close(fd)
		}
	}
	for _, f := range mountpointFiles {
		if fd, err := mkfileIn(root, f); err == nil {
			unix.Close(fd)
		}
	}
	return nil
}
