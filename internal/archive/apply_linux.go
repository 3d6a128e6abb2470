package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxCachedDirs bounds the parent directory fds kept open between entries.
// Layers are written mostly directory by directory, so a small cache catches
// nearly every lookup while staying far from RLIMIT_NOFILE.
const maxCachedDirs = 256

// CopyBufSize is the chunk in which file content is read from a tar and
// written to files, here and by callers that stream layers around this
// package. Larger buffers gain nothing measurable, and a fresh megabyte
// costs its zeroing and page faults on every use (a tenth of a cold
// build's CPU when every copy had one).
const CopyBufSize = 128 << 10

// holeBlock is the granularity at which runs of zero bytes become holes
// instead of writes. Images are full of zero-padded files (databases, disk
// images, static binaries' .bss-like sections), and skipping them makes the
// pull faster and the snapshot smaller without changing what a reader sees.
const holeBlock = 32 << 10

// zeroBlock is compared against; it is never written to.
var zeroBlock = make([]byte, holeBlock)

// applier holds the state of one Apply call.
type applier struct {
	opts ApplyOptions
	// root is an O_RDONLY|O_DIRECTORY fd of the target directory. Every
	// lookup starts from it with RESOLVE_IN_ROOT.
	root int
	// dirs caches open fds of directories by their cleaned relative path.
	// Fds handed out stay valid until the next startEntry.
	dirs map[string]int
	// stale is set when a directory or symlink was removed, after which a
	// cached path may resolve differently; the cache is dropped at the start
	// of the next entry, not while a caller may still hold one of its fds.
	stale bool
	// layer holds, in flat mode, the paths this layer has created and their
	// ancestors; nil in overlay mode.
	layer map[string]struct{}
	// dirTimes are the directory times to set once all content is in.
	dirTimes map[string][2]time.Time
	buf      []byte
}

func newApplier(dir string, opts ApplyOptions) (*applier, error) {
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening layer target %s: %w", dir, err)
	}
	a := &applier{
		opts:     opts,
		root:     root,
		dirs:     make(map[string]int),
		dirTimes: make(map[string][2]time.Time),
		buf:      make([]byte, CopyBufSize),
	}
	if !opts.Overlay {
		a.layer = make(map[string]struct{})
	}
	return a, nil
}

func (a *applier) close() {
	a.dropDirs()
	unix.Close(a.root)
}

func (a *applier) dropDirs() {
	for k, fd := range a.dirs {
		unix.Close(fd)
		delete(a.dirs, k)
	}
	a.stale = false
}

// startEntry is called before each entry, when no cached fd is in use.
func (a *applier) startEntry() {
	if a.stale || len(a.dirs) >= maxCachedDirs {
		a.dropDirs()
	}
}

// openInRoot opens the directory rel with every component, symlinks
// included, resolved as if the target were "/": nothing it does can reach
// outside the target.
func (a *applier) openInRoot(rel string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(a.root, rel, &how)
		// EAGAIN means a concurrent rename made the kernel give up on a
		// safe lookup; it is safe to try again.
		if err != unix.EAGAIN && err != unix.EINTR {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// dir returns an fd of the directory rel, confined to the target. With
// create, missing directories on the way are created (0755, root-owned, as
// Docker does for parents that a layer does not list). The fd belongs to the
// cache: do not close it.
func (a *applier) dir(rel string, create bool) (int, error) {
	if rel == "" {
		return a.root, nil
	}
	if fd, ok := a.dirs[rel]; ok {
		return fd, nil
	}
	fd, err := a.openInRoot(rel)
	if err == unix.ENOENT && create {
		parent, name := splitPath(rel)
		pfd, perr := a.dir(parent, true)
		if perr != nil {
			return -1, perr
		}
		err = unix.Mkdirat(pfd, name, 0o755)
		switch {
		case err == nil:
			// The umask must not decide the mode of a directory in an
			// image. The mode is set through an fd of the directory just
			// made, opened without following a symlink: a running
			// container's process can rename it away and put a symlink
			// to a host path in its place.
			fd, err = unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil {
				if err = unix.Fchmod(fd, 0o755); err != nil {
					unix.Close(fd)
				}
			}
			if err != nil {
				return -1, fmt.Errorf("creating parent directory %q: %w", rel, err)
			}
		case err == unix.EEXIST:
			// The name is a symlink that leads nowhere inside the
			// target; opening again reports that.
			fd, err = a.openInRoot(rel)
		default:
			return -1, fmt.Errorf("creating parent directory %q: %w", rel, err)
		}
	}
	if err != nil {
		return -1, fmt.Errorf("opening directory %q inside the target: %w", rel, err)
	}
	a.dirs[rel] = fd
	return fd, nil
}

// finish sets the directory times recorded while applying, now that no
// more content is written into them. The parents are opened without
// following symlinks: if a later entry replaced a directory on the way by a
// symlink, the recorded directory is no longer at that path.
func (a *applier) finish() error {
	a.startEntry()
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS,
	}
	for rel, t := range a.dirTimes {
		if rel == "" {
			if err := setTimes(a.root, ".", t[0], t[1]); err != nil {
				return err
			}
			continue
		}
		parent, name := splitPath(rel)
		pfd := a.root
		if parent != "" {
			fd, err := unix.Openat2(a.root, parent, &how)
			if err != nil {
				continue // Removed, or replaced by a symlink or a file.
			}
			pfd = fd
		}
		err := setTimes(pfd, name, t[0], t[1])
		if pfd != a.root {
			unix.Close(pfd)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("setting times of %q: %w", rel, err)
		}
	}
	return nil
}

func (a *applier) mkdir(rel, dir, base string, hdr *tar.Header) error {
	fd := a.root
	if rel != "" {
		pfd, err := a.dir(dir, true)
		if err != nil {
			return err
		}
		replaced := false
		err = unix.Mkdirat(pfd, base, 0o700)
		if err == unix.EEXIST {
			var st unix.Stat_t
			if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = nil // A directory over a directory merges.
			} else {
				if err := a.removeAll(pfd, base); err != nil {
					return err
				}
				replaced = true
				err = unix.Mkdirat(pfd, base, 0o700)
			}
		}
		if err != nil {
			return fmt.Errorf("creating directory: %w", err)
		}
		fd, err = unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening new directory: %w", err)
		}
		if old, ok := a.dirs[rel]; ok {
			unix.Close(old)
		}
		a.dirs[rel] = fd
		// In a layer directory, a directory that replaced a same-layer
		// whiteout or file must still hide the lower directory of that
		// name, or the lower content would show through the merge.
		if replaced && a.opts.Overlay {
			if err := setOpaque(fd); err != nil {
				return err
			}
		}
	}
	if err := a.fdMeta(fd, hdr); err != nil {
		return err
	}
	atime, mtime := entryTimes(hdr)
	a.dirTimes[rel] = [2]time.Time{atime, mtime}
	return nil
}

// file creates a regular file and returns the logical bytes written.
func (a *applier) file(rel, dir, base string, hdr *tar.Header, content io.Reader) (int64, error) {
	pfd, err := a.dir(dir, true)
	if err != nil {
		return 0, err
	}
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0o600)
	// Another writer of the directory (a second copy into a running
	// container) may make the name again between the two: the last
	// writer's file stays, as with docker cp.
	for tries := 0; err == unix.EEXIST && tries < 5; tries++ {
		if err := a.replace(rel, pfd, base); err != nil {
			return 0, err
		}
		fd, err = unix.Openat(pfd, base, flags, 0o600)
	}
	if err != nil {
		return 0, fmt.Errorf("creating file: %w", err)
	}
	defer unix.Close(fd)
	n, err := a.copyContent(fd, content, hdr.Size)
	if err != nil {
		return n, err
	}
	if err := a.fdMeta(fd, hdr); err != nil {
		return n, err
	}
	atime, mtime := entryTimes(hdr)
	// Through the fd, not the name, which another writer may have taken
	// since.
	return n, setTimesFd(fd, atime, mtime)
}

// copyContent writes size bytes from r to the new, empty file fd, leaving
// holes where whole blocks are zero.
func (a *applier) copyContent(fd int, r io.Reader, size int64) (int64, error) {
	var off, end int64 // end: just past the last byte written
	for off < size {
		chunk := a.buf[:min(int64(len(a.buf)), size-off)]
		n, err := io.ReadFull(r, chunk)
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return off + int64(n), fmt.Errorf("%w: content ends after %d of %d bytes: %w", ErrBadHeader, off+int64(n), size, io.ErrUnexpectedEOF)
			}
			return off + int64(n), fmt.Errorf("reading content: %w", err)
		}
		e, err := writeSparse(fd, chunk, off)
		if err != nil {
			return off, fmt.Errorf("writing content: %w", err)
		}
		end = max(end, e)
		off += int64(n)
	}
	// Trailing zero blocks were skipped; the size makes them a hole.
	if end < size {
		if err := unix.Ftruncate(fd, size); err != nil {
			return off, fmt.Errorf("sizing file: %w", err)
		}
	}
	return off, nil
}

// writeSparse writes b at off, skipping whole zero blocks and coalescing
// non-zero runs into one pwrite. It returns the offset just past the last
// byte written, or 0 if it wrote nothing.
func writeSparse(fd int, b []byte, off int64) (end int64, err error) {
	start := -1 // start of the pending non-zero run
	for i := 0; i < len(b); i += holeBlock {
		blk := b[i:min(i+holeBlock, len(b))]
		if bytes.Equal(blk, zeroBlock[:len(blk)]) {
			if start >= 0 {
				if err := pwriteAll(fd, b[start:i], off+int64(start)); err != nil {
					return 0, err
				}
				end = off + int64(i)
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		if err := pwriteAll(fd, b[start:], off+int64(start)); err != nil {
			return 0, err
		}
		end = off + int64(len(b))
	}
	return end, nil
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}

func (a *applier) symlink(rel, dir, base string, hdr *tar.Header) error {
	pfd, err := a.dir(dir, true)
	if err != nil {
		return err
	}
	err = unix.Symlinkat(hdr.Linkname, pfd, base)
	if err == unix.EEXIST {
		if err := a.replace(rel, pfd, base); err != nil {
			return err
		}
		err = unix.Symlinkat(hdr.Linkname, pfd, base)
	}
	if err != nil {
		return fmt.Errorf("creating symlink: %w", err)
	}
	return a.atMeta(pfd, base, hdr, false)
}

// hardlink links base to hdr.Linkname. The target is looked up inside the
// target directory, and its last component is never followed: a hardlink to
// a symlink links the symlink, which is then resolved in the container's
// root like any other.
func (a *applier) hardlink(dir, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "" {
		return fmt.Errorf("%w: hardlink to the root directory", ErrBadLink)
	}
	tdir, tbase := splitPath(target)
	tpfd, err := a.dir(tdir, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return fmt.Errorf("%w: %q does not exist", ErrBadLink, hdr.Linkname)
		}
		return err
	}
	var tst unix.Stat_t
	if err := unix.Fstatat(tpfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return fmt.Errorf("%w: %q does not exist", ErrBadLink, hdr.Linkname)
		}
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: %q is a directory", ErrBadLink, hdr.Linkname)
	}
	pfd, err := a.dir(dir, true)
	if err != nil {
		return err
	}
	err = unix.Linkat(tpfd, tbase, pfd, base, 0)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
			return nil // Already the same file.
		}
		if err := a.replace(joinPath(dir, base), pfd, base); err != nil {
			return err
		}
		err = unix.Linkat(tpfd, tbase, pfd, base, 0)
	}
	if err != nil {
		return fmt.Errorf("creating hardlink to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (a *applier) mknod(rel, dir, base string, hdr *tar.Header) error {
	mode := uint32(hdr.Mode & 0o7777)
	var dev uint64
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
		dev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
		dev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	default:
		mode |= unix.S_IFIFO
	}
	pfd, err := a.dir(dir, true)
	if err != nil {
		return err
	}
	err = unix.Mknodat(pfd, base, mode, int(dev))
	if err == unix.EEXIST {
		if err := a.replace(rel, pfd, base); err != nil {
			return err
		}
		err = unix.Mknodat(pfd, base, mode, int(dev))
	}
	if err != nil {
		return fmt.Errorf("creating device node: %w", err)
	}
	return a.atMeta(pfd, base, hdr, true)
}

// replace removes what is at name so that a non-directory entry can take its
// place. Flat-mode bookkeeping is unaffected: the new entry is in the layer.
func (a *applier) replace(rel string, pfd int, name string) error {
	delete(a.dirTimes, rel)
	if err := a.removeAll(pfd, name); err != nil {
		return fmt.Errorf("replacing existing entry: %w", err)
	}
	return nil
}

// removeAll removes name in pfd and, if it is a directory, everything
// below it, never following a symlink.
func (a *applier) removeAll(pfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		a.stale = true
		return removeDir(pfd, name)
	case unix.S_IFLNK:
		// The symlink may have been a component of a cached path.
		a.stale = true
	}
	if err := unix.Unlinkat(pfd, name, 0); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// removeDir removes the directory name in pfd and everything below it. It
// opens each level with O_NOFOLLOW and unlinks relative to it, so a symlink
// below is removed, never followed.
func removeDir(pfd int, name string) error {
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := readNames(fd)
	for _, n := range names {
		if err != nil {
			break
		}
		err = unix.Unlinkat(fd, n, 0)
		if err == unix.EISDIR {
			err = removeDir(fd, n)
		} else if err == unix.ENOENT {
			err = nil
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
}

// removeLower removes, in flat mode, what is at name (path rel) except what
// this layer created: a directory of this layer keeps its own entries and
// loses the others.
func (a *applier) removeLower(pfd int, name, rel string) error {
	if !a.inLayer(rel) {
		delete(a.dirTimes, rel)
		return a.removeAll(pfd, name)
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOTDIR || err == unix.ELOOP || err == unix.ENOENT {
			return nil // A file of this layer: kept.
		}
		return err
	}
	defer unix.Close(fd)
	return a.removeLowerChildren(fd, rel)
}

func (a *applier) removeLowerChildren(fd int, rel string) error {
	names, err := readNames(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := a.removeLower(fd, n, joinPath(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

// realDir opens the directory rel for a whiteout or an opaque marker,
// refusing to pass through a symlink. A whiteout hides something in the
// directory of that name in lower layers, and overlayfs only ever looks for
// it in a real directory; following a symlink would make it remove or hide
// something else, and in flat mode would break the bookkeeping of this
// layer's paths, which is by name. With create, missing directories are
// made (overlay mode). The caller must close the fd; ok is false when
// there is no such directory.
func (a *applier) realDir(rel string, create bool) (fd int, ok bool, err error) {
	fd, err = unix.Dup(a.root)
	if err != nil {
		return -1, false, err
	}
	if rel == "" {
		return fd, true, nil
	}
	for c := range strings.SplitSeq(rel, "/") {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil {
				err = unix.Fchmodat(fd, c, 0o755, 0)
			}
			if err == nil {
				next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		switch err {
		case nil:
			fd = next
		case unix.ENOENT, unix.ENOTDIR, unix.ELOOP:
			// Not a directory of this tree: nothing under it to hide.
			return -1, false, nil
		default:
			return -1, false, fmt.Errorf("opening directory %q: %w", rel, err)
		}
	}
	return fd, true, nil
}

func (a *applier) flatWhiteout(dir, name string) error {
	pfd, ok, err := a.realDir(dir, false)
	if !ok {
		return err
	}
	defer unix.Close(pfd)
	if err := a.removeLower(pfd, name, joinPath(dir, name)); err != nil {
		return fmt.Errorf("applying whiteout: %w", err)
	}
	return nil
}

func (a *applier) flatOpaque(dir string) error {
	fd, ok, err := a.realDir(dir, false)
	if !ok {
		return err
	}
	defer unix.Close(fd)
	if err := a.removeLowerChildren(fd, dir); err != nil {
		return fmt.Errorf("applying opaque marker: %w", err)
	}
	return nil
}

// overlayWhiteout records a whiteout the way overlayfs reads one: a 0:0
// character device.
func (a *applier) overlayWhiteout(dir, name string) error {
	pfd, ok, err := a.realDir(dir, true)
	if !ok {
		return err
	}
	defer unix.Close(pfd)
	err = unix.Mknodat(pfd, name, unix.S_IFCHR, 0)
	if err == unix.EEXIST {
		// An entry of this same layer is there; whiteouts hide lower
		// layers only. A directory of this layer must still hide the lower
		// directory's content, which is what an opaque directory does.
		fd, oerr := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if oerr != nil {
			return nil
		}
		defer unix.Close(fd)
		return setOpaque(fd)
	}
	if err != nil {
		return fmt.Errorf("creating whiteout device: %w", err)
	}
	// mknod made it 0:0: only root can make a device at all.
	return nil
}

func (a *applier) overlayOpaque(dir string) error {
	fd, ok, err := a.realDir(dir, true)
	if !ok {
		return err
	}
	defer unix.Close(fd)
	return setOpaque(fd)
}

func setOpaque(fd int) error {
	if err := unix.Fsetxattr(fd, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("marking directory opaque: %w", err)
	}
	return nil
}

// fdMeta applies ownership, mode and xattrs through an open fd of a file or
// directory. Ownership first: chown clears setuid and setgid, and file
// capabilities (security.capability).
func (a *applier) fdMeta(fd int, hdr *tar.Header) error {
	if !a.opts.NoSameOwner {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("changing owner to %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return fmt.Errorf("changing mode: %w", err)
	}
	for k, v := range headerXattrs(hdr) {
		if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil && !ignorableXattrErr(err) {
			return fmt.Errorf("setting xattr %s: %w", k, err)
		}
	}
	return nil
}

// atMeta applies metadata to name in pfd, a symlink or a device node or
// fifo (which must not be opened: opening a fifo blocks and opening a device
// can have effects). Nothing here follows a symlink.
func (a *applier) atMeta(pfd int, name string, hdr *tar.Header, chmod bool) error {
	if !a.opts.NoSameOwner {
		if err := unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("changing owner to %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if chmod {
		if err := chmodNoFollow(pfd, name, uint32(hdr.Mode&0o7777)); err != nil {
			return fmt.Errorf("changing mode: %w", err)
		}
	}
	if xs := headerXattrs(hdr); len(xs) > 0 {
		// There is no setxattrat in x/sys; the parent fd's /proc entry
		// reaches the same inode without a path walk through the tree.
		p := procPath(pfd, name)
		for k, v := range xs {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil && !ignorableXattrErr(err) {
				return fmt.Errorf("setting xattr %s: %w", k, err)
			}
		}
	}
	atime, mtime := entryTimes(hdr)
	return setTimes(pfd, name, atime, mtime)
}

// ignorableXattrErr reports xattr failures that Docker and containerd also
// skip: the filesystem has no xattrs, or the kernel refuses the namespace
// on this file type (user.* on a symlink or device).
func ignorableXattrErr(err error) bool {
	return err == unix.ENOTSUP || err == unix.EPERM
}

// chmodNoFollow sets the mode of name in pfd, a node that must not be
// opened for reading (a device or fifo), never through a symlink: a running
// container's process can swap one in for the node just made, pointing at
// a host file. fchmodat2 refuses a symlink (EOPNOTSUPP, Linux 6.6); where
// there is no fchmodat2 (Linux 6.5 and older: the same error, or ENOSYS),
// the mode is set through the /proc link of an O_PATH fd of the node,
// which reaches the node itself.
func chmodNoFollow(pfd int, name string, mode uint32) error {
	err := unix.Fchmodat(pfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP && err != unix.ENOSYS {
		return err
	}
	fd, err := unix.Openat(pfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s was replaced by a symlink", name)
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

func procPath(fd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name
}

func setTimes(pfd int, name string, atime, mtime time.Time) error {
	ts := []unix.Timespec{toTimespec(atime), toTimespec(mtime)}
	if err := unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// setTimesFd sets the times of the file open as fd.
func setTimesFd(fd int, atime, mtime time.Time) error {
	if err := unix.UtimesNanoAt(fd, "", []unix.Timespec{toTimespec(atime), toTimespec(mtime)}, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

func toTimespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// readNames lists the directory fd from its start, without "." and "..".
func readNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("getdents", err)
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
