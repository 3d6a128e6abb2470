package berth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A container run with WithOpenStdin has, in its directory, a FIFO per
// start that is its standard input, stdin-<start count>: whoever starts it
// (the monitor, for a detached one) reads it, copying what comes into the
// container, and holds a writer open so that it never reads end-of-file;
// Attach opens it for writing, by the start count of the run it attaches
// to, so that an attachment to a run that has ended never writes into the
// next one's.
const stdinFIFOPrefix = "stdin-"

func stdinFIFOPath(dir string, starts int) string {
	return filepath.Join(dir, stdinFIFOPrefix+strconv.Itoa(starts))
}

// stdinFIFO is a start's stdin FIFO as its starter holds it: a reader
// (non-blocking, so that closing it at the exit ends the copy reading it),
// and a writer that keeps the input open.
//
// With WithStdinOnce, the keeper is let go as soon as another process
// opens the FIFO (an attachment: inotify tells, and only a program that
// looks for the FIFO in the container's directory opens it): from then on
// the attachments are its writers, and their end is the container's
// end-of-file.
type stdinFIFO struct {
	*os.File // read

	once   sync.Once
	keeper *os.File
	watch  *fsWatch // for WithStdinOnce
}

// openStdinFIFO makes the FIFO of a container's start (number starts) and
// opens it, removing the earlier starts' FIFOs.
func openStdinFIFO(dir string, starts int, once bool) (*stdinFIFO, error) {
	old, _ := filepath.Glob(filepath.Join(dir, stdinFIFOPrefix+"*"))
	for _, p := range append(old, filepath.Join(dir, "stdin")) { // and an older berth's
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("making the stdin FIFO: %w", err)
		}
	}
	p := stdinFIFOPath(dir, starts)
	if err := unix.Mkfifo(p, 0o600); err != nil {
		return nil, fmt.Errorf("making the stdin FIFO: %w", err)
	}
	// Read and write: the open waits for no writer, and is one.
	keeper, err := openFIFO(p, os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("opening the stdin FIFO: %w", err)
	}
	s := &stdinFIFO{keeper: keeper}
	if s.File, err = openFIFO(p, os.O_RDONLY|unix.O_NONBLOCK); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening the stdin FIFO: %w", err)
	}
	if !once {
		return s, nil
	}
	if s.watch, err = watchPath(p, unix.IN_OPEN); err != nil {
		// No inotify to spare (a user has 128 instances): the input
		// stays open, as without WithStdinOnce.
		return s, nil
	}
	go func() {
		<-s.watch.C // an open, or the FIFO gone
		s.release()
	}()
	return s, nil
}

// release lets the starter's writer go (WithStdinOnce's first attachment,
// or the exit).
func (s *stdinFIFO) release() {
	s.once.Do(func() {
		if s.keeper != nil {
			s.keeper.Close()
		}
		if s.watch != nil {
			s.watch.Close()
			select {
			case s.watch.C <- struct{}{}: // ends the goroutine waiting on it
			default:
			}
		}
	})
}

// Close closes all of it.
func (s *stdinFIFO) Close() error {
	s.release()
	if s.File != nil {
		return s.File.Close()
	}
	return nil
}

// openFIFO opens the FIFO at p, never through a symlink, and checks that
// it is one. (Through Stat, not Fd: Fd would put a non-blocking file in
// blocking mode, where closing it no longer ends a Read or Write.)
func openFIFO(p string, flag int) (*os.File, error) {
	f, err := os.OpenFile(p, flag|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		f.Close()
		return nil, fmt.Errorf("%s: not a FIFO", p)
	}
	return f, nil
}

// attachDrain is how long Attach lets its log follower catch up with the
// output once the run it attached to has exited, where the follower does
// not end by itself (a restart policy started the container again).
const attachDrain = 200 * time.Millisecond

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
// to its standard input, which must have been kept open with
// WithOpenStdin (ErrInvalid otherwise): with a terminal, stdin is the
// terminal's input, control characters included. Several attachments may
// be open at once; their input interleaves. The end of stdin closes the
// container's input only for a container run with WithStdinOnce (see
// there). A run that reads the Process.Stdin of the program that started
// it (a first run with WithOpenStdin and Process.Stdin) takes no other
// input: Attach with stdin fails with ErrInvalid.
//
// Attach returns when the run it attached to exits, with that exit as Wait
// gives it (nil, or an *ExitError), also when a restart policy starts the
// container again, or when ctx ends, leaving the container running. The
// output comes from the container's log: one run with logging off (the
// "none" log driver) shows none. As with Process.Stdin, a Read of stdin in
// progress when Attach returns keeps its goroutine until it returns, and
// what it returns is dropped.
func (c *Container) Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	start := time.Now()
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	if !rec.State.Running {
		return fmt.Errorf("attaching to %s: %w", c.Name, ErrNotRunning)
	}
	if stdin != nil && !rec.Config.KeepStdin {
		return fmt.Errorf("%w: attaching to %s: its standard input is not kept open (WithOpenStdin)", ErrInvalid, c.Name)
	}
	// The exit of the run seen running: the wait lock, taken before any
	// input goes in, keeps an auto-removed container's record until the
	// exit is read, and a wait that saw the run answers at its exit even
	// when a restart policy starts the container again.
	unlockWait, err := c.rt.store.Lock(ctx, "wait-"+c.ID, false)
	if err != nil {
		return err
	}
	wctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	exited := make(chan error, 1)
	go func() { exited <- c.rt.waitRecorded(wctx, c, time.Time{}, unlockWait, true) }()
	if stdin != nil {
		// Non-blocking: a FIFO whose reader is gone (the run exited)
		// fails with ENXIO instead of waiting for one.
		dir := c.rt.containerDir(c.ID)
		in, err := openFIFO(stdinFIFOPath(dir, rec.Starts), os.O_WRONLY|unix.O_NONBLOCK)
		if errors.Is(err, fs.ErrNotExist) {
			// A run started by an older berth (its monitor may still
			// run) has one FIFO for all starts; a newer starter removes
			// it, so if it is there it is the running one's.
			in, err = openFIFO(filepath.Join(dir, "stdin"), os.O_WRONLY|unix.O_NONBLOCK)
		}
		if errors.Is(err, fs.ErrNotExist) {
			if now, rerr := c.rt.currentRecord(c.ID); rerr == nil && now.State.Running && now.Starts == rec.Starts {
				// docker run -i: this run reads its starter's input.
				return fmt.Errorf("%w: attaching to %s: this run's input is the Process.Stdin of the program that started it; attach without input", ErrInvalid, c.Name)
			}
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENXIO) {
			return fmt.Errorf("attaching to %s: %w", c.Name, ErrNotRunning)
		} else if err != nil {
			return fmt.Errorf("attaching to %s's standard input: %w", c.Name, err)
		}
		// Closed at the end of the input too, not only of the
		// attachment: the container's end-of-file, with WithStdinOnce.
		defer in.Close()
		go func() {
			io.Copy(in, stdin)
			in.Close()
		}()
	}
	if rec.Config.NoLog {
		return <-exited
	}
	lctx, stopLogs := context.WithCancel(ctx)
	defer stopLogs()
	logged := make(chan error, 1)
	go func() { logged <- c.Logs(lctx, stdout, stderr, WithFollow(), WithSince(start)) }()
	select {
	case err := <-exited:
		select {
		case <-logged:
		case <-time.After(attachDrain):
			stopLogs()
			<-logged
		}
		return err
	case err := <-logged:
		if err != nil {
			return err
		}
		return <-exited
	}
}
