// Package initproc is the container child stage: the code that runs inside a
// re-executed, sealed copy of the calling binary, in the container's new
// namespaces, and ends by execve'ing the user's program as PID 1.
//
// The parent side is Command → Start → (place the child in its cgroup, wire
// its network) → Release → Cmd.Wait. The child side needs no hook from the
// importer: this package's init function recognises the re-exec and runs the
// stage before the importer's main or the test runner (see reexec.go).
//
// Only root in the initial user namespace can use this package: the child
// mounts overlayfs, procfs and sysfs, makes device nodes and pivots its root.
package initproc

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec describes one container process. The zero value of every optional
// field means "Docker's default".
type Spec struct {
	// Lower lists the read-only layers, topmost first (overlayfs lowerdir
	// order). Upper and Work are the container's writable layer and overlayfs
	// work dir on the same filesystem; with Upper empty the root is read-only.
	Lower []string
	Upper string
	Work  string
	// Volatile mounts the overlay with overlayfs's volatile option: it
	// never syncs the upper filesystem, not on its unmount either, which
	// otherwise writes back the whole host filesystem under Upper. Only for
	// a root filesystem that is thrown away with its container: after a
	// host crash overlayfs refuses to mount such an upper dir again.
	Volatile bool
	// Rootfs is the directory the child mounts the overlay on, in its own mount
	// namespace only: on the host it stays an empty directory.
	Rootfs string
	// ReadonlyRootfs remounts the root read-only after all mounts are made
	// (`docker run --read-only`).
	ReadonlyRootfs bool
	// Hostname is set in the container's UTS namespace; empty keeps the
	// kernel's default for a new namespace (the host's name, as copied).
	Hostname string
	// Domainname is the NIS domain name set beside it (docker run
	// --domainname); empty keeps the new namespace's "(none)".
	Domainname string `json:",omitempty"`
	// ShmSize is the size of /dev/shm in bytes; 0 means docker's 64 MiB.
	ShmSize int64 `json:",omitempty"`
	// Init runs a minimal init as PID 1 (docker run --init; see
	// initImage), from InitPath in the fresh /dev, which starts Args as
	// its child, forwards it the signals it gets, reaps the orphans it
	// inherits and exits as the child does. amd64 only.
	Init bool `json:",omitempty"`
	// Privileged drops docker's masked and read-only paths and mounts
	// /sys read-write (docker run --privileged; its capabilities, seccomp
	// and devices are Capabilities, SeccompFilter and Devices).
	Privileged bool `json:",omitempty"`
	// Devices are device nodes made in the container's /dev besides
	// docker's default ones, which one of the same name replaces.
	Devices []Device `json:",omitempty"`
	// CgroupFS are the cgroup filesystems mounted under /sys/fs/cgroup,
	// from inside the container's cgroup namespace, so that each shows
	// the container's own cgroup as its root (what the JVM and Go's
	// runtime read their limits from), read-only unless Privileged. A v1
	// hierarchy gets a directory (and links) in a tmpfs there; the cgroup2
	// tree of a v2 host (Dir "") is mounted at /sys/fs/cgroup itself.
	CgroupFS []CgroupFS `json:",omitempty"`
	// Sysctls are kernel parameters, by dotted name ("net.core.somaxconn"),
	// written into /proc/sys in the container's namespaces before its
	// filesystem is set up (in the child stage, which the network is
	// wired before). The caller checks that each is namespaced.
	Sysctls map[string]string `json:",omitempty"`
	// HostNetNS is the inode of the caller's network namespace: net.*
	// Sysctls are refused when the namespace joined (NetNS) is that one,
	// as runc refuses them in the host's. 0: no check.
	HostNetNS uint64 `json:",omitempty"`
	// NetNS, when set, is a network namespace file (/proc/PID/ns/net) the
	// child joins before any mount, instead of the new namespace it was
	// started in: docker's --network host and container:NAME.
	NetNS string `json:",omitempty"`
	// PidNS, IpcNS and UTSNS, when set, are namespace files the container
	// joins instead of having new ones (docker's --pid, --ipc and --uts
	// host and container:NAME): the pid namespace is the one its process
	// is forked into, so a child stage for it cannot be started ahead of
	// need (Prestart); the others are joined as NetNS is. PidHost keeps
	// the caller's pid namespace (--pid host), which needs no joining.
	PidNS   string `json:",omitempty"`
	PidHost bool   `json:",omitempty"`
	IpcNS   string `json:",omitempty"`
	UTSNS   string `json:",omitempty"`
	// Shm says what /dev/shm is: "" a fresh tmpfs of ShmSize bytes, "none"
	// nothing (docker's --ipc none), else a host directory bound there
	// (--ipc host: the host's /dev/shm).
	Shm string `json:",omitempty"`
	// ShmMount, when set, names a detached mount (CloneShm's, by a
	// /proc/PID/fd/N path) moved onto /dev/shm instead: another
	// container's /dev/shm (--ipc container:NAME).
	ShmMount string `json:",omitempty"`

	// Args is the command; Args[0] is looked up in Env's PATH inside the
	// container (Docker's default PATH when Env has none). Required.
	Args []string
	// Env is the complete environment of the user's process.
	Env []string
	// Dir is the working directory inside the container, created (root-owned,
	// mode 0755) when missing, as Docker does. Empty means "/".
	Dir string

	// UID, GID and AdditionalGIDs are the numeric user and groups the program
	// runs as; names are resolved by the caller.
	UID, GID       uint32
	AdditionalGIDs []uint32
	// User, when not empty, overrides UID, GID and AdditionalGIDs: it is
	// "name", "uid", "uid:gid", "name:group" or "uid:group", resolved in the
	// child from the container's /etc/passwd and /etc/group. Whether set or
	// not, HOME is added to Env from the passwd entry when Env lacks it.
	User string
	// GroupAdd are more supplementary groups for User (docker run
	// --group-add): names from the container's /etc/group, or gids.
	GroupAdd []string `json:",omitempty"`
	// BuildKitGroups gives User the supplementary groups BuildKit's RUN
	// gives, not docker run's: a user named without a group gets only its
	// /etc/group memberships, a named group none besides itself.
	BuildKitGroups bool
	// Detached keeps the container alive when its parent dies: no parent-
	// death signal is armed. Default: the container is SIGKILLed when the
	// thread that started it exits.
	Detached bool

	// Capabilities lists the capabilities the program keeps in its bounding,
	// permitted and effective sets ("CAP_CHOWN"). nil means Docker's default 14
	// (caps.Default, CapBnd 00000000a80425fb); an empty non-nil slice means none.
	// The inheritable and ambient sets are always empty, as in Docker 23+.
	Capabilities []string
	// NoNewPrivileges sets no_new_privs (`--security-opt no-new-privileges`).
	NoNewPrivileges bool
	// SeccompFilter is a compiled seccomp BPF program (internal/seccomp's
	// DefaultFilter for Docker's profile), loaded by the process itself
	// after its other privileges are set, before anything of the user's
	// runs; nil loads none. It arrives compiled so that this package links
	// no profile tables: the child stage starts during package
	// initialisation, and every package initialised before this one is
	// start-up time of every container.
	SeccompFilter []unix.SockFilter
	// Rlimits are applied in the child. No limit is raised above the
	// caller's current hard limit: such values are clamped and reported in
	// Process.Warnings.
	Rlimits []Rlimit

	// Files maps container paths (e.g. "/etc/hosts") to contents. Command
	// writes each into StateDir and the child bind-mounts it (read-write) over
	// the path, as Docker does for /etc/hostname, /etc/hosts and
	// /etc/resolv.conf.
	Files map[string][]byte
	// StateDir is a host directory owned by the caller for this container
	// (berth's containers/<id>). Required when Files is set.
	StateDir string

	// Mounts are applied after /proc, /dev and /sys, in order.
	Mounts []Mount

	// TTY says that the caller passes a pty slave as stdin, stdout and stderr
	// (Process.Cmd.Stdin etc.): the child makes it its controlling terminal and
	// bind-mounts it at /dev/console.
	TTY bool
}

// CgroupFS is one cgroup filesystem of the container (cgroup.Hierarchy).
type CgroupFS struct {
	Dir     string   // under /sys/fs/cgroup; "" for cgroup2 at /sys/fs/cgroup
	Options string   // a v1 hierarchy's mount options ("cpu,cpuacct", "none,name=systemd")
	Links   []string // symlinks to Dir beside it
}

// Device is a device node inside the container: a host device of a
// privileged container, or one WithDevices gives (whose cgroup must
// then allow it).
type Device struct {
	// Path is where the node is made, under /dev, with any missing
	// parent directories; a device node there already is replaced (unless
	// it is the same), anything else of the name kept.
	Path string
	// Type is unix.S_IFCHR or unix.S_IFBLK.
	Type         uint32
	Major, Minor uint32
	// Mode holds the node's permission bits; UID and GID own it.
	Mode     uint32
	UID, GID uint32
}

// Rlimit is one resource limit (`docker run --ulimit`). Type is an
// RLIMIT_* constant from golang.org/x/sys/unix.
type Rlimit struct {
	Type       int
	Soft, Hard uint64
}

// Mount is an extra mount inside the container, like an OCI spec mount.
// Destination is resolved inside the container's root (symlinks in the image
// cannot lead outside it); Source is a host path for bind mounts and is
// trusted. Options takes the usual mount(8) words ("ro", "nosuid", "rbind",
// "rprivate", ...); unknown words are passed to the filesystem with Data.
type Mount struct {
	Source      string
	Destination string
	Type        string
	Options     []string
	Flags       uintptr
	Data        string
	// Seed, for a bind of a directory (a volume), copies what the container's
	// root holds at Destination into Source before mounting when Source is
	// empty, with ownership, modes and times; symlinks are copied as
	// symlinks and nothing is followed. SeedLock is a host file held with
	// flock meanwhile, so that containers starting together seed a volume
	// once. Docker does this on the first mount of a volume.
	Seed     bool   `json:",omitempty"`
	SeedLock string `json:",omitempty"`
}

// Exit codes Docker uses when the container's command cannot be run.
const (
	ExitNotExecutable = 126 // found but not executable (permission denied, a directory, bad format)
	ExitNotFound      = 127 // not found in PATH, or the path does not exist
)

// SetupError reports a failure inside the child stage. It is sent back over
// the sync pipe and returned by Process.Release.
type SetupError struct {
	// Step names what the child was doing, e.g. "mount proc" or "exec".
	Step string
	// Path is the file the step was working on, as the container sees it
	// when relevant.
	Path string
	// Errno is the system error, or 0.
	Errno syscall.Errno
	// Msg adds detail in words.
	Msg string
	// ExitCode is ExitNotFound or ExitNotExecutable when the command could not
	// be run, the code `docker run` exits with in that case; 0 otherwise.
	ExitCode int
}

// Error formats the step, path and cause.
func (e *SetupError) Error() string {
	s := "container setup: " + e.Step
	if e.Path != "" {
		s += fmt.Sprintf(" %q", e.Path)
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Errno != 0 {
		s += ": " + e.Errno.Error()
	}
	return s
}

// Unwrap returns the Errno, so errors.Is(err, fs.ErrNotExist) and friends work.
func (e *SetupError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}
