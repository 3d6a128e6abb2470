package berth

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// writeSwapped writes b as the file dst, which other programs read whole
// at any moment (a container's record, an endpoint file), where it can
// without making or freeing an inode: on this machine's disk (ext4 without
// a journal) making one scans past every inode freed in the last minute,
// which fifty detached starts after fifty removals paid ~0.8 ms a file
// for (spare.go). kept names files on dst's filesystem that hold earlier
// versions, kept for the next write. The new content is written into one
// of them in place and swapped with dst (renameat2 RENAME_EXCHANGE), so
// that it then holds the version it replaced; where dst does not exist yet,
// it is renamed to dst.
//
// Readers open only dst and see one whole version or another: a kept file
// is written only while no one else has it open (the kernel grants a write
// lease only then), since a reader that opened it as dst before the last
// exchange may still be reading it. Writers of one file take turns by the
// kept file's flock, and check once they hold it that it still has its
// name. Without a kept file, or with a reader on one, the content goes to
// a new file beside dst, which trades names with dst in the same way and is
// then kept under a free kept name (or deleted).
func writeSwapped(dst string, kept []string, b []byte) error {
	for _, k := range kept {
		if writeKept(k, dst, b) {
			return nil
		}
	}
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-"+newContainerID()[:12])
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	switch old, err := swapInto(tmp, dst); {
	case err != nil:
		os.Remove(tmp)
		return err
	case old == "":
		return nil // dst was made
	}
	keepFile(tmp, kept) // it holds the previous version now
	return nil
}

// writeJSONSwapped is writeSwapped of v's JSON, as writeJSONAtomic is for
// files written through a temporary file.
func writeJSONSwapped(dst string, kept []string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeSwapped(dst, kept, b)
}

// writeKept writes b into the kept file k and swaps it into place as dst
// (writeSwapped), and reports whether it did.
func writeKept(k, dst string, b []byte) bool {
	fd, err := unix.Open(k, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var held, named unix.Stat_t
	if flockRetry(fd, unix.LOCK_EX) != nil || unix.Fstat(fd, &held) != nil ||
		unix.Stat(k, &named) != nil || held.Ino != named.Ino || held.Dev != named.Dev {
		return false // another writer swapped it away meanwhile
	}
	if !takeWriteLease(fd) {
		return false // open elsewhere: a reader, or a writer waiting its turn
	}
	err = fillFile(fd, b)
	unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	if err != nil {
		return false
	}
	_, err = swapInto(k, dst)
	return err == nil
}

// swapInto puts file p in place as dst. It returns p, now holding the
// file it replaced, or "" when there was none and p was renamed.
func swapInto(p, dst string) (string, error) {
	for {
		err := unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
		if err != unix.ENOENT {
			return p, err
		}
		if _, serr := os.Lstat(p); serr != nil {
			return "", serr
		}
		err = unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
		if err != unix.EEXIST {
			return "", err // made, or failed
		}
		// another writer made dst meanwhile: exchange with it
	}
}

// keepFile moves file p to the first free name of kept, for writeSwapped
// to write into later, or deletes it: a file let go without freeing its
// inode.
func keepFile(p string, kept []string) {
	for _, k := range kept {
		err := unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, k, unix.RENAME_NOREPLACE)
		if err == nil {
			return
		}
		if err != unix.EEXIST {
			break
		}
	}
	os.Remove(p)
}

// keptIn is names' paths in dir.
func keptIn(dir string, names []string) []string {
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
	}
	return paths
}

// fillFile makes the file open as fd hold b and nothing else.
func fillFile(fd int, b []byte) error {
	n, err := unix.Pwrite(fd, b, 0)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return err
	}
	return unix.Ftruncate(fd, int64(len(b)))
}

// takeWriteLease takes a write lease on fd, which the kernel grants only
// to a file's sole opener, and reports whether it did. While it is held,
// someone opening the file would have the kernel send SIGIO to this
// process (the lease's owner): the signal is sent to no one (F_SETOWN 0),
// since a program that asks for every signal (signal.Notify with none
// named), or a C host, would get it.
func takeWriteLease(fd int) bool {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		return false
	}
	unix.FcntlInt(uintptr(fd), unix.F_SETOWN, 0)
	return true
}

// flockRetry is flock(2) retried on EINTR.
func flockRetry(fd, how int) error {
	for {
		if err := unix.Flock(fd, how); err != unix.EINTR {
			return err
		}
	}
}
