package berth

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test for them with errors.Is; berth wraps them
// with what failed and on what.
var (
	// ErrNotFound reports an image, container, network or volume that does
	// not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists reports a name that is already taken.
	ErrExists = errors.New("already exists")
	// ErrInUse reports an object that cannot be removed because something
	// still uses it (docker's "conflict").
	ErrInUse = errors.New("in use")
	// ErrNotRunning reports an operation that needs a running container.
	ErrNotRunning = errors.New("container is not running")
	// ErrUnsupported reports a feature, format or media type berth does not
	// handle.
	ErrUnsupported = errors.New("unsupported")
	// ErrInvalid reports a malformed argument: a bad reference, name or
	// option value.
	ErrInvalid = errors.New("invalid argument")
	// ErrClosed reports a call on a Runtime after Close.
	ErrClosed = errors.New("runtime is closed")
	// ErrUnhealthy reports a container whose health check failed as many
	// times in a row as it allows (WaitHealthy; docker's "unhealthy").
	ErrUnhealthy = errors.New("container is unhealthy")
)

// ExitError reports a process that ended unsuccessfully, like os/exec's
// ExitError.
type ExitError struct {
	// Code is the exit status; for a process killed by a signal it is
	// 128+signal, as a shell and docker report it.
	Code int
	// Signal is the signal that killed the process, or 0.
	Signal int
	// OOMKilled reports that the kernel's OOM killer killed a process of
	// the container (docker's OOMKilled: not necessarily this one).
	OOMKilled bool
}

func (e *ExitError) Error() string {
	switch {
	case e.OOMKilled:
		return fmt.Sprintf("exit status %d (killed: out of memory)", e.Code)
	case e.Signal != 0:
		return fmt.Sprintf("exit status %d (signal %d)", e.Code, e.Signal)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}
