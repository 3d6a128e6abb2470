package initproc

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CloneShm returns a copy of the /dev/shm mount of the mount namespace
// mntNS (a running container's) as a detached mount (open_tree's clone):
// Spec.ShmMount moves it onto another container's /dev/shm, which then
// shows the same files (docker's --ipc container:NAME). A mount cannot be
// bound from one mount namespace into another, but a detached copy made
// inside the first can be attached in the second.
//
// The path is resolved inside the container's root, with no symlink
// followed, and must be the root of a tmpfs mount: a container that made
// /dev/shm a link, or mounted another filesystem there, gets an error,
// never a bind of whatever the link named. A donor allowed to mount could
// still have put another tmpfs there, mounted suid or exec, or shared:
// the copy is made nosuid, nodev and noexec, as a /dev/shm of berth's is,
// and private, whatever the donor's flags. The work happens on a thread of
// its own (OnOwnThread), which ends with the namespace it joined.
func CloneShm(mntNS *os.File) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go OnOwnThread(func() {
		f, err := cloneShm(int(mntNS.Fd()))
		done <- result{f, err}
	})
	r := <-done
	return r.f, r.err
}

func cloneShm(nsFD int) (*os.File, error) {
	// Without a private fs struct, setns(CLONE_NEWNS) is refused (the
	// thread shares its root and cwd with the whole process).
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return nil, fmt.Errorf("unshare CLONE_FS: %w", err)
	}
	if err := unix.Setns(nsFD, unix.CLONE_NEWNS); err != nil {
		return nil, fmt.Errorf("joining the mount namespace: %w", err)
	}
	// setns made the namespace's root this thread's root and cwd.
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	fd, err := openIn(root, "/dev/shm", unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		return nil, fmt.Errorf("/dev/shm: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &st); err != nil {
		return nil, fmt.Errorf("/dev/shm: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return nil, fmt.Errorf("/dev/shm: %w", err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 || st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 || fs.Type != unix.TMPFS_MAGIC {
		return nil, errors.New("/dev/shm is not a tmpfs mount")
	}
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return nil, fmt.Errorf("copying the /dev/shm mount: %w", err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC, Propagation: unix.MS_PRIVATE}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(tree)
		return nil, fmt.Errorf("restricting the copy of /dev/shm: %w", err)
	}
	return os.NewFile(uintptr(tree), "/dev/shm"), nil
}
