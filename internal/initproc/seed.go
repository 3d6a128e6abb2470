package initproc

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxSeedDepth bounds the directory nesting seedVolume follows; an image
// deeper than this is refused rather than copied in part.
const maxSeedDepth = 512

// maxSeedWorkers bounds the goroutines copying directories at once. The
// work is mostly waiting on the disk (inode reads through overlayfs, inode
// creation on the volume's filesystem), so a few more than the CPUs help.
const maxSeedWorkers = 8

// maxHeldLinks bounds the O_PATH fds kept open on copies of files with
// further hard links still to be seen; past it, later links of new inodes
// become copies instead.
const maxHeldLinks = 4096

// seedVolume copies the container's content at m.Destination into the empty
// volume directory m.Source, as docker does on a volume's first mount. The
// source is walked with openat(O_NOFOLLOW) from an fd resolved inside root,
// so no path string is ever resolved and no symlink followed: symlinks are
// recreated as symlinks. Ownership, modes (set after the owner, so setuid
// bits survive), extended attributes (file capabilities, ACLs, labels), and
// modification and access times are kept, and files hard-linked to each
// other in the image are hard-linked in the volume. Directories are copied
// by several goroutines at once.
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
	// Only the image's own files are copied, as docker copies them: the
	// path may not cross a mount (an earlier volume, or /sys and /dev
	// through a symlink of the image), and copyTree skips the mounts in it.
	src, err := openIn(root, m.Destination, unix.O_RDONLY|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.EXDEV {
		return nil // nothing to copy; the mount itself reports a file in the way
	}
	if err != nil {
		return stepError("open volume content", m.Destination, err)
	}
	defer unix.Close(src)
	if err := copyTree(src, dst, seedWorkers()); err != nil {
		return stepError("copy image content into volume", m.Destination, err)
	}
	return nil
}

// seedWorkers is how many goroutines copy at once: twice the CPUs the
// process may use, within maxSeedWorkers.
func seedWorkers() int { return max(1, min(2*runtime.NumCPU(), maxSeedWorkers)) }

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

// copyTree copies the content of directory src into the empty directory
// dst and then gives dst src's owner, extended attributes, mode and times.
// workers goroutines copy directories in parallel; the process's umask is
// 0 while it runs, so that new files get their modes in the call that
// creates them. Every fd it opens is closed when it returns, also on
// failure.
func copyTree(src, dst, workers int) error {
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	var dstSt unix.Stat_t
	if err := unix.Fstat(dst, &dstSt); err != nil {
		return err
	}
	defer unix.Umask(unix.Umask(0))
	if procs := runtime.GOMAXPROCS(0); procs < runtime.NumCPU() {
		// The child stage runs with GOMAXPROCS=1 for a fast start.
		runtime.GOMAXPROCS(runtime.NumCPU())
		defer runtime.GOMAXPROCS(procs)
	}
	s := &seeder{
		dev: st.Dev,
		uid: uint32(unix.Geteuid()), gid: uint32(unix.Getegid()),
		// A setgid directory hands its group to what is made in it.
		alwaysChown: dstSt.Mode&unix.S_ISGID != 0,
		links:       map[fileID]*seedLink{},
	}
	s.cond = sync.NewCond(&s.mu)
	top := &seedDir{src: src, dst: dst, st: st}
	top.pending.Store(1)
	s.stack = []*seedDir{top}
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work()
		}()
	}
	wg.Wait()
	s.closeLinks()
	return s.err
}

// seeder is one copyTree: a stack of directories to copy, shared by the
// workers. A directory's metadata is applied when its whole subtree is
// done (pending reaches 0), because creating entries changes its times and
// its final mode may forbid creating them.
type seeder struct {
	mu    sync.Mutex
	cond  *sync.Cond
	stack []*seedDir
	done  bool  // the top directory is finished
	err   error // the first failure; once set, no more copying starts

	dev         uint64 // the source's filesystem: directories on another are mounts, not copied
	uid, gid    uint32 // the owner new files get
	alwaysChown bool

	linkMu sync.Mutex
	links  map[fileID]*seedLink
	held   int
}

// seedDir is a directory being copied. src and dst are opened by the
// worker that copies it, from its parent's fds, which stay open until
// every child is done.
type seedDir struct {
	parent   *seedDir
	name     string
	depth    int
	src, dst int
	st       unix.Stat_t
	// pending is 1 for the directory's own entries plus one per
	// subdirectory not finished.
	pending atomic.Int64
}

func (d *seedDir) path() string {
	var parts []string
	for ; d != nil && d.parent != nil; d = d.parent {
		parts = append(parts, d.name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/")
}

func (s *seeder) push(d *seedDir) {
	s.mu.Lock()
	s.stack = append(s.stack, d)
	s.mu.Unlock()
	s.cond.Signal()
}

// pop returns the most recently pushed directory (depth first keeps the
// fds held few), waiting for one; nil once the copy is complete.
func (s *seeder) pop() *seedDir {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.stack) == 0 && !s.done {
		s.cond.Wait()
	}
	if len(s.stack) == 0 {
		return nil
	}
	d := s.stack[len(s.stack)-1]
	s.stack = s.stack[:len(s.stack)-1]
	return d
}

func (s *seeder) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *seeder) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

func (s *seeder) work() {
	w := &seedWorker{s: s, data: make([]byte, 128<<10), dents: make([]byte, 32<<10)}
	for {
		d := s.pop()
		if d == nil {
			return
		}
		if !s.failed() {
			if err := w.copyDir(d); err != nil {
				s.fail(fmt.Errorf("%s: %w", d.path(), err))
			}
		}
		s.release(d)
	}
}

// release ends one pending unit of d; the last one applies d's metadata,
// closes its fds and releases its parent.
func (s *seeder) release(d *seedDir) {
	for d != nil && d.pending.Add(-1) == 0 {
		if d.dst >= 0 && !s.failed() {
			if err := s.dirMeta(d); err != nil {
				s.fail(fmt.Errorf("%s: %w", d.path(), err))
			}
		}
		if d.parent == nil {
			s.mu.Lock()
			s.done = true
			s.mu.Unlock()
			s.cond.Broadcast()
			return
		}
		closeFd(d.src)
		closeFd(d.dst)
		d = d.parent
	}
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

func (s *seeder) dirMeta(d *seedDir) error {
	var w seedWorker // directories finish rarely: no buffers kept for them
	if _, err := s.chown(d.dst, "", &d.st); err != nil {
		return err
	}
	if _, err := w.copyXattrs(d.src, d.dst); err != nil {
		return err
	}
	// Made 0700; the final mode may forbid what copying needed.
	if err := unix.Fchmod(d.dst, d.st.Mode&0o7777); err != nil {
		return err
	}
	return unix.UtimesNanoAt(d.dst, "", []unix.Timespec{d.st.Atim, d.st.Mtim}, unix.AT_EMPTY_PATH)
}

// chown gives fd (or the entry name of directory fd, not followed) st's
// owner unless it already has it, and reports whether it changed it.
func (s *seeder) chown(fd int, name string, st *unix.Stat_t) (bool, error) {
	if !s.alwaysChown && st.Uid == s.uid && st.Gid == s.gid {
		return false, nil
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	return true, unix.Fchownat(fd, name, int(st.Uid), int(st.Gid), flags)
}

// seedWorker holds one worker's buffers.
type seedWorker struct {
	s                  *seeder
	data, dents        []byte
	names, value, link []byte
}

// copyDir opens d (unless it is the top) and copies its entries: files
// here and now, subdirectories pushed for any worker to take.
func (w *seedWorker) copyDir(d *seedDir) error {
	if d.parent != nil {
		if d.depth > maxSeedDepth {
			return unix.ELOOP
		}
		var err error
		if d.src, err = unix.Openat(d.parent.src, d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Fstat(d.src, &d.st); err != nil {
			return err
		}
		if d.st.Dev != w.s.dev {
			return nil // a mount point: not the image's (release closes src)
		}
		if err := unix.Mkdirat(d.parent.dst, d.name, 0o700); err != nil {
			return err
		}
		if d.dst, err = unix.Openat(d.parent.dst, d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
	}
	for {
		n, err := unix.Getdents(d.src, w.dents)
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		for b := w.dents[:n]; len(b) > 0; {
			name, typ, rest, ok := parseDirent(b)
			if !ok {
				return unix.EIO
			}
			b = rest
			if name == "." || name == ".." {
				continue
			}
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				if err := unix.Fstatat(d.src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				typ = dtype(st.Mode)
			}
			if typ == unix.DT_DIR {
				child := &seedDir{parent: d, name: name, depth: d.depth + 1, src: -1, dst: -1}
				child.pending.Store(1)
				d.pending.Add(1)
				w.s.push(child)
				continue
			}
			if err := w.copyEntry(d, name, typ); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
}

// parseDirent splits the first linux_dirent64 off b.
func parseDirent(b []byte) (name string, typ uint8, rest []byte, ok bool) {
	const nameOff = int(unsafe.Offsetof(unix.Dirent{}.Name))
	if len(b) < nameOff {
		return "", 0, nil, false
	}
	reclen := int(*(*uint16)(unsafe.Pointer(&b[unsafe.Offsetof(unix.Dirent{}.Reclen)])))
	if reclen < nameOff || reclen > len(b) {
		return "", 0, nil, false
	}
	typ = b[unsafe.Offsetof(unix.Dirent{}.Type)]
	raw := b[nameOff:reclen]
	for i, c := range raw {
		if c == 0 {
			raw = raw[:i]
			break
		}
	}
	return string(raw), typ, b[reclen:], true
}

func dtype(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFLNK:
		return unix.DT_LNK
	}
	return unix.DT_UNKNOWN // devices, fifos, sockets: mknod
}

func (w *seedWorker) copyEntry(d *seedDir, name string, typ uint8) error {
	if typ == unix.DT_REG {
		return w.copyFile(d, name)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d.src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return w.copyFile(d, name)
	case unix.S_IFDIR:
		return unix.EAGAIN // a directory swapped in while reading: refuse
	case unix.S_IFLNK:
		target, err := w.readlink(d.src, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, d.dst, name); err != nil {
			return err
		}
	default: // devices, fifos, sockets, with their permissions (umask is 0)
		if err := unix.Mknodat(d.dst, name, st.Mode&^0o7000, int(st.Rdev)); err != nil {
			return err
		}
	}
	return w.entryMeta(d, name, &st)
}

// entryMeta gives a new symlink or node st's owner, xattrs, mode and times,
// by name in d's copy: none of these calls follows a symlink.
func (w *seedWorker) entryMeta(d *seedDir, name string, st *unix.Stat_t) error {
	if _, err := w.s.chown(d.dst, name, st); err != nil {
		return err
	}
	if _, err := w.copyXattrsAt(d, name); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mode&0o7000 != 0 {
		// Nodes are not opened (a fifo would block, a device is not ours
		// to open); fchmodat2 with AT_SYMLINK_NOFOLLOW, so that a name
		// swapped for a symlink meanwhile is not followed.
		if err := unix.Fchmodat(d.dst, name, st.Mode&0o7777, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return unix.UtimesNanoAt(d.dst, name, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// copyFile copies a regular file: content, owner, xattrs, mode, times; or,
// for a further link of an inode already copied, links to that copy.
func (w *seedWorker) copyFile(d *seedDir, name string) (retErr error) {
	src, err := unix.Openat(d.src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return unix.EAGAIN // the entry changed type while reading: refuse
	}
	var link *seedLink
	if st.Nlink > 1 {
		var first bool
		link, first = w.s.claimLink(&st)
		if !first {
			if w.s.linkTo(link, d.dst, name) {
				return nil
			}
			link = nil // copy it instead
		} else {
			defer func() { w.s.publishLink(link, retErr) }()
		}
	}
	dst, err := unix.Openat(d.dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, st.Mode&0o777)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(dst)
		}
	}()
	if st.Size > 0 {
		if err := w.copyData(dst, src, st.Size); err != nil {
			return err
		}
	}
	// Content first, then owner: writing drops file capabilities, and
	// chown drops setuid bits, so the mode comes after both.
	chowned, err := w.s.chown(dst, "", &st)
	if err != nil {
		return err
	}
	attrs, err := w.copyXattrs(src, dst)
	if err != nil {
		return err
	}
	if st.Mode&0o7000 != 0 || chowned || attrs {
		if err := unix.Fchmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
	}
	if err := unix.UtimesNanoAt(dst, "", []unix.Timespec{st.Atim, st.Mtim}, unix.AT_EMPTY_PATH); err != nil {
		return err
	}
	if link != nil && w.s.holdLink(link, dst) {
		keep = true
	}
	return nil
}

// copyData copies size bytes with read and write: the files seeded are
// mostly small, and copy_file_range from overlayfs to another filesystem
// is refused (EXDEV) or done by the same splice anyway.
func (w *seedWorker) copyData(dst, src int, size int64) error {
	buf := w.data
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
		for b := buf[:n]; len(b) > 0; {
			m, err := unix.Write(dst, b)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			b = b[m:]
		}
		size -= int64(n)
	}
	return nil
}

func (w *seedWorker) readlink(dir int, name string) (string, error) {
	if w.link == nil {
		w.link = make([]byte, 256)
	}
	for {
		n, err := unix.Readlinkat(dir, name, w.link)
		if err != nil {
			return "", err
		}
		if n < len(w.link) {
			return string(w.link[:n]), nil
		}
		w.link = make([]byte, 2*len(w.link))
	}
}

// fileID names an inode of the source.
type fileID struct{ dev, ino uint64 }

// seedLink is a source inode with more than one link: the first worker to
// meet it copies it and publishes an O_PATH-like fd of the copy (ready
// closes); the others link to that fd.
type seedLink struct {
	ready chan struct{}
	fd    int    // the copy, or -1: copy again
	left  uint64 // links still expected; the fd closes at 0
}

// claimLink returns the inode's entry and whether the caller is the first
// to meet it (and must then call publishLink).
func (s *seeder) claimLink(st *unix.Stat_t) (*seedLink, bool) {
	id := fileID{uint64(st.Dev), st.Ino}
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if l, ok := s.links[id]; ok {
		return l, false
	}
	l := &seedLink{ready: make(chan struct{}), fd: -1, left: uint64(st.Nlink) - 1}
	s.links[id] = l
	return l, true
}

// holdLink keeps fd as the copy later links point to, unless too many are
// held; it reports whether it kept fd.
func (s *seeder) holdLink(l *seedLink, fd int) bool {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.held >= maxHeldLinks {
		return false
	}
	s.held++
	l.fd = fd
	return true
}

// publishLink lets the workers waiting on l go on.
func (s *seeder) publishLink(l *seedLink, err error) {
	if err != nil {
		s.linkMu.Lock()
		if l.fd >= 0 {
			unix.Close(l.fd)
			l.fd = -1
			s.held--
		}
		s.linkMu.Unlock()
	}
	close(l.ready)
}

// linkTo waits for l's copy and links name in dir to it; false means the
// caller copies the file instead.
func (s *seeder) linkTo(l *seedLink, dir int, name string) bool {
	<-l.ready
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if l.fd < 0 {
		return false
	}
	// AT_EMPTY_PATH links the very inode of the fd; without
	// CAP_DAC_READ_SEARCH the /proc magic link does the same.
	err := unix.Linkat(l.fd, "", dir, name, unix.AT_EMPTY_PATH)
	if err == unix.EPERM || err == unix.ENOENT {
		err = unix.Linkat(unix.AT_FDCWD, fdPath(l.fd), dir, name, unix.AT_SYMLINK_FOLLOW)
	}
	if err != nil {
		return false
	}
	if l.left--; l.left == 0 {
		unix.Close(l.fd)
		l.fd = -1
		s.held--
	}
	return true
}

// closeLinks closes the copies kept for links that never came (they lead
// outside the copied tree).
func (s *seeder) closeLinks() {
	for _, l := range s.links {
		if l.fd >= 0 {
			unix.Close(l.fd)
			l.fd = -1
		}
	}
}

// copyXattrs copies the extended attributes of fd src to fd dst and
// reports whether there were any.
func (w *seedWorker) copyXattrs(src, dst int) (bool, error) {
	return w.xattrs(
		func(b []byte) (int, error) { return unix.Flistxattr(src, b) },
		func(n string, b []byte) (int, error) { return unix.Fgetxattr(src, n, b) },
		func(n string, v []byte) error { return unix.Fsetxattr(dst, n, v, 0) },
	)
}

// copyXattrsAt is copyXattrs for an entry that is not opened (a symlink
// or a node), by name under the directories' fds, not following it.
func (w *seedWorker) copyXattrsAt(d *seedDir, name string) (bool, error) {
	src, dst := fdPath(d.src)+"/"+name, fdPath(d.dst)+"/"+name
	return w.xattrs(
		func(b []byte) (int, error) { return unix.Llistxattr(src, b) },
		func(n string, b []byte) (int, error) { return unix.Lgetxattr(src, n, b) },
		func(n string, v []byte) error { return unix.Lsetxattr(dst, n, v, 0) },
	)
}

// xattrs copies every listed attribute. A filesystem without xattrs, and
// attributes the volume's filesystem or the kernel refuses outside the
// user namespace (trusted.*, security labels), are skipped: the copy is
// still the image's content.
func (w *seedWorker) xattrs(list func([]byte) (int, error), get func(string, []byte) (int, error), set func(string, []byte) error) (bool, error) {
	if w.names == nil {
		w.names = make([]byte, 1024)
	}
	var n int
	for {
		var err error
		n, err = list(w.names)
		if err == unix.ERANGE {
			w.names = make([]byte, 2*len(w.names))
			continue
		}
		if err == unix.ENOTSUP || err == unix.ENODATA {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		break
	}
	if n == 0 {
		return false, nil
	}
	copied := false
	for _, name := range strings.Split(string(w.names[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		if w.value == nil {
			w.value = make([]byte, 1024)
		}
		var v int
		for {
			var err error
			v, err = get(name, w.value)
			if err == unix.ERANGE {
				w.value = make([]byte, 2*len(w.value))
				continue
			}
			if err == unix.ENODATA {
				v = -1 // removed meanwhile
				break
			}
			if err != nil {
				return copied, fmt.Errorf("xattr %s: %w", name, err)
			}
			break
		}
		if v < 0 {
			continue
		}
		err := set(name, w.value[:v])
		if err != nil && !strings.HasPrefix(name, "user.") && (err == unix.EPERM || err == unix.ENOTSUP || err == unix.EACCES) {
			continue
		}
		if err != nil {
			return copied, fmt.Errorf("xattr %s: %w", name, err)
		}
		copied = true
	}
	return copied, nil
}
