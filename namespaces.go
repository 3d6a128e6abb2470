package berth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

// resolveNamespaceModes checks WithPidMode and WithIpcMode (WithUTSMode
// is buildConfig's, as it decides the hostname) and puts them in cfg, a
// container:NAME by the container's ID.
func (r *Runtime) resolveNamespaceModes(ctx context.Context, o *runConfig, cfg *containerConfig) error {
	switch m := o.pidMode; {
	case m == "":
	case m == "host":
		cfg.PidMode = m
	case strings.HasPrefix(m, "container:"):
		var err error
		if cfg.PidMode, err = r.containerMode(ctx, "pid", m); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: pid mode %q: want host or container:NAME", ErrInvalid, m)
	}
	switch m := o.ipcMode; {
	case m == "" || m == "private":
	case (m == "host" || m == "none") && o.shmSize != 0:
		return fmt.Errorf("%w: WithShmSize sizes a /dev/shm of the container's own, which IPC mode %q has not", ErrInvalid, m)
	case m == "host" || m == "none" || m == "shareable":
		cfg.IpcMode = m
	case strings.HasPrefix(m, "container:") && o.shmSize != 0:
		return fmt.Errorf("%w: WithShmSize sizes a /dev/shm of the container's own, which IPC mode %q has not", ErrInvalid, m)
	case strings.HasPrefix(m, "container:"):
		var err error
		if cfg.IpcMode, err = r.containerMode(ctx, "ipc", m); err != nil {
			return err
		}
		donor, err := r.readRecord(strings.TrimPrefix(cfg.IpcMode, "container:"))
		if err != nil {
			return fmt.Errorf("ipc mode %q: %w", m, err)
		}
		if err := joinableIpc(donor); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: IPC mode %q: want private, shareable, host, none or container:NAME", ErrInvalid, m)
	}
	switch o.utsMode {
	case "":
	case "host":
		cfg.UTSMode = "host"
	default:
		return fmt.Errorf("%w: UTS mode %q: want host", ErrInvalid, o.utsMode)
	}
	return nil
}

// ownNamespace is this program's namespace of kind ("net", "ipc", ...)
// as a path a container's start opens: the host's, for a mode "host".
func ownNamespace(kind string) string {
	return "/proc/" + strconv.Itoa(os.Getpid()) + "/ns/" + kind
}

// containerMode resolves a mode "container:NAME" (of kind "network" or
// "pid", for errors) to the one kept, "container:ID".
func (r *Runtime) containerMode(ctx context.Context, kind, mode string) (string, error) {
	target, err := r.Container(ctx, strings.TrimPrefix(mode, "container:"))
	if err != nil {
		return "", fmt.Errorf("%s mode %q: %w", kind, mode, err)
	}
	return "container:" + target.ID, nil
}

// sharedNamespaces puts into s the namespaces the container shares, as
// it starts: this program's for "host" (the host's), or the pid namespace
// of the running container named, pinned (see pinnedNamespace) by a file
// it adds to closers, which the caller closes once the container runs.
func (r *Runtime) sharedNamespaces(cfg *containerConfig, s *initproc.Spec, closers *[]io.Closer) error {
	switch {
	case cfg.PidMode == "host":
		s.PidHost = true
	case strings.HasPrefix(cfg.PidMode, "container:"):
		id := strings.TrimPrefix(cfg.PidMode, "container:")
		ns, _, err := r.pinnedNamespaces(id, "pid")
		if err != nil {
			return fmt.Errorf("pid namespace of container %s: %w", id, err)
		}
		*closers = append(*closers, ns[0])
		s.PidNS = fdPathOf(ns[0])
	}
	switch {
	case cfg.IpcMode == "host":
		s.IpcNS, s.Shm = ownNamespace("ipc"), "/dev/shm"
	case cfg.IpcMode == "none":
		s.Shm = "none"
	case strings.HasPrefix(cfg.IpcMode, "container:"):
		if err := r.sharedIpc(strings.TrimPrefix(cfg.IpcMode, "container:"), s, closers); err != nil {
			return err
		}
	}
	if cfg.UTSMode == "host" {
		s.UTSNS, s.Hostname, s.Domainname = ownNamespace("uts"), "", "" // never the host's names
	}
	return nil
}

// joinableIpc refuses to share the IPC of a container that did not make
// it shareable, as docker does: "shareable" (its own, which others may
// join), "host" (the host's), or "container:ID" (the one it joined).
func joinableIpc(donor *containerRecord) error {
	if m := donor.Config.IpcMode; m != "shareable" && m != "host" && !strings.HasPrefix(m, "container:") {
		return fmt.Errorf("%w: container %s has a non-shareable IPC namespace (start it with IPC mode \"shareable\" to share it)", ErrInvalid, donor.Name)
	}
	return nil
}

// sharedIpc puts into s the IPC namespace of the running container id and
// its /dev/shm (for a "host" donor, the host's), pinned with its mount
// namespace (pinnedNamespaces), by files it adds to closers: the
// namespaces, and a detached copy of the donor's /dev/shm mount
// (initproc.CloneShm), which the start moves onto the container's
// /dev/shm.
func (r *Runtime) sharedIpc(id string, s *initproc.Spec, closers *[]io.Closer) error {
	ns, rec, err := r.pinnedNamespaces(id, "ipc", "mnt")
	if err != nil {
		return fmt.Errorf("IPC namespace of container %s: %w", id, err)
	}
	for _, f := range ns {
		*closers = append(*closers, f)
	}
	if err := joinableIpc(rec); err != nil {
		return err
	}
	s.IpcNS = fdPathOf(ns[0])
	if rec.Config.IpcMode == "host" {
		s.Shm = "/dev/shm"
		return nil
	}
	shm, err := initproc.CloneShm(ns[1])
	if err != nil {
		return fmt.Errorf("the /dev/shm of container %s: %w", rec.Name, err)
	}
	*closers = append(*closers, shm)
	s.ShmMount = fdPathOf(shm)
	return nil
}

// fdPathOf names an open file of this program as another process (a
// container's child stage) can open it: /proc/<pid>/fd/N.
func fdPathOf(f *os.File) string {
	return "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(f.Fd()))
}

// pinnedNamespaces opens the namespaces of kinds ("pid", "net", ...) of
// container id's running process for a container that joins them, and
// returns them, in order, with the container's record; a joiner opens one
// by fdPathOf (valid while the file is open). The process is pinned by a
// pidfd and still runs once each namespace is open, so that a pid reused
// meanwhile cannot send the joiner into another namespace (the host's).
func (r *Runtime) pinnedNamespaces(id string, kinds ...string) ([]*os.File, *containerRecord, error) {
	rec, err := r.readRecord(id)
	if err != nil {
		return nil, nil, err
	}
	pidfd, ok := rec.pinFirstProcess()
	if !ok {
		return nil, rec, fmt.Errorf("%w: container %s, whose namespaces this one joins", ErrNotRunning, rec.Name)
	}
	defer unix.Close(pidfd)
	var out []*os.File
	for _, kind := range kinds {
		f, err := initproc.OpenNamespace(rec.State.Pid, pidfd, kind)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			if errors.Is(err, syscall.ESRCH) || errors.Is(err, fs.ErrNotExist) {
				return nil, rec, fmt.Errorf("%w: container %s, whose %s namespace this one joins", ErrNotRunning, rec.Name, kind)
			}
			return nil, rec, err
		}
		out = append(out, f)
	}
	return out, rec, nil
}
