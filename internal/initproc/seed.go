package initproc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// maxSeedDepth bounds the directory nesting seedVolume follows; an image
// deeper than this is refused rather than copied in part.
const maxSeedDepth = 512

// seedVolume copies the container's content at m.Destination into the empty
// volume directory m.Source, as docker does on a volume's first mount. The
// source is walked with openat(O_NOFOLLOW) from an fd resolved inside root,
// so no path string is ever resolved and no symlink followed: symlinks are
// recreated as symlinks. Ownership, modes (set after the owner, so setuid
// bits survive) and modification times are kept; hardlinks become separate
// copies and xattrs are not copied.
func seedVolume(root int, m Mount) error {
	if m.SeedLock != "" {
		lock, err := unix.Open(m.SeedLock, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return stepError("lock volume", m.SeedLock, err)
		}
		defer unix.Close(lock) // closing releases the flock
		if err := unix.Flock(lock, unix.LOCK_EX); err != nil {
			return stepError("lock volume", m.SeedLock, err)
		}
	}
	dst, err := unix.Open(m.Source, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open volume", m.Source, err)
	}
	defer unix.Close(dst)
	if empty, err := dirEmpty(dst); err != nil || !empty {
		if err != nil {
			return stepError("read volume", m.Source, err)
		}
		return nil
	}
	src, err := openIn(root, m.Destination, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil // nothing to copy; the mount itself reports a file in the way
	}
	if err != nil {
		return stepError("open volume content", m.Destination, err)
	}
	defer unix.Close(src)
	if err := copyTree(src, dst, 0); err != nil {
		return stepError("copy image content into volume", m.Destination, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return stepError("copy image content into volume", m.Destination, err)
	}
	return copyMeta(dst, "", &st)
}

// dirEmpty reports whether the directory fd has no entries.
func dirEmpty(fd int) (bool, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return false, err
		}
		if n <= 0 {
			return true, nil
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		if len(names) > 0 {
			return false, nil
		}
	}
}

// copyTree copies the entries of directory src into directory dst.
func copyTree(src, dst, depth int) error {
	if depth > maxSeedDepth {
		return unix.ELOOP
	}
	names, err := readNames(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := copyEntry(src, dst, name, &st, depth); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func readNames(dir int) ([]string, error) {
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(dir, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

func copyEntry(src, dst int, name string, st *unix.Stat_t, depth int) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dst, name, 0o700); err != nil {
			return err
		}
		s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		d, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(d)
		if err := copyTree(s, d, depth+1); err != nil {
			return err
		}
		return copyMeta(d, "", st)
	case unix.S_IFREG:
		s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		d, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		defer unix.Close(d)
		if st.Size > 0 {
			if err := copyData(d, s, st.Size); err != nil {
				return err
			}
		}
		return copyMeta(d, "", st)
	case unix.S_IFLNK:
		target, err := readlinkat(src, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dst, name); err != nil {
			return err
		}
		return copyMeta(dst, name, st)
	default: // devices, fifos, sockets
		if err := unix.Mknodat(dst, name, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
		return copyMeta(dst, name, st)
	}
}

// copyData copies size bytes with read and write: the files seeded are
// mostly small, and copy_file_range from overlayfs failed with EINVAL on
// some of them.
func copyData(dst, src int, size int64) error {
	buf := make([]byte, min(size, 1<<20))
	for size > 0 {
		n, err := unix.Read(src, buf[:min(int64(len(buf)), size)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil // the file shrank under us: keep what was there
		}
		for w := buf[:n]; len(w) > 0; {
			m, err := unix.Write(dst, w)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			w = w[m:]
		}
		size -= int64(n)
	}
	return nil
}

// copyMeta gives dir/name (or the fd itself when name is empty) st's owner,
// mode and times.
func copyMeta(fd int, name string, st *unix.Stat_t) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(fd, name, int(st.Uid), int(st.Gid), flags); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		var err error
		if name == "" {
			err = unix.Fchmod(fd, st.Mode&0o7777)
		} else {
			err = unix.Fchmodat(fd, name, st.Mode&0o7777, 0)
		}
		if err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if name == "" {
		return unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
	}
	return unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func readlinkat(dir int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
