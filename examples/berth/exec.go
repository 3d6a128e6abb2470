package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// execFlags are docker exec's flags that berth supports.
type execFlags struct {
	detach, interactive, tty, privileged bool
	workdir, user                        string
	env, envFiles                        []string
}

// execCommand is docker exec.
func execCommand(fs *flagSet) runFunc {
	var f execFlags
	fs.Bool(&f.detach, "d", "detach", "Detached mode: run command in the background")
	fs.Strings(&f.env, "e", "env", "Set environment variables (KEY=VALUE, or KEY to pass berth's own)")
	fs.Strings(&f.envFiles, "", "env-file", "Read in a file of environment variables")
	fs.Bool(&f.interactive, "i", "interactive", "Keep STDIN open even if not attached")
	fs.Bool(&f.privileged, "", "privileged", "Give extended privileges to the command")
	fs.Bool(&f.tty, "t", "tty", "Allocate a pseudo-TTY")
	fs.String(&f.user, "u", "user", "string", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	fs.String(&f.workdir, "w", "workdir", "string", "", "Working directory inside the container")
	return func(ctx context.Context, c *cli, args []string) error {
		p, opts, err := f.config(args[1:], os.LookupEnv)
		if err != nil {
			return err
		}
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		if f.detach {
			if _, err := ctr.Exec(ctx, p, opts...); err != nil {
				return execFailed(err)
			}
			return nil
		}
		return execAttached(ctx, c, ctr, p, opts, f.interactive)
	}
}

// config turns the flags into Exec's Process and options; command is what
// followed the container on the command line.
func (f *execFlags) config(command []string, lookupEnv func(string) (string, bool)) (*berth.Process, []berth.ExecOption, error) {
	p := &berth.Process{Args: command, Dir: f.workdir, User: f.user, TTY: f.tty && !f.detach}
	for _, name := range f.envFiles {
		env, err := readEnvFile(name, lookupEnv)
		if err != nil {
			return nil, nil, err
		}
		p.Env = append(p.Env, env...)
	}
	for _, kv := range f.env {
		if kv, ok := envVar(kv, lookupEnv); ok {
			p.Env = append(p.Env, kv)
		}
	}
	var opts []berth.ExecOption
	if f.detach {
		opts = append(opts, berth.WithExecDetach())
	}
	if f.privileged {
		opts = append(opts, berth.WithPrivileged())
	}
	return p, opts, nil
}

// execFailed is the exit of an exec whose process did not start: 126 when
// its command could not be run, found or not (docker exec's code; only run
// tells 127 from 126), else 1 (a container not running, say).
func execFailed(err error) error {
	code := exitFailure
	var ee *berth.ExitError
	if errors.As(err, &ee) {
		code = 126
	}
	return &statusError{code: code, msg: "Error: " + err.Error()}
}

// execAttached runs the process with our standard streams and exits with
// its exit code. The signals of proxiedSignals go to the process; with -t
// the terminal follows our window's size.
func execAttached(ctx context.Context, c *cli, ctr *berth.Container, p *berth.Process, opts []berth.ExecOption, interactive bool) error {
	if interactive && c.stdin != nil {
		p.Stdin = c.stdin
	}
	p.Stdout, p.Stderr = c.stdout, c.stderr

	sigc := make(chan os.Signal, 8)
	notifyProxied(sigc, p.TTY)

	e, err := ctr.Exec(ctx, p, opts...)
	if err != nil {
		return execFailed(err)
	}
	return attach(ctx, c, p, e, sigc)
}

// attachedProcess is what attach follows: an attached container or exec.
type attachedProcess interface {
	Signal(ctx context.Context, sig berth.Signal) error
	Wait(ctx context.Context) error
	ResizeTTY(ctx context.Context, rows, cols uint16) error
}

// attach follows a started attached process to its end, as docker's CLI
// does: with -t on our terminal, its terminal takes our window's size (now
// and on every SIGWINCH) and ours is raw while it reads our input; the
// signals of sigc go to it; its exit code becomes ours.
func attach(ctx context.Context, c *cli, p *berth.Process, proc attachedProcess, sigc <-chan os.Signal) error {
	// main's ctx ends at the first signal, which belongs to the process now:
	// keep waiting for it.
	wctx := context.WithoutCancel(ctx)
	followSize := p.TTY && isTerminal(c.stdin)
	if followSize {
		resizeFrom(wctx, proc, c.stdin)
		if p.Stdin != nil {
			restore, err := makeRaw(c.stdin)
			if err != nil {
				proc.Signal(wctx, syscall.SIGKILL)
				return fmt.Errorf("putting the terminal in raw mode: %w", err)
			}
			defer restore()
		}
	}
	done := make(chan error, 1)
	go func() { done <- proc.Wait(wctx) }()
	for {
		select {
		case s := <-sigc:
			if s == syscall.SIGWINCH {
				if followSize {
					resizeFrom(wctx, proc, c.stdin)
				}
				continue
			}
			proc.Signal(wctx, s.(syscall.Signal)) // it may have exited already
		case err := <-done:
			var ee *berth.ExitError
			if errors.As(err, &ee) {
				return &statusError{code: ee.Code}
			}
			return err
		}
	}
}

// resizeFrom gives the process's terminal the size of ours.
func resizeFrom(ctx context.Context, e attachedProcess, term *os.File) {
	ws, err := unix.IoctlGetWinsize(int(term.Fd()), unix.TIOCGWINSZ)
	if err == nil && ws.Row > 0 && ws.Col > 0 {
		e.ResizeTTY(ctx, ws.Row, ws.Col)
	}
}
