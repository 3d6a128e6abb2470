package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/berth-dev/berth"
)

// attachCommand is docker attach: the container's output from now on, our
// input to it when it was run with -i, our signals to it (without a
// terminal), its exit code as ours; the detach keys leave it running.
func attachCommand(fs *flagSet) runFunc {
	var noStdin, sigProxy bool
	var detachKeys string
	fs.String(&detachKeys, "", "detach-keys", "string", "", "Override the key sequence for detaching a container")
	fs.Bool(&noStdin, "", "no-stdin", "Do not attach STDIN")
	fs.BoolVar(&sigProxy, "sig-proxy", true, "Proxy all received signals to the process")
	fs.docs = append(fs.docs, flagDoc{"", "sig-proxy", "", "Proxy all received signals to the process (default true)"})
	return func(ctx context.Context, c *cli, args []string) error {
		keys, err := parseDetachKeys(detachKeys)
		if err != nil {
			return err
		}
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		info, err := ctr.Inspect(ctx)
		if err != nil {
			return err
		}
		switch {
		case info.State.Status == "paused":
			return errors.New("You cannot attach to a paused container, unpause it first")
		case !info.State.Running:
			return errors.New("You cannot attach to a stopped container, start it first")
		}
		withStdin := !noStdin && info.KeepStdinOpen && c.stdin != nil
		if withStdin && info.TTY && !isTerminal(c.stdin) {
			return errors.New("the input device is not a TTY")
		}
		sigc := make(chan os.Signal, 8)
		notifyProxied(sigc, info.TTY)
		if info.TTY && isTerminal(c.stdin) {
			resizeFrom(ctx, ctr, c.stdin)
			if withStdin {
				restore, err := makeRaw(c.stdin)
				if err != nil {
					return fmt.Errorf("putting the terminal in raw mode: %w", err)
				}
				defer restore()
			}
		}
		actx, detach := context.WithCancel(context.WithoutCancel(ctx))
		defer detach()
		var in io.Reader
		switch {
		case withStdin && info.TTY:
			// docker's detach keys, read on a terminal's input only: they
			// alone end actx before we return.
			in = &detachReader{r: c.stdin, keys: keys, detach: detach}
		case withStdin:
			in = c.stdin
		}
		done := make(chan error, 1)
		go func() { done <- ctr.Attach(actx, in, c.stdout, c.stderr) }()
		for {
			select {
			case s := <-sigc:
				switch {
				case s == syscall.SIGWINCH:
					resizeFrom(actx, ctr, c.stdin)
				case sigProxy && !info.TTY:
					ctr.Signal(actx, s.(syscall.Signal)) // it may have exited already
				default:
					// Not the container's: the signal ends the attachment,
					// as it ends docker's client, and the container runs on.
					return &statusError{code: 128 + int(s.(syscall.Signal))}
				}
			case err := <-done:
				var ee *berth.ExitError
				switch {
				case actx.Err() != nil: // the detach keys
					return &statusError{code: exitFailure, msg: "read escape sequence"} // docker's words, no "Error:"
				case errors.As(err, &ee):
					return &statusError{code: ee.Code}
				}
				return err
			}
		}
	}
}

// parseDetachKeys reads docker's --detach-keys: comma-separated keys, each
// a single character or ctrl-<a-z@[\]^_>. Empty is docker's default,
// ctrl-p,ctrl-q.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = "ctrl-p,ctrl-q"
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		switch {
		case len(k) == 1:
			keys = append(keys, k[0])
		case strings.HasPrefix(strings.ToLower(k), "ctrl-") && len(k) == 6:
			c := strings.ToLower(k)[5]
			switch {
			case c >= 'a' && c <= 'z':
				keys = append(keys, c-'a'+1)
			case strings.IndexByte("@[\\]^_", c) >= 0:
				keys = append(keys, c-'@')
			default:
				return nil, fmt.Errorf("Invalid detach keys (%s) provided", s)
			}
		default:
			return nil, fmt.Errorf("Invalid detach keys (%s) provided", s)
		}
	}
	return keys, nil
}

// detachReader passes r's bytes on until they spell keys, then calls detach
// and reads as ended; a part of keys followed by anything else is passed on
// whole, as docker's escape proxy does.
type detachReader struct {
	r        io.Reader
	keys     []byte
	matched  int    // bytes of keys read and held back
	pending  []byte // passed on but not yet read
	err      error  // r's, or io.EOF once the keys were read
	detached bool   // the keys were read: detach once pending is passed on
	detach   func()
}

func (d *detachReader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		if d.detached {
			// Only now, what came before the keys having been read (and
			// written on) first.
			d.detached = false
			d.detach()
		}
		if d.err != nil {
			return 0, d.err
		}
		buf := make([]byte, len(p))
		n, err := d.r.Read(buf)
		d.err = err
		for _, b := range buf[:n] {
			if b == d.keys[d.matched] {
				if d.matched++; d.matched == len(d.keys) {
					d.err, d.detached = io.EOF, true
					break
				}
				continue
			}
			d.pending = append(d.pending, d.keys[:d.matched]...)
			d.matched = 0
			if b == d.keys[0] {
				d.matched = 1
				continue
			}
			d.pending = append(d.pending, b)
		}
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}
