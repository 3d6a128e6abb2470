package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Limits of a Linux path. Names beyond them cannot be created anyway; refusing
// them up front gives a clear error instead of ENAMETOOLONG half way through.
const (
	pathMax = 4096
	nameMax = 255
)

// Device numbers Linux can represent: 12 bits of major, 20 of minor.
const (
	maxDevMajor = 1<<12 - 1
	maxDevMinor = 1<<20 - 1
)

// maxID is the largest uid or gid accepted. (1<<32)-1 is the "-1" that
// chown(2) reads as "leave unchanged", so it cannot be an owner.
const maxID = 1<<32 - 2

// Whiteout names of the OCI image-spec.
const (
	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh."
	opaqueMarker       = ".wh..wh..opq"
)

// xattrPrefix is how PAX headers carry extended attributes.
const xattrPrefix = "SCHILY.xattr."

// Apply reads the uncompressed tar stream r (see [Decompress]) and
// materializes it under dir, which must exist. See [ApplyOptions] for the two
// ways whiteouts are handled.
//
// Every path is resolved inside dir: names are cleaned (a leading "/" or "./"
// is dropped), names that climb above dir with ".." are refused, and symlinks,
// whether in the layer or already in dir, are followed only as if dir were the
// root, so that an entry "a/f" under a symlink "a -> /etc" lands in dir/etc/f.
// The root entry ("./") may only be a directory. Whiteouts and opaque markers
// act only on a real directory of that path, never through a symlink (which
// hides nothing in an overlay either); in overlay mode their missing parents
// are created. Ownership (unless
// opts.NoSameOwner), permission bits including setuid, setgid and sticky,
// xattrs and mtimes are applied from the headers; directory mtimes are set
// last, after their content. Xattrs in the trusted.overlay. and user.overlay.
// namespaces are dropped, since overlayfs would obey them.
//
// Apply checks ctx between entries. On error the tree is left half applied and
// the caller should remove dir; the stats count what was done until then. A
// refused entry is reported as an [*EntryError] wrapping [ErrUnsafePath],
// [ErrBadWhiteout], [ErrBadLink], [ErrTooLarge] or [ErrBadHeader].
//
// Apply is the `tar -x` step of `docker pull`.
func Apply(ctx context.Context, dir string, r io.Reader, opts ApplyOptions) (ApplyStats, error) {
	var stats ApplyStats
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	a, err := newApplier(dir, opts)
	if err != nil {
		return stats, err
	}
	defer a.close()

	tr := tar.NewReader(r)
	last := "" // names the place of a header too broken to have a name
	for {
		if err := ctx.Err(); err != nil {
			return stats, fmt.Errorf("applying layer to %s: %w", dir, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return stats, fmt.Errorf("reading the tar header after entry %q (%d entries): %w: %w", last, stats.Entries, ErrBadHeader, err)
		}
		stats.Entries++
		last = hdr.Name
		if stats.Entries > opts.MaxEntries {
			return stats, &EntryError{Name: hdr.Name, Err: fmt.Errorf("%w: more than %d entries", ErrTooLarge, opts.MaxEntries)}
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			// Global PAX records carry nothing Apply uses (comments, and
			// defaults for fields every header then sets anyway).
			continue
		}
		if err := a.entry(hdr, tr, &stats); err != nil {
			return stats, &EntryError{Name: hdr.Name, Err: err}
		}
	}
	if err := a.finish(); err != nil {
		return stats, fmt.Errorf("applying layer to %s: %w", dir, err)
	}
	return stats, nil
}

// entry validates hdr and applies it.
func (a *applier) entry(hdr *tar.Header, content io.Reader, stats *ApplyStats) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if err := checkHeader(hdr); err != nil {
		return err
	}
	a.startEntry()
	dir, base := splitPath(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, dir, base)
	}
	if rel == "" && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: the root may only be a directory, not type %q", ErrUnsafePath, hdr.Typeflag)
	}
	a.markLayer(rel)

	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.mkdir(rel, dir, base, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		if hdr.Size > a.opts.MaxBytes-stats.Bytes {
			return fmt.Errorf("%w: %d bytes of content after %d exceed the limit of %d", ErrTooLarge, hdr.Size, stats.Bytes, a.opts.MaxBytes)
		}
		n, err := a.file(rel, dir, base, hdr, content)
		stats.Bytes += n
		return err
	case tar.TypeSymlink:
		return a.symlink(rel, dir, base, hdr)
	case tar.TypeLink:
		return a.hardlink(dir, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.mknod(rel, dir, base, hdr)
	default:
		return fmt.Errorf("%w: unsupported entry type %q", ErrBadHeader, hdr.Typeflag)
	}
}

// whiteout validates a ".wh." entry and applies it.
func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	if hdr.Typeflag != tar.TypeReg {
		return fmt.Errorf("%w: whiteout of type %q, not a regular file", ErrBadWhiteout, hdr.Typeflag)
	}
	if base == opaqueMarker {
		if a.opts.Overlay {
			return a.overlayOpaque(dir)
		}
		return a.flatOpaque(dir)
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return fmt.Errorf("%w: unknown whiteout meta entry %q", ErrBadWhiteout, base)
	}
	name := base[len(whiteoutPrefix):]
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrBadWhiteout, name)
	}
	if a.opts.Overlay {
		return a.overlayWhiteout(dir, name)
	}
	return a.flatWhiteout(dir, name)
}

// markLayer records rel and its ancestors as content of this layer, so that
// flat-mode whiteouts and opaque markers leave them alone.
func (a *applier) markLayer(rel string) {
	if a.layer == nil {
		return
	}
	for rel != "" {
		if _, ok := a.layer[rel]; ok {
			return
		}
		a.layer[rel] = struct{}{}
		rel, _ = splitPath(rel)
	}
}

// inLayer reports whether rel was created by this layer (or is an ancestor
// of something that was).
func (a *applier) inLayer(rel string) bool {
	_, ok := a.layer[rel]
	return ok
}

// cleanName turns a tar entry name into a path relative to the target,
// "" for the target itself. It refuses names that climb above the target,
// rather than clamping them, because a layer that tries is hostile or broken.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrBadHeader)
	}
	if len(name) > pathMax {
		return "", fmt.Errorf("%w: name of %d bytes is longer than PATH_MAX", ErrBadHeader, len(name))
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL byte in name", ErrBadHeader)
	}
	parts := make([]string, 0, strings.Count(name, "/")+1)
	for c := range strings.SplitSeq(name, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(parts) == 0 {
				return "", fmt.Errorf("%w: %q climbs above the root", ErrUnsafePath, name)
			}
			parts = parts[:len(parts)-1]
		default:
			if len(c) > nameMax {
				return "", fmt.Errorf("%w: component of %d bytes is longer than NAME_MAX", ErrBadHeader, len(c))
			}
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/"), nil
}

// splitPath splits a cleaned relative path into its parent ("" for the
// root) and its last component.
func splitPath(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// joinPath joins a cleaned relative directory and a name.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// checkHeader refuses header fields that cannot be applied faithfully.
func checkHeader(hdr *tar.Header) error {
	if hdr.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrBadHeader, hdr.Size)
	}
	if hdr.Uid < 0 || hdr.Uid > maxID || hdr.Gid < 0 || hdr.Gid > maxID {
		return fmt.Errorf("%w: owner %d:%d out of range", ErrBadHeader, hdr.Uid, hdr.Gid)
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > maxDevMajor || hdr.Devminor < 0 || hdr.Devminor > maxDevMinor {
			return fmt.Errorf("%w: device number %d:%d out of range", ErrBadHeader, hdr.Devmajor, hdr.Devminor)
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > pathMax || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("%w: invalid symlink target of %d bytes", ErrBadHeader, len(hdr.Linkname))
		}
	}
	return nil
}

// headerXattrs returns the xattrs of hdr that Apply sets, without the
// overlayfs ones: a layer must not be able to forge an overlay redirect,
// metacopy origin or opaque flag, which the kernel would obey.
func headerXattrs(hdr *tar.Header) map[string]string {
	var xs map[string]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok || name == "" || isOverlayXattr(name) {
			continue
		}
		if xs == nil {
			xs = make(map[string]string)
		}
		xs[name] = v
	}
	return xs
}

// isOverlayXattr reports whether name is an xattr overlayfs interprets, in
// either of its namespaces (user.overlay. is used with the userxattr option).
func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// entryTimes returns the atime and mtime to set for hdr. A missing atime
// takes the mtime, which is what tar(1) and Docker do.
func entryTimes(hdr *tar.Header) (atime, mtime time.Time) {
	mtime = hdr.ModTime
	atime = hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	return atime, mtime
}
