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
	case m == "host" || m == "none":
		cfg.IpcMode = m
	case m == "shareable" || strings.HasPrefix(m, "container:"):
		return fmt.Errorf("%w: IPC mode %q: berth does not share a container's IPC namespace (private, host and none are supported)", ErrInvalid, m)
	default:
		return fmt.Errorf("%w: IPC mode %q: want private, host or none", ErrInvalid, m)
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
		f, path, _, err := r.pinnedNamespace(id, "pid")
		if err != nil {
			return fmt.Errorf("pid namespace of container %s: %w", id, err)
		}
		*closers = append(*closers, f)
		s.PidNS = path
	}
	switch cfg.IpcMode {
	case "host":
		s.IpcNS, s.Shm = ownNamespace("ipc"), "/dev/shm"
	case "none":
		s.Shm = "none"
	}
	if cfg.UTSMode == "host" {
		s.UTSNS, s.Hostname, s.Domainname = ownNamespace("uts"), "", "" // never the host's names
	}
	return nil
}

// pinnedNamespace opens the namespace kind ("pid", "net") of container
// id's running process for a container that joins it, and returns it with
// the path the joiner opens it by (/proc/<this program>/fd/N, valid while
// the file is open) and the container's record. The process is pinned by
// a pidfd and still runs once its namespace is open, so that a pid reused
// meanwhile cannot send the joiner into another namespace (the host's).
func (r *Runtime) pinnedNamespace(id, kind string) (*os.File, string, *containerRecord, error) {
	rec, err := r.readRecord(id)
	if err != nil {
		return nil, "", nil, err
	}
	notRunning := fmt.Errorf("%w: container %s, whose %s namespace this one joins", ErrNotRunning, rec.Name, kind)
	pidfd, ok := rec.pinFirstProcess()
	if !ok {
		return nil, "", rec, notRunning
	}
	defer unix.Close(pidfd)
	f, err := initproc.OpenNamespace(rec.State.Pid, pidfd, kind)
	if errors.Is(err, syscall.ESRCH) || errors.Is(err, fs.ErrNotExist) {
		return nil, "", rec, notRunning
	}
	if err != nil {
		return nil, "", rec, err
	}
	return f, "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(f.Fd())), rec, nil
}
