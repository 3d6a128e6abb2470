package initproc

import (
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Docker's masked and read-only paths (moby oci/defaults.go, with
// /proc/interrupts as docker 28 masks it). Masked files get /dev/null bound
// over them, masked directories an empty read-only tmpfs.
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// Every path inside the container is resolved with openat2 against an fd of
// the new root: RESOLVE_IN_ROOT makes "..", absolute symlinks and absolute
// paths stay inside it, RESOLVE_NO_MAGICLINKS refuses /proc/*/fd tricks. The
// resulting O_PATH fd is then the mount target by its /proc/self/fd path, so
// the image cannot swap a symlink in between resolving and mounting.
const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// fdPath names fd through /proc/thread-self, which is right for a thread
// with a private fd table (a direct start) as well as for a process.
func fdPath(fd int) string { return "/proc/thread-self/fd/" + strconv.Itoa(fd) }

func relPath(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

func openIn(root int, p string, flags int, resolve uint64) (int, error) {
	for {
		fd, err := unix.Openat2(root, relPath(p), &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: resolveInRoot | resolve,
		})
		if err == unix.EAGAIN || err == unix.EINTR {
			continue // openat2 asks for a retry when a rename raced the lookup
		}
		return fd, err
	}
}

// mkdirIn makes directory p and its parents inside root (mode 0755, owned by
// root) and returns an O_PATH fd of it.
func mkdirIn(root int, p string, resolve uint64) (int, error) {
	fd, err := openIn(root, p, unix.O_PATH|unix.O_DIRECTORY, resolve)
	if err != unix.ENOENT {
		return fd, err
	}
	cur := "."
	for _, c := range strings.Split(relPath(p), "/") {
		nextPath := path.Join(cur, c)
		fd, err := openIn(root, nextPath, unix.O_PATH|unix.O_DIRECTORY, resolve)
		if err == unix.ENOENT {
			parent, perr := openIn(root, cur, unix.O_PATH|unix.O_DIRECTORY, resolve)
			if perr != nil {
				return -1, perr
			}
			err = unix.Mkdirat(parent, c, 0o755)
			unix.Close(parent)
			if err != nil && err != unix.EEXIST {
				return -1, err
			}
			fd, err = openIn(root, nextPath, unix.O_PATH|unix.O_DIRECTORY, resolve)
		}
		if err != nil {
			return -1, err
		}
		unix.Close(fd)
		cur = nextPath
	}
	return openIn(root, p, unix.O_PATH|unix.O_DIRECTORY, resolve)
}

// mkfileIn makes an empty file p (and its parent directories) inside root if
// it is missing and returns an O_PATH fd of it, a target for bind-mounting a
// file. A dangling image symlink at p is followed, inside root, and its target
// created, as runc does with securejoin.
func mkfileIn(root int, p string) (int, error) {
	fd, err := openIn(root, p, unix.O_PATH, 0)
	if err != unix.ENOENT {
		return fd, err
	}
	create := func() error {
		for {
			f, err := unix.Openat2(root, relPath(p), &unix.OpenHow{
				Flags:   unix.O_CREAT | unix.O_WRONLY | unix.O_CLOEXEC,
				Mode:    0o644,
				Resolve: resolveInRoot,
			})
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err == nil {
				unix.Close(f)
			}
			return err
		}
	}
	if err := create(); err == unix.ENOENT {
		parent, err := mkdirIn(root, path.Dir("/"+relPath(p)), 0)
		if err != nil {
			return -1, err
		}
		unix.Close(parent)
		if err := create(); err != nil {
			return -1, err
		}
	} else if err != nil {
		return -1, err
	}
	return openIn(root, p, unix.O_PATH, 0)
}

func mountOn(source string, target int, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, fdPath(target), fstype, flags, data)
}

// moveDetached attaches the detached mount the path names (a
// /proc/PID/fd/N of CloneShm's file, berth's) on target.
func moveDetached(path string, target int) error {
	src, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	return unix.MoveMount(src, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// setupRootfs mounts the container's root filesystem and pivots into it.
// console is the fd of the terminal to bind at /dev/console, or -1. For a
// direct start /proc stays an empty directory, to be mounted once the
// container's pid namespace exists, and the exec helper is written at
// helperPath in the fresh /dev, the one path the fork can exec it through.
func setupRootfs(cfg *stageConfig, console int, direct bool) error {
	s := &cfg.Spec
	// Nothing we mount may propagate back to the host (its mount table must
	// not change), and host mount events must not reach the container.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return stepError("make / rprivate", "/", err)
	}
	if err := mountOverlay(s); err != nil {
		return err
	}
	root, err := unix.Open(s.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open rootfs", s.Rootfs, err)
	}
	defer unix.Close(root)

	// proc, dev and sys must be real directories in the image: mounting procfs
	// through an image symlink (/proc → /) would shadow whatever it points at,
	// so like runc we refuse rather than follow.
	if direct {
		fd, err := mountpoint(root, "/proc", "proc")
		if err != nil {
			return err
		}
		unix.Close(fd)
	} else if err := mountFresh(root, "/proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := setupDev(root, console, s); err != nil {
		return err
	}
	if s.Init {
		if err := writeInit(root); err != nil {
			return err
		}
	}
	var helper unix.Stat_t
	if direct {
		if helper, err = writeHelper(root); err != nil {
			return err
		}
	}
	sysFlags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if s.Privileged {
		sysFlags &^= unix.MS_RDONLY
	}
	if err := mountFresh(root, "/sys", "sysfs", "sysfs", sysFlags, ""); err != nil {
		return err
	}
	if err := cgroupSkeleton(root, s); err != nil {
		return err
	}
	if !direct {
		// In the container's cgroup namespace already, and before the
		// user's mounts, which may cover these (a direct start's thread
		// mounts them once the process is forked, in replaceProc, and
		// leaves containers with mounts there to the child stage).
		if err := mountCgroups(s, s.Rootfs); err != nil {
			return err
		}
	}
	if cfg.lateFiles != nil {
		if cfg.Files, err = cfg.lateFiles(); err != nil {
			return err
		}
	}
	for _, f := range cfg.Files {
		if err := bindFile(root, f.Source, f.Dest); err != nil {
			return err
		}
	}
	for _, m := range s.Mounts {
		if err := mountUser(root, m); err != nil {
			return err
		}
	}
	masks := ""
	if direct {
		masks = "/sys/"
		if err := checkHelper(root, helper); err != nil {
			return err
		}
	}
	if !s.Privileged {
		if err := maskPaths(root, masks); err != nil {
			return err
		}
	}
	if s.Dir != "" {
		fd, err := mkdirIn(root, s.Dir, 0)
		if err != nil {
			return stepError("create working directory", s.Dir, err)
		}
		unix.Close(fd)
	}
	if err := pivotRoot(root); err != nil {
		return err
	}
	if s.ReadonlyRootfs {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return stepError("remount root read-only", "/", err)
		}
	}
	return nil
}

func mountOverlay(s *Spec) error {
	if s.Upper == "" && len(s.Lower) == 1 {
		// overlayfs wants two layers when there is no upper; one read-only
		// layer is just a read-only bind.
		if err := unix.Mount(s.Lower[0], s.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return stepError("bind rootfs", s.Lower[0], err)
		}
		if err := unix.Mount("", s.Rootfs, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return stepError("remount rootfs read-only", s.Rootfs, err)
		}
		return nil
	}
	data := overlayData(s)
	if !OverlayFits(s) {
		// mount(2) takes one page of options; deep images need the fsconfig
		// API (lowerdir+ per layer) or shorter snapshot paths.
		return &SetupError{Step: "mount overlay", Path: s.Rootfs, Msg: "overlay options exceed one page (" + strconv.Itoa(len(data)) + " bytes): too many layers", Errno: unix.E2BIG}
	}
	err := unix.Mount("overlay", s.Rootfs, "overlay", 0, data)
	if err == unix.EINVAL && s.Volatile {
		// A kernel before 5.10 has no volatile mounts.
		data = strings.TrimSuffix(data, volatileOption)
		err = unix.Mount("overlay", s.Rootfs, "overlay", 0, data)
	}
	if err != nil {
		return stepError("mount overlay", s.Rootfs, err)
	}
	return nil
}

const volatileOption = ",volatile"

// overlayData is the option string of s's overlay mount.
func overlayData(s *Spec) string {
	data := "lowerdir=" + strings.Join(s.Lower, ":")
	if s.Upper != "" {
		// Renames and metadata-only copy-ups must stay plain copy-ups in the
		// upper dir, or Commit could not turn it into a layer.
		data += ",upperdir=" + s.Upper + ",workdir=" + s.Work + ",redirect_dir=off,metacopy=off"
		if s.Volatile {
			data += volatileOption
		}
	}
	return data
}

// OverlayFits reports whether s's overlay options fit the one page
// mount(2) takes.
func OverlayFits(s *Spec) bool { return len(overlayData(s)) < os.Getpagesize() }

// mountpoint makes dir inside root, refusing symlinks anywhere on the way,
// and returns an O_PATH fd of it, for mounting fstype there.
func mountpoint(root int, dir, fstype string) (int, error) {
	fd, err := mkdirIn(root, dir, unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		if err == unix.ELOOP {
			return -1, &SetupError{Step: "mount " + fstype, Path: dir, Errno: unix.ELOOP, Msg: "the image has a symlink there; " + fstype + " must be mounted on a plain directory"}
		}
		return -1, stepError("mount "+fstype, dir, err)
	}
	return fd, nil
}

// helperPath is where a direct start writes the exec helper, in the
// container's own fresh /dev tmpfs, until the helper runs.
const helperPath = "/dev/.berth-exec"

// InitPath is where a container with Spec.Init has the init it runs as
// PID 1: in its fresh /dev, like the exec helper, so that nothing of it is
// in the container's filesystem (diff, commit, export).
const InitPath = "/dev/.berth-init"

// DevEntry reports whether p, a clean absolute path, is or is below one
// of the entries of a container's fresh /dev that a device node of
// Spec.Devices cannot replace: setupDev's directories, mounts and links,
// the console, the exec helper and the init. (Its default nodes, such as
// /dev/null, it replaces.)
func DevEntry(p string) bool {
	rel, ok := strings.CutPrefix(p, "/dev/")
	if !ok {
		return false
	}
	first, _, _ := strings.Cut(rel, "/")
	switch first {
	case "pts", "shm", "mqueue", "console", path.Base(helperPath), path.Base(InitPath): // setupDev's mounts, and files
		return true
	}
	return slices.ContainsFunc(devLinks, func(l [2]string) bool { return l[1] == first })
}

// devLinks are the symlinks of a container's fresh /dev: target, name.
var devLinks = [][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}, {"/proc/kcore", "core"},
}

// initArgv is the init's argv for a command at path (resolved) with
// args: the init runs argv[1] with argv[2:] as its child.
func initArgv(path string, args []string) []string {
	return append([]string{InitPath, path}, args...)
}

// initELF is the init program (nil where there is none).
var initELF = sync.OnceValue(initImage)

// writeInit writes the init program into the container's fresh /dev,
// read-only and executable for everyone.
func writeInit(root int) error {
	img := initELF()
	if img == nil {
		return &SetupError{Step: "write the init", Path: InitPath, Msg: "the init exists for amd64 only"}
	}
	_, err := writeDevFile(root, InitPath, img, 0o555)
	return err
}

// writeHelper writes the exec helper (execute-only) at helperPath inside
// root and returns its identity for checkHelper. A copy, not a bind of the
// sealed memfd: a file of a kernel-internal mount cannot be bound.
func writeHelper(root int) (unix.Stat_t, error) {
	return writeDevFile(root, helperPath, helperELF(), 0o111)
}

// writeDevFile writes a new file p, with mode, in the fresh /dev inside
// root, and returns its identity.
func writeDevFile(root int, p string, content []byte, mode uint32) (unix.Stat_t, error) {
	var st unix.Stat_t
	dev, err := openIn(root, "/dev", unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		return st, stepError("open /dev", "/dev", err)
	}
	defer unix.Close(dev)
	f, err := unix.Openat(dev, path.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode)
	if err != nil {
		return st, stepError("create", p, err)
	}
	_, err = unix.Write(f, content)
	if err == nil {
		err = unix.Fstat(f, &st)
	}
	if cerr := unix.Close(f); err == nil {
		err = cerr
	}
	if err != nil {
		return st, stepError("write", p, err)
	}
	return st, nil
}

// checkHelper makes sure helperPath still names the helper writeHelper
// wrote, once the user's mounts are in place: the fork executes that path
// with every capability of the container's bounding set and before its
// seccomp filter, so a bind or volume at /dev (or at the helper's path,
// or reaching it through a symlink of the image) would have it run a file
// of the user's instead. The fresh /dev is this thread's alone and no
// process of the container exists yet, so nothing can change the file
// between this check and the exec. DirectSupported sends mounts at /dev
// to the child stage; this catches the ones a symlink leads there.
func checkHelper(root int, want unix.Stat_t) error {
	fd, err := openIn(root, helperPath, unix.O_PATH|unix.O_NOFOLLOW, unix.RESOLVE_NO_SYMLINKS)
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
	}
	if err != nil || st.Dev != want.Dev || st.Ino != want.Ino {
		return &SetupError{Step: "keep the exec helper", Path: helperPath,
			Msg: "a mount of the container covers /dev or the exec helper in it"}
	}
	return nil
}

// mountFresh mounts a new filesystem instance on dir inside root, refusing
// symlinks anywhere on the way.
func mountFresh(root int, dir, source, fstype string, flags uintptr, data string) error {
	fd, err := mountpoint(root, dir, fstype)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := mountOn(source, fd, fstype, flags, data); err != nil {
		return stepError("mount "+fstype, dir, err)
	}
	return nil
}

type devNode struct {
	name         string
	major, minor uint32
}

// The devices Docker gives every container (runc's default devices).
var devNodes = []devNode{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
	{"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// setupDev mounts a fresh tmpfs on /dev and fills it. Nothing from the image's
// /dev is visible, so nothing there can redirect a device (say /dev/null →
// /etc/passwd). /dev/shm has s.ShmSize bytes, docker's 64 MiB for 0, or is
// what s.Shm says; the nodes of s.Devices are made last.
func setupDev(root int, console int, s *Spec) error {
	shmSize := s.ShmSize
	if shmSize <= 0 {
		shmSize = 64 << 20
	}
	if err := mountFresh(root, "/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	// Re-resolve: the fd from before the mount names the covered directory.
	dev, err := openIn(root, "/dev", unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		return stepError("open /dev", "/dev", err)
	}
	defer unix.Close(dev)
	for _, n := range devNodes {
		if err := unix.Mknodat(dev, n.name, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return stepError("mknod", "/dev/"+n.name, err)
		}
	}
	type devMount struct {
		dir, fstype string
		flags       uintptr
		data        string
	}
	mounts := []devMount{
		{"pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=1777,size=" + strconv.FormatInt(shmSize, 10)},
		{"mqueue", "mqueue", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
	switch {
	case s.ShmMount != "":
		mounts[1] = devMount{dir: "shm", fstype: "move"}
	case s.Shm == "":
	case s.Shm == "none":
		mounts = slices.Delete(mounts, 1, 2)
	default:
		mounts[1] = devMount{dir: "shm", fstype: "bind"}
	}
	for _, m := range mounts {
		if err := unix.Mkdirat(dev, m.dir, 0o755); err != nil {
			return stepError("mkdir", "/dev/"+m.dir, err)
		}
		fd, err := unix.Openat(dev, m.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return stepError("open", "/dev/"+m.dir, err)
		}
		switch m.fstype {
		case "bind":
			// The host's directory, as this copy of the host's mounts
			// shows it (s.Shm is berth's, not the image's).
			err = unix.Mount(s.Shm, fdPath(fd), "", unix.MS_BIND|unix.MS_REC, "")
		case "move":
			err = moveDetached(s.ShmMount, fd)
		default:
			err = mountOn(m.fstype, fd, m.fstype, m.flags, m.data)
		}
		unix.Close(fd)
		if err != nil {
			return stepError("mount "+m.fstype, "/dev/"+m.dir, err)
		}
	}
	for _, l := range devLinks {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return stepError("symlink", "/dev/"+l[1], err)
		}
	}
	if console >= 0 {
		// The pty slave is a file on the host's devpts: bind it so
		// programs that open /dev/console reach the same terminal.
		fd, err := unix.Openat(dev, "console", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return stepError("create", "/dev/console", err)
		}
		unix.Close(fd)
		target, err := unix.Openat(dev, "console", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return stepError("open", "/dev/console", err)
		}
		// It was opened in the parent's mount namespace and a bind cannot
		// take its source from another namespace (EINVAL), so bind the same
		// path in our copy of the host's mounts, checked to be the same device.
		var src string
		if src, err = os.Readlink(fdPath(console)); err == nil {
			err = sameFile(console, src)
		}
		if err == nil {
			err = unix.Mount(src, fdPath(target), "", unix.MS_BIND, "")
		}
		unix.Close(target)
		if err != nil {
			return stepError("bind console", "/dev/console", err)
		}
	}
	for _, d := range s.Devices {
		if err := makeDevice(dev, d); err != nil {
			return stepError("mknod", d.Path, err)
		}
	}
	return nil
}

// makeDevice makes d's node inside dev, the container's fresh /dev, with
// its parent directories. A device node already there (a default one, or
// one made before) is replaced, as runc replaces them; anything else of
// that name (the ptmx link) is kept. No symlink is followed: dev holds
// only what setupDev made.
func makeDevice(dev int, d Device) error {
	rel, ok := strings.CutPrefix(path.Clean(d.Path), "/dev/")
	if !ok || d.Type != unix.S_IFCHR && d.Type != unix.S_IFBLK {
		return unix.EINVAL
	}
	dir := dev
	if parent := path.Dir(rel); parent != "." {
		fd, err := mkdirIn(dev, parent, unix.RESOLVE_NO_SYMLINKS)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		dir = fd
	}
	name := path.Base(rel)
	err := unix.Mknodat(dir, name, d.Type|d.Mode&0o7777, int(unix.Mkdev(d.Major, d.Minor)))
	if err == unix.EEXIST {
		var st unix.Stat_t
		if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return err
		}
		if kind := st.Mode & unix.S_IFMT; kind != unix.S_IFCHR && kind != unix.S_IFBLK {
			return nil
		}
		if st.Mode == d.Type|d.Mode&0o7777 && st.Rdev == unix.Mkdev(d.Major, d.Minor) && st.Uid == d.UID && st.Gid == d.GID {
			return nil // the same node (a privileged container's copy of the host's /dev/null, say)
		}
		if err := unix.Unlinkat(dir, name, 0); err != nil {
			return err
		}
		err = unix.Mknodat(dir, name, d.Type|d.Mode&0o7777, int(unix.Mkdev(d.Major, d.Minor)))
	}
	if err != nil {
		return err
	}
	return unix.Fchownat(dir, name, int(d.UID), int(d.GID), unix.AT_SYMLINK_NOFOLLOW)
}

// cgroupSkeleton mounts a tmpfs at /sys/fs/cgroup holding a directory
// for each v1 hierarchy of s.CgroupFS and its links, read-only unless
// privileged, for mountCgroups to mount them on. /sys is the fresh sysfs.
func cgroupSkeleton(root int, s *Spec) error {
	if len(s.CgroupFS) == 0 || s.CgroupFS[0].Dir == "" {
		return nil // none, or cgroup2 mounted at /sys/fs/cgroup itself
	}
	const dir = "/sys/fs/cgroup"
	if err := mountFresh(root, dir, "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return err
	}
	fd, err := openIn(root, dir, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		return stepError("open", dir, err)
	}
	defer unix.Close(fd)
	for _, h := range s.CgroupFS {
		if err := unix.Mkdirat(fd, h.Dir, 0o755); err != nil {
			return stepError("mkdir", dir+"/"+h.Dir, err)
		}
		for _, l := range h.Links {
			if err := unix.Symlinkat(h.Dir, fd, l); err != nil {
				return stepError("symlink", dir+"/"+l, err)
			}
		}
	}
	if s.Privileged {
		return nil
	}
	if err := unix.Mount("", fdPath(fd), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return stepError("remount read-only", dir, err)
	}
	return nil
}

// mountCgroups mounts s.CgroupFS under root+"/sys/fs/cgroup" (root is
// s.Rootfs before pivot_root, "" after), in the container's cgroup
// namespace: each filesystem's root is then the container's cgroup. Paths
// are plain: root is berth's, /sys and what is in it are the mounts this
// stage made, and nothing of the container runs yet.
func mountCgroups(s *Spec, root string) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if !s.Privileged {
		flags |= unix.MS_RDONLY
	}
	for _, h := range s.CgroupFS {
		target, fstype := root+"/sys/fs/cgroup/"+h.Dir, "cgroup"
		if h.Dir == "" {
			target, fstype = root+"/sys/fs/cgroup", "cgroup2"
		}
		if err := unix.Mount(fstype, target, fstype, flags, h.Options); err != nil {
			return stepError("mount "+fstype+" "+h.Options, target, err)
		}
	}
	return nil
}

// bindFile binds a host file the parent wrote (trusted) over dest inside root.
func bindFile(root int, source, dest string) error {
	src, err := unix.Open(source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open", source, err)
	}
	defer unix.Close(src)
	target, err := mkfileIn(root, dest)
	if err != nil {
		return stepError("create mount target", dest, err)
	}
	defer unix.Close(target)
	if err := unix.Mount(fdPath(src), fdPath(target), "", unix.MS_BIND, ""); err != nil {
		return stepError("bind", dest, err)
	}
	return nil
}

// maskPaths hides Docker's masked paths and makes its read-only paths
// read-only, those under prefix ("" for all). Paths the kernel does not
// have are skipped. It works with fds only (the new mount API), so that it
// can run after pivot_root, before the container's /proc exists.
func maskPaths(root int, prefix string) error {
	null, err := openIn(root, "/dev/null", unix.O_PATH, unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		return stepError("open", "/dev/null", err)
	}
	defer unix.Close(null)
	for _, p := range maskedPaths {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		fd, err := openIn(root, p, unix.O_PATH, unix.RESOLVE_NO_SYMLINKS)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return stepError("mask", p, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = attachNew(fd, "tmpfs", unix.MOUNT_ATTR_RDONLY)
			} else {
				err = attachClone(null, fd, 0)
			}
		}
		unix.Close(fd)
		if err != nil {
			return stepError("mask", p, err)
		}
	}
	for _, p := range readonlyPaths {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		fd, err := openIn(root, p, unix.O_PATH, unix.RESOLVE_NO_SYMLINKS)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return stepError("make read-only", p, err)
		}
		err = attachClone(fd, fd, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
		unix.Close(fd)
		if err != nil {
			return stepError("make read-only", p, err)
		}
	}
	return nil
}

// attachClone mounts a recursive copy of the mount tree at src on target,
// with attrs set on all of it.
func attachClone(src, target int, attrs uint64) error {
	tree, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(tree)
	if attrs != 0 {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attrs}); err != nil {
			return err
		}
	}
	return unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// attachNew mounts a new instance of fstype (with no options) on target.
func attachNew(target int, fstype string, attrs int) error {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return err
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return err
	}
	defer unix.Close(mnt)
	return unix.MoveMount(mnt, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// pivotRoot makes root the process's root with runc's trick: pivot_root(".",
// ".") stacks the old root on top of the new one at "/", and a lazy unmount of
// "." then drops it, with no directory needed for the old root inside the
// image.
func pivotRoot(root int) error {
	if err := unix.Fchdir(root); err != nil {
		return stepError("chdir to rootfs", "/", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return stepError("pivot_root", "/", err)
	}
	// The old root is private already; rslave first anyway, as runc does, so
	// the unmount below cannot propagate anywhere whatever changes upstream.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return stepError("make old root rslave", "/", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return stepError("unmount old root", "/", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return stepError("chdir", "/", err)
	}
	return nil
}

func sameFile(fd int, p string) error {
	var a, b unix.Stat_t
	if err := unix.Fstat(fd, &a); err != nil {
		return err
	}
	if err := unix.Stat(p, &b); err != nil {
		return err
	}
	if a.Rdev != b.Rdev || a.Ino != b.Ino || a.Dev != b.Dev {
		return unix.EXDEV
	}
	return nil
}
