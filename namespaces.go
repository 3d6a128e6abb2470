package berth

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/initproc"
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
		target, err := r.Container(ctx, strings.TrimPrefix(m, "container:"))
		if err != nil {
			return fmt.Errorf("pid mode %q: %w", m, err)
		}
		cfg.PidMode = "container:" + target.ID
	default:
		return fmt.Errorf("%w: pid mode %q: want host or container:NAME", ErrInvalid, m)
	}
	switch m := o.ipcMode; {
	case m == "" || m == "private":
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

// sharedNamespaces puts into s the namespaces the container shares, as
// it starts: this program's for "host" (the host's), or those of the
// process of the container named, which must be running.
func (r *Runtime) sharedNamespaces(cfg *containerConfig, s *initproc.Spec) error {
	own := "/proc/" + strconv.Itoa(os.Getpid()) + "/ns/"
	switch {
	case cfg.PidMode == "host":
		s.PidNS = own + "pid"
	case strings.HasPrefix(cfg.PidMode, "container:"):
		trec, err := r.readRecord(strings.TrimPrefix(cfg.PidMode, "container:"))
		if err != nil {
			return fmt.Errorf("pid namespace of container %s: %w", strings.TrimPrefix(cfg.PidMode, "container:"), err)
		}
		if !trec.alive() {
			return fmt.Errorf("%w: container %s, whose pid namespace this one joins", ErrNotRunning, trec.Name)
		}
		s.PidNS = "/proc/" + strconv.Itoa(trec.State.Pid) + "/ns/pid"
	}
	switch cfg.IpcMode {
	case "host":
		s.IpcNS, s.Shm = own+"ipc", "/dev/shm"
	case "none":
		s.Shm = "none"
	}
	if cfg.UTSMode == "host" {
		s.UTSNS, s.Hostname = own+"uts", ""
	}
	return nil
}
