package initproc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Cmd is a child stage's process: the part of os/exec's Cmd this package
// needs, on os.StartProcess.
//
// os/exec is not imported on purpose. It imports path/filepath, whose
// package initialisation the Go linker places late (it initialises ready
// packages in import-path order), and this package's init, which is where
// a re-executed child dispatches to its stage, runs only once everything
// it imports is initialised. Without os/exec the dispatch comes about
// thirty package inits earlier (the protobuf descriptors of containerd's
// cgroup statistics among them), which every container start and exec
// used to pay for in CPU.
type Cmd struct {
	Path string
	Args []string
	Env  []string
	Dir  string // the child's working directory; "" is the caller's

	// Stdin, Stdout and Stderr are passed to the child as they are when
	// they are files; other readers and writers are copied through a pipe,
	// which Wait drains. nil is /dev/null.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	ExtraFiles  []*os.File // fds 3, 4, ... in the child
	SysProcAttr *syscall.SysProcAttr

	Process      *os.Process      // set by Start
	ProcessState *os.ProcessState // set by Wait

	copies chan error
	ncopy  int
}

// ExitError is the error Wait returns for a child that did not exit 0.
type ExitError struct{ *os.ProcessState }

func (e *ExitError) Error() string { return e.ProcessState.String() }

// Start starts the child. On failure every file it opened is closed.
func (c *Cmd) Start() error {
	if c.Process != nil {
		return errors.New("initproc: process already started")
	}
	var childEnds, parentEnds []*os.File
	fail := func(err error) error {
		for _, f := range append(childEnds, parentEnds...) {
			f.Close()
		}
		return err
	}
	var copies []func() error
	files := make([]*os.File, 0, 3+len(c.ExtraFiles))
	stdin := func(r io.Reader) (*os.File, error) {
		if f, ok := r.(*os.File); ok {
			return f, nil
		}
		if r == nil {
			f, err := os.Open(os.DevNull)
			childEnds = append(childEnds, f)
			return f, err
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		childEnds, parentEnds = append(childEnds, pr), append(parentEnds, pw)
		copies = append(copies, func() error {
			_, err := io.Copy(pw, r)
			if cerr := pw.Close(); err == nil {
				err = cerr
			}
			return err
		})
		return pr, nil
	}
	output := func(w io.Writer) (*os.File, error) {
		if f, ok := w.(*os.File); ok {
			return f, nil
		}
		if w == nil {
			f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			childEnds = append(childEnds, f)
			return f, err
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		childEnds, parentEnds = append(childEnds, pw), append(parentEnds, pr)
		copies = append(copies, func() error {
			_, err := io.Copy(w, pr)
			pr.Close()
			return err
		})
		return pw, nil
	}
	f, err := stdin(c.Stdin)
	if err != nil {
		return fail(err)
	}
	files = append(files, f)
	for _, w := range []io.Writer{c.Stdout, c.Stderr} {
		f, err := output(w)
		if err != nil {
			return fail(err)
		}
		files = append(files, f)
	}
	files = append(files, c.ExtraFiles...)
	path, release, err := fdPathFor(c.Path, files)
	if err != nil {
		return fail(err)
	}
	p, err := os.StartProcess(path, c.Args, &os.ProcAttr{Dir: c.Dir, Env: c.Env, Files: files, Sys: c.SysProcAttr})
	release()
	if err != nil {
		return fail(err)
	}
	c.Process = p
	for _, f := range childEnds {
		f.Close()
	}
	c.copies, c.ncopy = make(chan error, len(copies)), len(copies)
	for _, cp := range copies {
		go func() { c.copies <- cp() }()
	}
	return nil
}

// Wait waits for the child to exit and for the copies of its non-file
// streams to finish. A child that did not exit 0 is an *ExitError.
func (c *Cmd) Wait() error {
	if c.Process == nil {
		return errors.New("initproc: process not started")
	}
	if c.ProcessState != nil {
		return errors.New("initproc: Wait was already called")
	}
	state, err := c.Process.Wait()
	if err != nil {
		return err
	}
	c.ProcessState = state
	var copyErr error
	for range c.ncopy {
		if err := <-c.copies; err != nil && copyErr == nil {
			copyErr = err
		}
	}
	if !state.Success() {
		return &ExitError{state}
	}
	return copyErr
}

// fdPathFor makes path, when it names an fd of this process
// (/proc/self/fd/N: the sealed binary, the exec helper), safe to exec in a
// child that gets files as its fds 0, 1, 2, ... Before execve, Go's forked
// child dups files onto 0, 1, 2, ... and moves its error pipe, and any
// file whose number is below its place, to the numbers just above the
// highest of files (or of len(files)): an fd among those is replaced, and
// the child then execs the pipe (EACCES; a bridge's holder failed so
// whenever the lock it was handed had the number just below the sealed
// binary's). Such an fd is copied above them for this start; release
// closes the copy.
func fdPathFor(path string, files []*os.File) (string, func(), error) {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = -1
		if f != nil {
			fds[i] = int(f.Fd())
		}
	}
	return fdPathForFds(path, fds)
}

// fdPathForFds is fdPathFor for the child's fds given by number (-1: none).
func fdPathForFds(path string, files []int) (string, func(), error) {
	n, ok := strings.CutPrefix(path, "/proc/self/fd/")
	fd, err := strconv.Atoi(n)
	if !ok || err != nil {
		return path, func() {}, nil
	}
	next := len(files) // where the child starts moving fds: see syscall.forkAndExecInChild1
	for _, f := range files {
		next = max(next, f)
	}
	next++
	if fd >= len(files) && (fd < next || fd > next+len(files)) {
		return path, func() {}, nil
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, next+len(files)+1)
	if err != nil {
		return "", nil, fmt.Errorf("moving fd %d clear of the child's: %w", fd, err)
	}
	return "/proc/self/fd/" + strconv.Itoa(high), func() { unix.Close(high) }, nil
}
