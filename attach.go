package berth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// stdinFIFO names, in a container's directory, the FIFO that is the
// standard input of a container run with WithOpenStdin: whoever starts it
// (the monitor, for a detached one) holds it open for reading and writing,
// so that the container never reads end-of-file from it, and Attach opens
// it for writing.
const stdinFIFO = "stdin"

// openStdinFIFO makes a start's stdin FIFO and opens it for reading and
// writing (the open does not wait for a writer). It is made anew at each
// start: a writer still holding the last run's FIFO writes to no one.
func openStdinFIFO(dir string) (*os.File, error) {
	p := filepath.Join(dir, stdinFIFO)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("making the stdin FIFO: %w", err)
	}
	if err := unix.Mkfifo(p, 0o600); err != nil {
		return nil, fmt.Errorf("making the stdin FIFO: %w", err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the stdin FIFO: %w", err)
	}
	return f, nil
}

// closeStdin closes the stdin FIFO at the exit: the goroutine copying it
// into the container returns, and Attach's writers get EPIPE.
func (run *running) closeStdin() {
	if run.stdin != nil {
		run.stdin.Close()
	}
}

// Attach connects to a running container's standard streams, as docker
// attach does, from the program that started it or any other: the output
// the container logs from now on is copied to stdout and stderr (with a
// terminal, all of it to stdout; either may be nil), and stdin, if not nil,
// to its standard input, which must be open (WithOpenStdin, or -i/-t on
// the command line): with a terminal, stdin is the terminal's input,
// control characters included. Several attachments may be open at once;
// their input interleaves. The end of stdin does not close the container's
// input, as with docker's default.
//
// Attach returns once the container exits, with Wait's result (nil, or an
// *ExitError), or when ctx ends, leaving the container running. The
// output comes from the container's log: a container run with logging off
// (the "none" log driver) shows none. As with Process.Stdin, a Read of
// stdin in progress when Attach returns keeps its goroutine until it
// returns, and what it returns is dropped.
func (c *Container) Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	start := time.Now()
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	if !rec.State.Running {
		return fmt.Errorf("attaching to %s: %w", c.Name, ErrNotRunning)
	}
	var in *os.File
	if stdin != nil {
		if !rec.Config.OpenStdin {
			return fmt.Errorf("%w: attaching to %s: its standard input is not open (WithOpenStdin)", ErrInvalid, c.Name)
		}
		// Non-blocking: a FIFO whose reader is gone (the container
		// exited, or an older berth started it without one) fails with
		// ENXIO instead of waiting for one.
		in, err = os.OpenFile(filepath.Join(c.rt.containerDir(c.ID), stdinFIFO), os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("attaching to %s's standard input: %w", c.Name, err)
		}
		defer in.Close()
		go io.Copy(in, stdin)
	}
	if err := c.Logs(ctx, stdout, stderr, WithFollow(), WithSince(start)); err != nil {
		return err
	}
	return c.Wait(ctx)
}
