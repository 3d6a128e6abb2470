package berth

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// imageFS reads an image's merged filesystem straight from its layer
// snapshots, as overlayfs merges them (whiteouts and opaque directories
// respected), with no mount and no symlink followed on the host. The
// caller must call close.
type imageFS struct {
	d differ
}

// openImageFS opens img's filesystem; a nil img is an empty one.
func (r *Runtime) openImageFS(img *Image) (_ *imageFS, retErr error) {
	f := &imageFS{}
	defer func() {
		if retErr != nil {
			f.close()
		}
	}()
	if img == nil {
		return f, nil
	}
	for i := len(img.Layers) - 1; i >= 0; i-- {
		dir, err := r.snaps.FS(img.Layers[i].ChainID)
		if err != nil {
			return nil, err
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		f.d.lowers = append(f.d.lowers, fd)
	}
	return f, nil
}

func (f *imageFS) close() { f.d.close(); f.d.lowers = nil }

// lstat looks rel (slash-separated, relative to /) up without following a
// final symlink.
func (f *imageFS) lstat(rel string) (*unix.Stat_t, bool) {
	if rel == "" || rel == "." {
		return &unix.Stat_t{Mode: unix.S_IFDIR | 0o755}, true
	}
	return f.d.lowerStat(rel)
}

// open opens rel in the layer that holds it (the file lstat found), with
// flags; intermediate symlinks are not followed.
func (f *imageFS) open(rel string, flags int) (int, error) {
	st, ok := f.lstat(rel)
	if !ok {
		return -1, fmt.Errorf("%s: %w", rel, os.ErrNotExist)
	}
	dir, base := path.Split(rel)
	for _, l := range f.d.lowers {
		dfd, err := openBeneath(l, strings.TrimSuffix(dir, "/"))
		if err != nil {
			continue
		}
		var lst unix.Stat_t
		if unix.Fstatat(dfd, base, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil && lst.Dev == st.Dev && lst.Ino == st.Ino {
			if flags == -1 {
				return dfd, nil // the parent, for readlink
			}
			fd, err := unix.Openat(dfd, base, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			unix.Close(dfd)
			return fd, err
		}
		unix.Close(dfd)
	}
	return -1, fmt.Errorf("%s: %w", rel, os.ErrNotExist)
}

// readFile reads the regular file rel, up to limit bytes.
func (f *imageFS) readFile(rel string, limit int64) ([]byte, error) {
	fd, err := f.open(rel, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), rel)
	defer file.Close()
	return io.ReadAll(io.LimitReader(file, limit))
}

// readlink reads the symlink rel.
func (f *imageFS) readlink(rel string) (string, error) {
	dfd, err := f.open(rel, -1)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dfd, path.Base(rel), buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// resolve follows the symlinks of every component of rel (the last one
// too) inside the image's root, as the container would see the path, and
// returns the result relative to /. A path that does not exist resolves as
// far as it does.
func (f *imageFS) resolve(rel string) (string, error) {
	return scopedResolve(rel, func(p string) (string, bool, error) {
		st, ok := f.lstat(p)
		if !ok || st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return "", false, nil
		}
		target, err := f.readlink(p)
		return target, true, err
	})
}
