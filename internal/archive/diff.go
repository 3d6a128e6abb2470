package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WriteOverlayDiff writes the content of the overlayfs upper directory upper
// to w as an OCI layer tar, and returns its diffID ("sha256:" and the hex
// digest of the uncompressed tar bytes, the form image configs list in
// rootfs.diff_ids) and its size in bytes.
//
// Overlayfs state becomes OCI whiteouts: a 0:0 character device NAME becomes
// an empty regular file ".wh.NAME", and a directory with the xattr
// trusted.overlay.opaque=y (or user.overlay.opaque=y, from a mount with the
// userxattr option) is written followed by ".wh..wh..opq" and then its
// content. Files sharing an inode become tar hardlinks to the first of them
// in path order. Ownership, permission bits (setuid, setgid and sticky
// included), device numbers, symlink targets and xattrs are kept, except the
// overlay xattrs, which mean nothing outside the mount. Mtimes are kept to the
// second, as Docker and containerd do, clamped by opts.SourceDateEpoch.
// Sockets are skipped. Entries are written depth first with the names of each
// directory sorted, so the same tree always yields the same bytes.
//
// The upper directory must not be changing (pause or stop the container, or
// unmount the overlay): a file that changes size while it is read fails the
// call. Redirected directories (redirect_dir=on) and metacopy files
// (metacopy=on) keep part of their state in the lower layers and fail with
// [ErrUnsupported]; mount with redirect_dir=off,metacopy=off. Symlinks in
// upper are never followed. Reading trusted.* xattrs needs CAP_SYS_ADMIN.
//
// WriteOverlayDiff is the layer-making step of `docker commit`.
func WriteOverlayDiff(ctx context.Context, upper string, w io.Writer, opts DiffOptions) (diffID string, size int64, err error) {
	return writeTar(ctx, upper, w, opts, true)
}

// WriteTree writes the directory tree dir to w as a tar, with the fidelity
// of [WriteOverlayDiff] but no whiteout translation: character devices are
// written as devices and opaque xattrs are dropped like every overlay xattr.
// It returns the diffID and size of the tar. It is what `docker export`
// writes, and it turns a flat root into a single layer (`docker import`).
func WriteTree(ctx context.Context, dir string, w io.Writer, opts DiffOptions) (diffID string, size int64, err error) {
	return writeTar(ctx, dir, w, opts, false)
}

func writeTar(ctx context.Context, dir string, w io.Writer, opts DiffOptions, overlay bool) (string, int64, error) {
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", 0, fmt.Errorf("opening %s: %w", dir, err)
	}
	defer unix.Close(root)

	digest := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, digest)}
	bw := bufio.NewWriterSize(cw, CopyBufSize)
	t := &treeWriter{
		ctx:     ctx,
		opts:    opts,
		overlay: overlay,
		tw:      tar.NewWriter(bw),
		links:   make(map[fileID]string),
		buf:     make([]byte, CopyBufSize),
	}
	if err := t.root(root); err != nil {
		return "", cw.n, fmt.Errorf("writing layer from %s: %w", dir, err)
	}
	if err := t.walk(root, ""); err != nil {
		return "", cw.n, fmt.Errorf("writing layer from %s: %w", dir, err)
	}
	if err := t.tw.Close(); err != nil {
		return "", cw.n, fmt.Errorf("writing layer from %s: %w", dir, err)
	}
	if err := bw.Flush(); err != nil {
		return "", cw.n, fmt.Errorf("writing layer from %s: %w", dir, err)
	}
	return "sha256:" + hex.EncodeToString(digest.Sum(nil)), cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fileID identifies an inode, to find hardlinks.
type fileID struct{ dev, ino uint64 }

type treeWriter struct {
	ctx     context.Context
	opts    DiffOptions
	overlay bool
	tw      *tar.Writer
	// links maps inodes with more than one link to the name they were
	// first written under.
	links map[fileID]string
	buf   []byte
}

// child is one directory entry, with the name it gets in the tar.
type child struct {
	name string // on disk
	out  string // in the tar: name, or ".wh."+name for a whiteout
	st   unix.Stat_t
}

// root handles an opaque upper root, which overlayfs can produce when the
// upper directory was itself made from a layer with an opaque root.
func (t *treeWriter) root(fd int) error {
	if !t.overlay {
		return nil
	}
	xs, err := fdXattrs(fd)
	if err != nil {
		return err
	}
	if !isOpaque(xs) {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	return t.tw.WriteHeader(t.marker(opaqueMarker, &st))
}

// walk writes the entries below the directory fd, whose path in the tar
// is rel.
func (t *treeWriter) walk(fd int, rel string) error {
	if err := CheckDepth(rel); err != nil {
		return err
	}
	names, err := readNames(fd)
	if err != nil {
		return fmt.Errorf("listing %q: %w", rel, err)
	}
	children := make([]child, 0, len(names))
	for _, n := range names {
		c := child{name: n, out: n}
		if err := unix.Fstatat(fd, n, &c.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %q: %w", joinPath(rel, n), err)
		}
		if t.isWhiteout(&c.st) {
			c.out = whiteoutPrefix + n
		}
		children = append(children, c)
	}
	slices.SortFunc(children, func(a, b child) int { return strings.Compare(a.out, b.out) })

	for i := range children {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		if err := t.entry(fd, rel, &children[i]); err != nil {
			return err
		}
	}
	return nil
}

func (t *treeWriter) isWhiteout(st *unix.Stat_t) bool {
	return t.overlay && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func (t *treeWriter) entry(pfd int, rel string, c *child) error {
	p := joinPath(rel, c.out)
	st := &c.st
	if t.isWhiteout(st) {
		return t.tw.WriteHeader(t.marker(p, st))
	}
	hdr := &tar.Header{
		Name:    p,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: t.mtime(st),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return t.dir(pfd, c, hdr)
	case unix.S_IFREG:
		return t.file(pfd, c, hdr)
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		target, err := readlinkat(pfd, c.name)
		if err != nil {
			return fmt.Errorf("reading symlink %q: %w", p, err)
		}
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // A socket is only meaningful to the process that bound it.
	}
	if t.hardlink(st, hdr) {
		return t.tw.WriteHeader(hdr)
	}
	xs, err := pathXattrs(procPath(pfd, c.name))
	if err != nil {
		return fmt.Errorf("reading xattrs of %q: %w", p, err)
	}
	setPAXXattrs(hdr, xs)
	return t.tw.WriteHeader(hdr)
}

func (t *treeWriter) dir(pfd int, c *child, hdr *tar.Header) error {
	fd, err := unix.Openat(pfd, c.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", hdr.Name, err)
	}
	defer unix.Close(fd)
	xs, err := fdXattrs(fd)
	if err != nil {
		return fmt.Errorf("reading xattrs of %q: %w", hdr.Name, err)
	}
	if t.overlay {
		if _, ok := overlayXattr(xs, "redirect"); ok {
			return fmt.Errorf("%w: directory %q is a redirect (a renamed lower directory)", ErrUnsupported, hdr.Name)
		}
	}
	rel := hdr.Name
	hdr.Typeflag = tar.TypeDir
	hdr.Name += "/"
	setPAXXattrs(hdr, xs)
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if t.overlay && isOpaque(xs) {
		if err := t.tw.WriteHeader(t.marker(rel+"/"+opaqueMarker, &c.st)); err != nil {
			return err
		}
	}
	return t.walk(fd, rel)
}

func (t *treeWriter) file(pfd int, c *child, hdr *tar.Header) error {
	hdr.Typeflag = tar.TypeReg
	if t.hardlink(&c.st, hdr) {
		return t.tw.WriteHeader(hdr)
	}
	fd, err := unix.Openat(pfd, c.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %q: %w", hdr.Name, err)
	}
	if st.Ino != c.st.Ino || st.Dev != c.st.Dev {
		return fmt.Errorf("%q was replaced while being read; is the container still running?", hdr.Name)
	}
	xs, err := fdXattrs(fd)
	if err != nil {
		return fmt.Errorf("reading xattrs of %q: %w", hdr.Name, err)
	}
	if t.overlay {
		if _, ok := overlayXattr(xs, "metacopy"); ok {
			return fmt.Errorf("%w: %q is a metacopy file whose data is in a lower layer", ErrUnsupported, hdr.Name)
		}
	}
	setPAXXattrs(hdr, xs)
	hdr.Size = st.Size
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(t.tw, io.LimitReader(f, st.Size), t.buf)
	if err != nil {
		return fmt.Errorf("reading %q: %w", hdr.Name, err)
	}
	if n != st.Size {
		return fmt.Errorf("%q shrank from %d to %d bytes while being read; is the container still running?", hdr.Name, st.Size, n)
	}
	return nil
}

// hardlink turns hdr into a link to an earlier name of the same inode and
// reports whether it did; otherwise it remembers this name for later links.
func (t *treeWriter) hardlink(st *unix.Stat_t, hdr *tar.Header) bool {
	if st.Nlink <= 1 {
		return false
	}
	id := fileID{dev: st.Dev, ino: st.Ino}
	if first, ok := t.links[id]; ok {
		hdr.Typeflag = tar.TypeLink
		hdr.Linkname = first
		hdr.Size = 0
		hdr.PAXRecords = nil
		return true
	}
	t.links[id] = hdr.Name
	return false
}

// marker returns the header of a whiteout or opaque marker file.
func (t *treeWriter) marker(name string, st *unix.Stat_t) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: t.mtime(st)}
}

func (t *treeWriter) mtime(st *unix.Stat_t) time.Time {
	mt := time.Unix(st.Mtim.Sec, 0)
	if e := t.opts.SourceDateEpoch; e != nil && mt.After(*e) {
		mt = e.Truncate(time.Second)
	}
	return mt
}

func isOpaque(xs map[string]string) bool {
	v, _ := overlayXattr(xs, "opaque")
	return v == "y"
}

// overlayXattr looks up an overlayfs xattr in both of its namespaces.
func overlayXattr(xs map[string]string, name string) (string, bool) {
	if v, ok := xs["trusted.overlay."+name]; ok {
		return v, true
	}
	v, ok := xs["user.overlay."+name]
	return v, ok
}

// setPAXXattrs records xs in hdr, without the overlay ones.
func setPAXXattrs(hdr *tar.Header, xs map[string]string) {
	for k, v := range xs {
		if isOverlayXattr(k) {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords[xattrPrefix+k] = v
	}
}

func readlinkat(fd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// fdXattrs reads all xattrs of an open file or directory.
func fdXattrs(fd int) (map[string]string, error) {
	return readXattrs(
		func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(k string, b []byte) (int, error) { return unix.Fgetxattr(fd, k, b) },
	)
}

// pathXattrs reads all xattrs of path without following a final symlink.
func pathXattrs(path string) (map[string]string, error) {
	return readXattrs(
		func(b []byte) (int, error) { return unix.Llistxattr(path, b) },
		func(k string, b []byte) (int, error) { return unix.Lgetxattr(path, k, b) },
	)
}

func readXattrs(list func([]byte) (int, error), get func(string, []byte) (int, error)) (map[string]string, error) {
	names, err := growRead(list)
	if err != nil || len(names) == 0 {
		if err == unix.ENOTSUP {
			err = nil
		}
		return nil, err
	}
	xs := make(map[string]string)
	for k := range strings.SplitSeq(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		if k == "" {
			continue
		}
		v, err := growRead(func(b []byte) (int, error) { return get(k, b) })
		if err == unix.ENODATA {
			continue // Removed since listed.
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s: %w", k, err)
		}
		xs[k] = string(v)
	}
	return xs, nil
}

// growRead calls an xattr syscall with a buffer large enough for its
// answer, retrying when the value grew in between (ERANGE).
func growRead(call func([]byte) (int, error)) ([]byte, error) {
	for range 8 {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.ERANGE
}
