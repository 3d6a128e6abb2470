package berth

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	// As docker's daemon: a check that ran every few nanoseconds would keep
	// a CPU busy with execs.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"start period", h.StartPeriod}} {
		if d.v != 0 && d.v < time.Millisecond {
			return nil, fmt.Errorf("%w: health check %s %v is less than 1ms", ErrInvalid, d.name, d.v)
		}
	}
	return &h, nil
}

// The health statuses (ContainerState.Health.Status), as docker's.
const (
	// HealthStarting: no check has passed since the container started,
	// and fewer than Retries have failed in a row.
	HealthStarting = "starting"
	// HealthHealthy: the last check passed.
	HealthHealthy = "healthy"
	// HealthUnhealthy: Retries checks failed in a row since the last pass
	// (or the start), not counting those within StartPeriod of the start
	// while it was still starting.
	HealthUnhealthy = "unhealthy"
)

// HealthState is a container's health (docker inspect's State.Health):
// what its checks found since it last started.
type HealthState struct {
	// Status is HealthStarting, HealthHealthy or HealthUnhealthy.
	Status string
	// FailingStreak counts the checks that failed in a row, those within
	// the start period not included.
	FailingStreak int
	// Log is the last five checks, oldest first, kept from run to run.
	Log []HealthResult
}

// HealthResult is one run of a health check.
type HealthResult struct {
	Start, End time.Time
	// ExitCode is the check's exit code: 0 passed; -1 when it outlived its
	// Timeout or could not be run.
	ExitCode int
	// Output is its first 4 KiB of output and error output ("..." after
	// them when it wrote more), or why it failed.
	Output string
}

// healthLogSize is how many results HealthState.Log keeps (docker's).
const healthLogSize = 5

// healthStartInterval is how often the check runs within the start period
// while the container is starting, unless its Interval is shorter
// (docker's default --health-start-interval).
const healthStartInterval = 5 * time.Second

// healthDelay is how long after the start, or after a check ended, the
// next check runs, as docker schedules them: Interval; within StartPeriod,
// what is left of it when that is shorter, else, while still starting,
// healthStartInterval (or Interval when shorter: docker would wait 5 s
// between checks asked for every 50 ms). Never under 1 ms (older records
// may hold shorter times).
func healthDelay(h *HealthConfig, sinceStart time.Duration, status string) time.Duration {
	interval := cmp.Or(h.Interval, defaultHealthInterval)
	delay := interval
	switch left := h.StartPeriod - sinceStart; {
	case left <= 0:
	case left < interval:
		delay = left
	case status == HealthStarting:
		delay = min(interval, healthStartInterval)
	}
	return max(delay, time.Millisecond)
}

// nextHealth is the health h becomes with check res (docker's rules):
// a pass makes the container healthy; a failure counts against it unless
// it is still starting within StartPeriod of started, and Retries of them
// in a row make it unhealthy.
func nextHealth(h HealthState, cfg *HealthConfig, started time.Time, res HealthResult) HealthState {
	h.Log = append(slices.Clone(h.Log[max(0, len(h.Log)-healthLogSize+1):]), res)
	switch {
	case res.ExitCode == 0:
		h.Status, h.FailingStreak = HealthHealthy, 0
	case failureCounts(h.Status, cfg, started, res):
		h.FailingStreak++
		if h.FailingStreak >= cmp.Or(cfg.Retries, defaultHealthRetries) {
			h.Status = HealthUnhealthy
		}
	}
	return h
}

// failureCounts reports whether a failed check res counts against a
// container started at started whose health was status: unless it is
// still starting within its start period (docker's rule).
func failureCounts(status string, cfg *HealthConfig, started time.Time, res HealthResult) bool {
	return status != HealthStarting || res.Start.Sub(started) >= cfg.StartPeriod
}

// unwatched marks the health of a container whose checks stop (it was
// paused or ended) unhealthy, as docker's daemon marks it; the next check
// after an Unpause, or the next start, says otherwise.
func (st *ContainerState) unwatched() {
	if st.Health != nil {
		st.Health.Status = HealthUnhealthy
	}
}

// recordHealth records check res of the container's run number starts,
// and returns the health it made. It fails with errUnchanged once that
// run no longer runs, or while it is paused: the check is not the
// container's to count.
func (r *Runtime) recordHealth(id string, starts int, res HealthResult) (HealthState, error) {
	var h HealthState
	_, err := r.updateRecord(context.Background(), id, func(cur *containerRecord) error {
		// Not while paused either: a check that ended as the container
		// was frozen is not counted, as docker counts none then.
		if cur.Starts != starts || cur.State.Status != statusRunning || cur.Config.Healthcheck == nil {
			return errUnchanged
		}
		h = HealthState{Status: HealthStarting}
		if cur.State.Health != nil {
			h = *cur.State.Health
		}
		h = nextHealth(h, cur.Config.Healthcheck, cur.State.StartedAt, res)
		cur.State.Health = &h
		return nil
	})
	return h, err
}

// watchHealth runs the container's health check while run lasts, as
// docker's daemon does (see healthDelay), and records what it finds in
// the container's State.Health. rec is the run's record as launch wrote
// it. It runs in the process that started the container: the program for
// an attached one, the monitor for a detached one. A paused container is
// not checked.
func (run *running) watchHealth(rec containerRecord) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-run.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c := &Container{ID: rec.ID, Name: rec.Name, rt: run.rt}
	cfg, starts, started := rec.Config.Healthcheck, rec.Starts, rec.State.StartedAt
	args := healthArgs(&rec)
	status := HealthStarting
	for {
		t := time.NewTimer(healthDelay(cfg, time.Since(started), status))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		res, err := c.probe(ctx, &rec, args, cmp.Or(cfg.Timeout, defaultHealthTimeout))
		switch {
		case ctx.Err() != nil, errors.Is(err, ErrClosed):
			return
		case err != nil:
			continue // paused, or ending: no check's result
		}
		if h, err := run.rt.recordHealth(rec.ID, starts, res); err == nil {
			status = h.Status
		}
	}
}

// healthArgs is the command a container's check runs: CMD's arguments, or
// CMD-SHELL's command through the image's SHELL (as docker's probe takes
// it), by default /bin/sh -c.
func healthArgs(rec *containerRecord) []string {
	h := rec.Config.Healthcheck
	if h.Test[0] == "CMD-SHELL" {
		return append(slices.Clone(shellOf(rec.Config.Shell)), h.Test[1])
	}
	return h.Test[1:]
}

// WaitHealthy waits until the container is healthy (testcontainers'
// wait.ForHealthCheck, docker's "healthy"): its health check is its
// image's HEALTHCHECK, or WithHealthcheck's. It returns at once for a
// container whose State.Health says healthy. Otherwise it runs the check
// itself, at once and then on the schedule the container's own checks
// keep (see ContainerState.Health): docker's first check would come an
// Interval (30 s by default) after the start. A pass is recorded as
// theirs are, making the container healthy; its failures are its own,
// so that a caller waiting early does not make the container unhealthy
// sooner. The command runs in the container as docker runs it (CMD as an
// Exec of its arguments, CMD-SHELL through the image's SHELL, by default
// /bin/sh -c), bounded by Timeout (30 s).
//
// It fails with an error wrapping ErrUnhealthy, with the last check's
// exit code and output, once Retries (3) of its checks failed in a row,
// not counting those within StartPeriod of the container's start while
// it is starting (docker's rule); with
// ErrInvalid for a container with no health check; ErrNotRunning when the
// container is not running or stops (not while its restart policy
// restarts it: the checks start afresh with the new run); and ctx's
// error when ctx ends first.
func (c *Container) WaitHealthy(ctx context.Context) error {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	cfg := rec.Config.Healthcheck
	if cfg == nil {
		return fmt.Errorf("%w: container %s has no health check", ErrInvalid, c.Name)
	}
	args, timeout := healthArgs(rec), cmp.Or(cfg.Timeout, defaultHealthTimeout)
	retries := cmp.Or(cfg.Retries, defaultHealthRetries)
	failures, starts := 0, rec.Starts
	for {
		if rec.Starts != starts { // started again: its checks start afresh
			failures, starts = 0, rec.Starts
		}
		delay := 50 * time.Millisecond // unless a check says otherwise
		switch st := rec.shownState(); {
		case st.Status == statusRunning && st.Health != nil && st.Health.Status == HealthHealthy:
			return nil
		case st.Status == statusRunning:
			res, err := c.probe(ctx, rec, args, timeout)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, ErrNotRunning):
				// Ended, or paused: its record says which soon.
			case err != nil:
				return err
			case res.ExitCode == 0:
				_, err := c.rt.recordHealth(c.ID, rec.Starts, res)
				if err == nil {
					return nil
				}
				if !errors.Is(err, errUnchanged) {
					return err
				}
				// The run it checked ended, or was paused.
			default:
				status := HealthStarting // a record from before health was recorded
				if st.Health != nil {
					status = st.Health.Status
				}
				if failureCounts(status, cfg, rec.State.StartedAt, res) {
					failures++
				}
				if failures >= retries {
					return fmt.Errorf("container %s: health check failed %d times in a row, the last with exit code %d: %q: %w",
						c.Name, failures, res.ExitCode, strings.TrimSpace(res.Output), ErrUnhealthy)
				}
				delay = healthDelay(cfg, time.Since(rec.State.StartedAt), HealthStarting)
			}
		case st.Status == statusPaused, st.Restarting, rec.starting():
		default:
			return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if rec, err = c.rt.currentRecord(c.ID); err != nil {
			return err
		}
	}
}

// probe runs one health check in the run rec records, bounded by
// timeout. One that outlives it is killed, and its result says so with
// exit code -1, as does one that could not be started. err is for the
// container not running (paused, or its run ending: a check killed as it
// ends failed nothing), the Runtime closed, or ctx ending.
func (c *Container) probe(ctx context.Context, rec *containerRecord, args []string, timeout time.Duration) (HealthResult, error) {
	res := HealthResult{Start: time.Now().UTC()}
	var out limitedBuffer
	p := &Process{Args: args, Stdout: &out, Stderr: &out}
	e, err := c.Exec(ctx, p)
	var ee *ExitError
	switch {
	case errors.As(err, &ee): // 126 or 127: it could not be run
		res.ExitCode, res.Output, res.End = ee.Code, err.Error(), time.Now().UTC()
		return res, nil
	case errors.Is(err, ErrNotRunning), errors.Is(err, ErrClosed), err != nil && ctx.Err() != nil:
		return res, err
	case err != nil:
		res.ExitCode, res.Output, res.End = -1, err.Error(), time.Now().UTC()
		return res, nil
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = e.Wait(pctx)
	switch {
	case ctx.Err() != nil:
		e.Signal(context.WithoutCancel(ctx), syscall.SIGKILL)
		e.Wait(context.WithoutCancel(ctx))
		return res, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		e.Signal(ctx, syscall.SIGKILL)
		e.Wait(ctx)
		res.ExitCode, res.Output = -1, fmt.Sprintf("Health check exceeded timeout (%v)", timeout)
		if o := out.String(); o != "" {
			res.Output += ": " + o
		}
	case errors.As(err, &ee) && ee.Signal != 0 && rec.endsWithin(250):
		// The kernel kills the processes of a pid namespace whose first
		// process exits: the check was cut short, not failed.
		return res, fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	case errors.As(err, &ee):
		res.ExitCode, res.Output = ee.Code, out.String()
	case err != nil:
		res.ExitCode, res.Output = -1, err.Error()
	default:
		res.Output = out.String()
	}
	res.End = time.Now().UTC()
	return res, nil
}

// endsWithin reports whether the first process of the run rec records has
// ended, is exiting, or ends within ms milliseconds. (A pid namespace's
// first process is exiting, PF_EXITING set, before the kernel kills the
// namespace's other processes, and becomes a zombie only once they are
// gone.)
func (rec *containerRecord) endsWithin(ms int) bool {
	const pfExiting = 0x4
	fd, err := unix.PidfdOpen(rec.State.Pid, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	// The pidfd pins the process: check it is still the container's.
	start, _, flags, _ := procStat(rec.State.Pid)
	return start != rec.PidStart || flags&pfExiting != 0 || exitedWithin(fd, ms)
}

// limitedBuffer keeps the first 4 KiB written to it, as docker keeps of a
// check's output; String adds "..." when more was written.
type limitedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := max(4096-b.buf.Len(), 0)
	b.buf.Write(p[:min(len(p), room)])
	b.truncated = b.truncated || len(p) > room
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.truncated {
		return b.buf.String() + "..."
	}
	return b.buf.String()
}
