package berth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Docker's health check defaults.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
)

// mergeHealthcheck is the container's health check: the run option's over
// the image's, field by field as docker merges --health-* flags, or nil
// for none (no HEALTHCHECK, or NONE).
func mergeHealthcheck(image, run *HealthConfig) (*HealthConfig, error) {
	var h HealthConfig
	if image != nil {
		h = *image
	}
	if run != nil {
		if len(run.Test) > 0 {
			h.Test = run.Test
		}
		if run.Interval != 0 {
			h.Interval = run.Interval
		}
		if run.Timeout != 0 {
			h.Timeout = run.Timeout
		}
		if run.StartPeriod != 0 {
			h.StartPeriod = run.StartPeriod
		}
		if run.Retries != 0 {
			h.Retries = run.Retries
		}
	}
	if len(h.Test) == 0 || h.Test[0] == "NONE" {
		return nil, nil
	}
	switch {
	case h.Test[0] != "CMD" && h.Test[0] != "CMD-SHELL":
		return nil, fmt.Errorf("%w: health check test %q: want CMD, CMD-SHELL or NONE first", ErrInvalid, h.Test)
	case len(h.Test) < 2, h.Test[0] == "CMD-SHELL" && len(h.Test) != 2:
		return nil, fmt.Errorf("%w: health check test %q: want CMD and a command, or CMD-SHELL and one shell command", ErrInvalid, h.Test)
	case h.Interval < 0, h.Timeout < 0, h.StartPeriod < 0, h.Retries < 0:
		return nil, fmt.Errorf("%w: health check times and retries cannot be negative", ErrInvalid)
	}
	return &h, nil
}

// WaitHealthy waits until the container's health check passes
// (testcontainers' wait.ForHealthCheck, docker's "healthy"): its image's
// HEALTHCHECK, or WithHealthcheck's. The check's command runs in the
// container as docker runs it (CMD as an Exec of its arguments, CMD-SHELL
// through the image's SHELL, by default /bin/sh -c), at once and then
// every Interval (docker's default
// 30 s), each run bounded by Timeout (30 s); a run that exits 0 makes the
// container healthy. Retries (3) failed runs in a row, not counting those
// within StartPeriod of the container's start, make it unhealthy:
// WaitHealthy then fails with an error wrapping ErrUnhealthy that holds
// the last run's output. It fails with an error wrapping ErrInvalid for a
// container with no health check, ErrNotRunning when the container is
// not running or stops (not while its restart policy restarts it), and
// ctx's error when ctx ends first.
//
// Unlike docker's daemon, berth keeps no health state: the check runs
// only while WaitHealthy does, and the first run does not wait an Interval.
func (c *Container) WaitHealthy(ctx context.Context) error {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	h := rec.Config.Healthcheck
	if h == nil {
		return fmt.Errorf("%w: container %s has no health check", ErrInvalid, c.Name)
	}
	interval, timeout, retries := h.Interval, h.Timeout, h.Retries
	if interval == 0 {
		interval = defaultHealthInterval
	}
	if timeout == 0 {
		timeout = defaultHealthTimeout
	}
	if retries == 0 {
		retries = defaultHealthRetries
	}
	args := h.Test[1:]
	if h.Test[0] == "CMD-SHELL" {
		// The image's SHELL, as docker's probe takes it.
		args = append(slices.Clone(shellOf(rec.Config.Shell)), h.Test[1])
	}
	failures := 0
	for {
		began := time.Now()
		out, code, err := c.probe(ctx, args, timeout)
		if err == nil && code == 0 {
			return nil
		}
		st, serr := c.State(ctx)
		// Restarted by its policy, or about to be: its checks start
		// afresh with the new run, as docker's do. (A check that found
		// it not running while the record says running raced its exit,
		// not recorded yet: whether it restarts is seen next time.)
		restarted := st.Restarting || st.StartedAt.After(began) ||
			(errors.Is(err, ErrNotRunning) && st.Status == statusRunning)
		switch {
		case serr != nil:
			return serr
		case restarted:
			failures = 0
		case !st.Running: // an exec that raced the exit may have failed otherwise
			return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
		case err != nil:
			return err
		}
		if !restarted && time.Since(st.StartedAt) >= h.StartPeriod {
			failures++
		}
		if failures >= retries {
			return fmt.Errorf("container %s: health check failed %d times in a row, the last with exit code %d: %q: %w",
				c.Name, failures, code, strings.TrimSpace(out), ErrUnhealthy)
		}
		next := interval
		if restarted {
			next = min(interval, 50*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(next):
		}
	}
}

// probe runs one health check: its output (the first 4 KiB, as docker
// keeps) and exit code. One that outlives timeout is killed and fails, as
// does a command that cannot run (code 126 or 127). err is for the
// container stopping, or ctx ending.
func (c *Container) probe(ctx context.Context, args []string, timeout time.Duration) (string, int, error) {
	var out limitedBuffer
	p := &Process{Args: args, Stdout: &out, Stderr: &out}
	e, err := c.Exec(ctx, p)
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		return err.Error(), ee.Code, nil
	case err != nil:
		return "", 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = e.Wait(pctx)
	if pctx.Err() != nil {
		// Past its timeout, or the caller gave up: the check goes either way.
		e.Signal(context.WithoutCancel(ctx), syscall.SIGKILL)
		e.Wait(context.WithoutCancel(ctx))
		if ctx.Err() != nil {
			return "", 0, ctx.Err()
		}
		return fmt.Sprintf("health check exceeded its %v timeout", timeout), -1, nil
	}
	switch {
	case err == nil:
		return out.String(), 0, nil
	case errors.As(err, &ee):
		return out.String(), ee.Code, nil
	}
	return "", 0, err
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
