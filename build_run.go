package berth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// runStep runs a RUN instruction in a container from the current state and
// makes its filesystem changes the step's layer.
func (b *builder) runStep(ctx context.Context, label string, s *buildState, n *parser.Node, c *instructions.RunCommand) error {
	if len(c.Files) > 0 || len(c.FlagsUsed) > 0 {
		return fmt.Errorf("%w: RUN heredocs and flags (%s)", ErrUnsupported, strings.Join(c.FlagsUsed, ", "))
	}
	args := c.CmdLine
	if c.PrependShell {
		sh := s.cf.Config.Shell
		if len(sh) == 0 {
			sh = []string{"/bin/sh", "-c"}
		}
		args = append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
	}
	// The ARGs in scope are the RUN's environment, and so part of its key.
	var argEnv []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		if v := s.args[k]; v != nil && !hasEnv(s.cf.Config.Env, k) {
			argEnv = append(argEnv, k+"="+*v)
		}
	}
	createdBy := "RUN " + strings.Join(args, " ")
	if !c.PrependShell {
		createdBy = "RUN [" + quoteJoin(args) + "]"
	}
	key := stepKey(s.key, createdBy, argEnv, "")
	if img := b.cached(ctx, key); img != nil {
		b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original, Cached: true})
		return s.useCached(img, key)
	}
	b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original})
	if err := b.flush(ctx, s); err != nil {
		return err
	}
	out := &lineWriter{emit: func(line string) {
		b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original, Output: line})
	}}
	// Lines reach emit from the container's output goroutines; they are
	// queued and emitted here, on the caller's goroutine.
	ctr, err := b.r.Run(ctx, s.img.ID, &Process{Args: args, Env: argEnv, Stdout: out, Stderr: out}, WithEntrypoint())
	if err != nil {
		out.drain()
		return err
	}
	defer ctr.Remove(context.WithoutCancel(ctx), WithForce())
	done := make(chan error, 1)
	go func() { done <- ctr.Wait(ctx) }()
	var werr error
wait:
	for {
		select {
		case werr = <-done:
			break wait
		case <-out.ready:
			out.drain()
		}
	}
	out.flush()
	out.drain()
	if werr != nil {
		tail := out.tail()
		var ee *ExitError
		if errors.As(werr, &ee) {
			return fmt.Errorf("process %q did not complete successfully: exit code: %d: %w\n%s", strings.Join(args, " "), ee.Code, werr, strings.Join(tail, "\n"))
		}
		return werr
	}
	rec, err := b.r.currentRecord(ctr.ID)
	if err != nil {
		return err
	}
	unlock, err := b.r.gcShared(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	parentDiffIDs := make([]string, len(s.img.Layers))
	for i, l := range s.img.Layers {
		parentDiffIDs[i] = l.DiffID
	}
	diffID, size, err := ctr.diff(ctx, rec, false, parentDiffIDs)
	if err != nil {
		return err
	}
	return b.commitLayer(ctx, s, key, diffID, size, createdBy)
}

// lineWriter splits a process's output into lines for BuildEvents, and
// keeps the last lines for an error.
type lineWriter struct {
	emit    func(string)
	mu      sync.Mutex
	partial []byte
	queue   []string
	last    []string
	ready   chan struct{}
	once    sync.Once
}

func (w *lineWriter) init() { w.once.Do(func() { w.ready = make(chan struct{}, 1) }) }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.init()
	w.mu.Lock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.push(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *lineWriter) push(line string) {
	w.queue = append(w.queue, line)
	w.last = append(w.last, line)
	if len(w.last) > runOutputTail {
		w.last = w.last[len(w.last)-runOutputTail:]
	}
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.push(string(w.partial))
		w.partial = nil
	}
}

func (w *lineWriter) drain() {
	w.init()
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, l := range q {
		w.emit(l)
	}
}

func (w *lineWriter) tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.last)
}
