// Package archive moves OCI image layers between tar streams and directory
// trees, with hostile input in mind.
//
// A layer tar comes from a registry or a Dockerfile step and is untrusted: it
// can name paths outside the target ("../x", "/etc/passwd"), plant a symlink
// and then write through it, hardlink to host files, or decompress into
// terabytes. [Apply] resolves every path of every entry inside the target with
// openat2(RESOLVE_IN_ROOT), so no symlink, absolute or relative, is ever
// followed out of the target, and performs the final step of each entry with a
// *at system call on the already-confined parent directory. It refuses what it
// cannot confine with an [*EntryError] that wraps one of the sentinel errors
// below, and it stops at [ApplyOptions.MaxBytes] and [ApplyOptions.MaxEntries].
//
// [WriteOverlayDiff] goes the other way: it turns the upper directory of an
// overlay mount (a container's changes) into an OCI layer, translating
// overlayfs whiteouts and opaque directories into the ".wh." entries of the OCI
// image-spec. [WriteTree] writes a plain tree (docker export).
//
// Privileges: creating device nodes, changing ownership and setting trusted.*
// xattrs (overlay whiteouts and opaque markers) need root (CAP_MKNOD,
// CAP_CHOWN, CAP_SYS_ADMIN). Apply needs Linux 5.6 or later for openat2, and
// /proc mounted to set xattrs on symlinks, devices and fifos.
//
// Every function takes a context that bounds that one call; it is checked
// between tar entries, not inside the copy of one file's content.
package archive

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors returned (wrapped, usually inside an [*EntryError]) by
// [Apply]. Test for them with errors.Is.
var (
	// ErrUnsafePath means an entry's name or hardlink target would resolve
	// outside the target directory, or the entry would replace the target
	// directory itself with something that is not a directory.
	ErrUnsafePath = errors.New("path escapes the target directory")

	// ErrBadWhiteout means a ".wh." entry is malformed: an empty, "." or
	// ".." name, an unknown ".wh..wh." meta entry, or a whiteout that is not
	// a regular file.
	ErrBadWhiteout = errors.New("malformed whiteout")

	// ErrTooLarge means the layer exceeds ApplyOptions.MaxBytes or
	// ApplyOptions.MaxEntries; a decompression bomb ends here.
	ErrTooLarge = errors.New("layer too large")

	// ErrBadHeader means the tar stream or one of its headers is corrupt or
	// not acceptable: a bad checksum, a truncated stream, a negative size, an
	// empty or over-long name, a NUL byte, an unknown entry type, impossible
	// device numbers or ids.
	ErrBadHeader = errors.New("invalid tar header")

	// ErrBadLink means a hardlink entry names a target that does not exist
	// in the tree or is a directory.
	ErrBadLink = errors.New("invalid hardlink target")

	// ErrUnsupported means WriteOverlayDiff met overlayfs state it cannot
	// express as a layer: a redirected directory (redirect_dir=on) or a
	// metacopy-only file (metacopy=on). Mount with redirect_dir=off and
	// metacopy=off.
	ErrUnsupported = errors.New("unsupported overlay feature")

	// ErrPathTooLong means a tree being written out (a layer's diff, an
	// export, a copy) nests deeper than a path of pathMax bytes: Apply
	// refuses such names, and every level a walk descends holds a
	// directory fd, which a process in a container nesting directories
	// without end would otherwise exhaust.
	ErrPathTooLong = errors.New("path too long")
)

// CheckDepth returns ErrPathTooLong, naming the start of rel, when a walk
// at rel has gone deeper than pathMax (Linux's PATH_MAX, the longest name
// Apply accepts).
func CheckDepth(rel string) error {
	if len(rel) <= pathMax {
		return nil
	}
	return fmt.Errorf("%w: %q... is longer than %d bytes", ErrPathTooLong, rel[:64], pathMax)
}

// EntryError names the tar entry that Apply refused or failed on. Err is the
// cause, usually wrapping one of the sentinel errors of this package.
type EntryError struct {
	// Name is the entry's name exactly as it appears in the tar header.
	Name string
	// Err is the reason.
	Err error
}

// Error returns `layer entry "NAME": REASON`.
func (e *EntryError) Error() string {
	return fmt.Sprintf("layer entry %q: %v", e.Name, e.Err)
}

// Unwrap returns e.Err so that errors.Is finds the sentinel inside.
func (e *EntryError) Unwrap() error { return e.Err }

// Defaults for the zero values of ApplyOptions.
const (
	// DefaultMaxBytes is the content limit used when ApplyOptions.MaxBytes
	// is zero: 64 GiB.
	DefaultMaxBytes int64 = 64 << 30
	// DefaultMaxEntries is the entry limit used when
	// ApplyOptions.MaxEntries is zero: 4 Mi entries.
	DefaultMaxEntries = 4 << 20
)

// ApplyOptions tunes Apply. The zero value applies onto a flat tree, with
// ownership from the headers and the default limits.
type ApplyOptions struct {
	// Overlay, when true, means the target is an empty per-layer directory
	// that will become an overlayfs lower layer: a whiteout entry ".wh.NAME"
	// becomes a 0:0 character device NAME, and an opaque marker
	// ".wh..wh..opq" sets the xattr trusted.overlay.opaque=y on its
	// directory, which is how containerd's and Docker's overlay drivers store
	// layers.
	//
	// When false, the target is a flat tree and the layer is applied on top
	// of it, as the OCI image-spec describes: ".wh.NAME" removes NAME
	// recursively, and ".wh..wh..opq" removes every child of its directory
	// that is not itself part of this layer. Whiteouts apply to lower content
	// only; entries of the same layer are kept whatever their order in the
	// tar.
	Overlay bool

	// MaxBytes bounds the total logical size of file content written (the
	// full size of sparse files counts). Zero means DefaultMaxBytes.
	MaxBytes int64

	// MaxEntries bounds the number of tar headers read. Zero means
	// DefaultMaxEntries.
	MaxEntries int

	// NoSameOwner skips changing ownership to the header's uid and gid, so
	// that Apply works as a user without CAP_CHOWN; files are then owned by
	// the caller. The default is to chown.
	NoSameOwner bool
}

// ApplyStats reports what Apply did, also when it fails part way.
type ApplyStats struct {
	// Entries is the number of tar headers read.
	Entries int
	// Bytes is the logical size of file content written.
	Bytes int64
}

// DiffOptions tunes WriteOverlayDiff and WriteTree. The zero value keeps
// every mtime as found, truncated to the second.
type DiffOptions struct {
	// SourceDateEpoch, if non-nil, clamps every mtime to at most that time,
	// so that a rebuild of the same content yields the same layer digest
	// (the SOURCE_DATE_EPOCH convention of reproducible builds).
	SourceDateEpoch *time.Time
}
