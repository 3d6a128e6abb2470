package initproc

import (
	"errors"
	"io"
	"os"
	"syscall"
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
	p, err := os.StartProcess(c.Path, c.Args, &os.ProcAttr{Env: c.Env, Files: files, Sys: c.SysProcAttr})
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
