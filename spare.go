package berth

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sys/unix"
)

// Spare container directories. A directory is dear to remove on disks like
// this machine's (ext4 mounted with discard: a directory's block is
// discarded as it is freed): making a container's tree of four directories
// and removing it took ~0.5 ms here, renaming it in and out 20 µs. So a
// removed container's directory keeps its upper/, work/ and rootfs/,
// emptied, in <root>/spare/ (at most maxSpareDirs of them), and Run renames
// one into place instead of making a new one. A spare holds nothing but
// those three empty directories, owned by root, without extended
// attributes, and the files below: keepSpare makes it so and checks it
// before keeping one, and deletes the directory otherwise.
//
// A spare also keeps the container's small files (its log, emptied, and
// the files bound to /etc/hosts, /etc/hostname and /etc/resolv.conf, with
// up to a block of their data, which the next start writes over):
// truncating them costs less than unlinking them and making them again,
// and a new inode is dear here. Without a journal, ext4 looking for a free
// inode skips, one by one, those freed in the last minute or more
// (recently_deleted); a container's start made some twenty inodes, seven
// of them overlayfs's own at mount, and its removal freed them. Keeping
// the four took the removal a CLI command waits for in Close from 1.97 to
// 1.52 ms (medians of 8 interleaved runs). A file is kept only if nothing
// else has it open (the kernel grants a write lease only then: a Logs
// follower of the removed container must not read the next one's output),
// it has one link, and root's ownership, its mode and no extended
// attributes, inode flags or project beyond a new file's can be restored;
// otherwise it is deleted.

// maxSpareDirs bounds the spares of a root (each is four directory blocks
// on disk).
const maxSpareDirs = 64

// spareSubdirs are what a spare holds, each empty.
var spareSubdirs = []string{"upper", "work", "rootfs"}

// spareFiles are the files a spare may keep, with their modes and how much
// of their data may stay: what openLog and initproc's writeFiles make. The
// log is emptied. The /etc files, which the next container's start
// rewrites in place (writeFiles), keep a block's worth: emptying them
// freed a block each, which this machine's ext4 discards synchronously
// (~0.2 ms each), and rewriting an emptied file made its close start
// writeback (ext4's auto_da_alloc) on the start's critical path.
// The record files (writeRecord) keep theirs too: only state.json is ever
// read, and keepSpare renames that to a record spare's name.
var spareFiles = map[string]spareFile{
	logName:           {mode: 0o600},
	"etc_hostname":    {mode: 0o644, keep: 4096},
	"etc_hosts":       {mode: 0o644, keep: 4096},
	"etc_resolv.conf": {mode: 0o644, keep: 4096},
	nameFile:          {mode: 0o600, keep: 4096},
	recordSpares[0]:   {mode: 0o600, keep: 4096, scrub: true},
	recordSpares[1]:   {mode: 0o600, keep: 4096, scrub: true},
	endpointSpares[0]: {mode: 0o600, keep: 4096},
	endpointSpares[1]: {mode: 0o600, keep: 4096},
}

type spareFile struct {
	mode uint32
	keep int64 // a file larger than this is emptied
	// scrub: the data kept is overwritten with zeros (a record holds the
	// container's environment, secrets included; zeros written over a
	// block free nothing, so nothing is discarded)
	scrub bool
}

func (r *Runtime) spareDir() string { return filepath.Join(r.root, "spare") }

// takeSpare moves a spare directory to dir, which must not exist, and
// reports whether there was one. Programs sharing the root may race for a
// spare: the rename gives each to one of them.
func (r *Runtime) takeSpare(dir string) bool {
	f, err := os.Open(r.spareDir())
	if err != nil {
		return false
	}
	names, _ := f.Readdirnames(8)
	f.Close()
	for _, n := range names {
		if os.Rename(filepath.Join(r.spareDir(), n), dir) == nil {
			return true
		}
	}
	return false
}

// keepSpare empties dir, a removed container's directory already moved
// out of containers/, down to its three empty subdirectories and moves it
// to spare/. It reports false, leaving what remains of dir to the caller,
// when the spares are at their limit or dir cannot be made a spare.
func (r *Runtime) keepSpare(dir string) bool {
	if n, err := countNames(r.spareDir()); err != nil && !errors.Is(err, os.ErrNotExist) || n >= maxSpareDirs {
		return false
	}
	// The next container's start must not find this one's record.
	keepFile(filepath.Join(dir, recordName), keptIn(dir, recordSpares))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	kept := 0
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if slices.Contains(spareSubdirs, e.Name()) {
			if !e.IsDir() || !emptyDir(p) {
				return false
			}
			kept++
		} else if f, ok := spareFiles[e.Name()]; ok && e.Type().IsRegular() && bareFile(p, f) {
			continue
		} else if os.RemoveAll(p) != nil {
			return false
		}
	}
	ref, ok := inodeAttrs(r.containersDir())
	if kept != len(spareSubdirs) || !ok || !bareDir(dir, ref) {
		return false
	}
	for _, s := range spareSubdirs {
		if !bareDir(filepath.Join(dir, s), ref) {
			return false
		}
	}
	if err := os.MkdirAll(r.spareDir(), 0o700); err != nil {
		return false
	}
	var b [8]byte
	rand.Read(b[:])
	return os.Rename(dir, filepath.Join(r.spareDir(), hex.EncodeToString(b[:]))) == nil
}

// emptyDir deletes everything in dir and reports whether dir is then
// empty.
func emptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return false
	}
	for _, n := range names {
		if os.RemoveAll(filepath.Join(dir, n)) != nil {
			return false
		}
	}
	n, err := countNames(dir)
	return err == nil && n == 0
}

// countNames counts the entries of dir.
func countNames(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(64)
		n += len(names)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// bareDir gives the directory p (not a symlink) root's ownership, mode
// 0700 and no extended attributes, and reports whether it has them and
// the inode flags and project of a directory made fresh beside it (ref,
// those of containers/): a container can chown or chmod its root, set
// flags such as synchronous updates on it, and overlayfs marks the upper
// directory (trusted.overlay.uuid, .impure).
func bareDir(p string, ref dirAttrs) bool {
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	if a, ok := inodeAttrs(p); !ok || a != ref {
		return false
	}
	if unix.Lchown(p, 0, 0) != nil || unix.Chmod(p, 0o700) != nil {
		return false
	}
	names, err := xattrRead(func(b []byte) (int, error) { return unix.Llistxattr(p, b) })
	if err != nil {
		return false
	}
	for name := range strings.SplitSeq(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		if name != "" && unix.Lremovexattr(p, name) != nil {
			return false
		}
	}
	n, err := unix.Llistxattr(p, nil)
	return err == nil && n == 0
}

// dirAttrs are a directory's inode flags (chattr) and project ID.
type dirAttrs struct{ flags, project uint32 }

// fsIocFsgetxattr is FS_IOC_FSGETXATTR, _IOR('X', 31, struct fsxattr),
// which x/sys/unix does not define.
const fsIocFsgetxattr = 0x801c581f

// inodeAttrs reads the directory p's attributes; a filesystem without
// flags or projects has them all zero.
func inodeAttrs(p string) (dirAttrs, bool) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return dirAttrs{}, false
	}
	defer unix.Close(fd)
	var a dirAttrs
	if a.flags, err = unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err != nil && err != unix.ENOTTY {
		return dirAttrs{}, false
	}
	var fsx [28]byte // struct fsxattr: xflags, extsize, nextents, projid, cowextsize, pad
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFsgetxattr, uintptr(unsafe.Pointer(&fsx[0]))); errno == 0 {
		a.project = binary.NativeEndian.Uint32(fsx[12:])
	} else if errno != unix.ENOTTY {
		return dirAttrs{}, false
	}
	return a, true
}

// freshFileFlags are the inode flags (chattr) a file may have and still
// be kept: FS_EXTENT_FL, which ext4 gives every new file.
const freshFileFlags = 0x00080000

// bareFile empties the regular file p, unless it holds no more than
// f.keep bytes, in size and in blocks (a container can preallocate beyond
// the end of a file), and gives it root's ownership, f.mode and no extended
// attributes, and reports whether it could: only when no other open file
// description refers to it, it has one link and no inode flags beyond
// freshFileFlags nor a project.
func bareFile(p string, f spareFile) bool {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	// The kernel grants a write lease only to the file's sole opener.
	if !takeWriteLease(fd) {
		return false
	}
	defer unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return false
	}
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil && err != unix.ENOTTY || flags&^freshFileFlags != 0 {
		return false
	}
	var fsx [28]byte
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFsgetxattr, uintptr(unsafe.Pointer(&fsx[0]))); errno == 0 && binary.NativeEndian.Uint32(fsx[12:]) != 0 {
		return false
	}
	if st.Size > f.keep || st.Blocks*512 > f.keep {
		if unix.Ftruncate(fd, 0) != nil {
			return false
		}
	} else if f.scrub && st.Size > 0 {
		if n, err := unix.Pwrite(fd, make([]byte, st.Size), 0); err != nil || n != int(st.Size) {
			return false
		}
	}
	if unix.Fchown(fd, 0, 0) != nil || unix.Fchmod(fd, f.mode) != nil {
		return false
	}
	names, err := xattrRead(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		return false
	}
	for name := range strings.SplitSeq(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		if name != "" && unix.Fremovexattr(fd, name) != nil {
			return false
		}
	}
	n, err := unix.Flistxattr(fd, nil)
	return err == nil && n == 0
}

// WithLeaveSpares has the Runtime leave to the next Runtime opened on its
// root the part of a container's removal that frees none of the
// container's data: making a spare of the directory of a container that
// wrote nothing (a removal otherwise does it in the background, and Close
// waits for it). A container wrote nothing when its upper directory is
// empty and its log holds no block. The next New starts it beside the
// caller's work. For short-lived programs, whose exit should not wait for
// it; the example CLI uses it. A long-lived program gains nothing from it:
// its own removals no longer refill its spares. Default: off.
func WithLeaveSpares() Option {
	return optionFunc(func(r *Runtime) { r.leaveSpares = true })
}

// wroteNothing reports whether the container directory dir holds no data
// of its container's: an empty upper directory and a log with no block.
func wroteNothing(dir string) bool {
	var st unix.Stat_t
	n, err := countNames(filepath.Join(dir, "upper"))
	return err == nil && n == 0 &&
		unix.Lstat(filepath.Join(dir, logName), &st) == nil && st.Blocks == 0
}

// takeLeftSpares makes spares of the directories other Runtimes left
// (WithLeaveSpares), in the background. Each is first renamed to the name
// a removal gives, which one program only can do: a program that dies
// before it is done leaves it for the sweep of tmp/.
func (r *Runtime) takeLeftSpares() {
	tmpDir := filepath.Join(r.root, "tmp")
	entries, _ := os.ReadDir(tmpDir)
	for _, e := range entries {
		id, ok := strings.CutPrefix(e.Name(), store.LeftPrefix)
		if !ok || !validContainerID(id) {
			continue
		}
		tmp := filepath.Join(tmpDir, "rm-"+id)
		if os.Rename(filepath.Join(tmpDir, e.Name()), tmp) != nil {
			continue
		}
		r.inBackground(func() {
			if !r.keepSpare(tmp) {
				os.RemoveAll(tmp)
			}
		})
	}
}
