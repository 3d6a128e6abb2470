package berth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// RestartPolicy says when a detached container that exits is started
// again, as docker run --restart does.
type RestartPolicy struct {
	// Name is "no" (or empty), "always", "unless-stopped" or "on-failure".
	// "always" and "unless-stopped" restart the container whenever it
	// exits; "on-failure" only when it exits with a non-zero code.
	Name string
	// MaxRetries bounds how many times "on-failure" restarts the
	// container; 0 means without bound. Other policies take none.
	MaxRetries int
}

// The restart policies' names.
const (
	RestartNo            = "no"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
	RestartOnFailure     = "on-failure"
)

// WithRestartPolicy has the container's monitor start it again when it
// exits, as the policy says (docker run --restart). A container ended by
// Stop, a forced Remove or a stopping Signal (see Signal) is not
// restarted under any policy until Start or Restart start it again. Restarts wait 100 ms, then twice
// as long after each restart, up to a minute, and again 100 ms once a run
// lasted 10 seconds (docker's back-off); meanwhile the container's State
// says Restarting, with the last run's exit code. Only a detached
// container (WithDetach) can have a policy: an attached one ends with its
// program. A policy cannot be combined with WithAutoRemove. Restarts are
// the root's monitor's work. One whose monitor died (killed, or the host
// went down) is started again by the next New on its root, as docker's
// daemon starts such containers when it starts, its restart count back to
// 0: one that was waiting out its back-off, or being restarted; and one
// whose process died too (a host crash), marked exited with the unknown
// code 255, when its policy restarts that. One whose process outlived its
// monitor runs on, unowned, and is started again by the first New after
// it exits.
func WithRestartPolicy(p RestartPolicy) RunOption {
	return runOptionFunc(func(c *runConfig) { c.restart = p })
}

// check validates the policy with docker's rules and messages.
func (p RestartPolicy) check(detach, autoRemove bool) error {
	switch p.Name {
	case "", RestartNo, RestartAlways, RestartUnlessStopped, RestartOnFailure:
	default:
		return fmt.Errorf("%w: invalid restart policy '%s'", ErrInvalid, p.Name)
	}
	switch {
	case p.MaxRetries < 0:
		return fmt.Errorf("%w: maximum retry count cannot be negative", ErrInvalid)
	case p.MaxRetries > 0 && p.Name != RestartOnFailure:
		return fmt.Errorf("%w: maximum retry count cannot be used with restart policy '%s'", ErrInvalid, p.Name)
	case !p.restarts():
		return nil
	case autoRemove:
		return fmt.Errorf("%w: conflicting options: cannot specify both a restart policy and auto-remove", ErrInvalid)
	case !detach:
		return fmt.Errorf("%w: restart policy %q needs a detached container (WithDetach): an attached one ends with its program", ErrInvalid, p.Name)
	}
	return nil
}

// restarts reports whether the policy ever restarts a container.
func (p RestartPolicy) restarts() bool { return p.Name != "" && p.Name != RestartNo }

// restartAfter reports whether a container that exited with code, after
// restarts restarts by the policy, is started again: never once its user
// ended it (stopped: see endByUser).
func (p RestartPolicy) restartAfter(code, restarts int, stopped bool) bool {
	switch {
	case stopped:
		return false
	case p.Name == RestartAlways || p.Name == RestartUnlessStopped:
		return true
	case p.Name == RestartOnFailure:
		return code != 0 && (p.MaxRetries == 0 || restarts < p.MaxRetries)
	}
	return false
}

// Docker's restart back-off.
const (
	firstRestartDelay = 100 * time.Millisecond
	maxRestartDelay   = time.Minute
	restartResetAfter = 10 * time.Second // a run this long starts the back-off afresh
)

// restartDelay is how long to wait before a restart, given the last wait
// (0 before the first) and how long the run that ended lasted.
func restartDelay(last, ran time.Duration) time.Duration {
	if last == 0 || ran >= restartResetAfter {
		return firstRestartDelay
	}
	return min(2*last, maxRestartDelay)
}

// restartPending reports whether the container, exited, waits out the
// back-off before its policy restarts it: its record says so, and the
// monitor (or the program that claimed the restart after the monitor
// died: see claimRestart) that is to restart it, named as its starter,
// still runs. One whose starter died is restartUnwatched, for the next
// sweep to claim. (While it is started again, the record says "created"
// with Restarting set: starting.)
func (rec *containerRecord) restartPending() bool {
	return rec.State.Restarting && rec.State.Status == statusExited && rec.creatorLives()
}

var errRestartCalledOff = errors.New("restart called off")

// errUnchanged, from an updateRecord function, leaves the record as it was.
var errUnchanged = errors.New("record unchanged")

// supervise waits for the end of a run the monitor started and, for as
// long as the container's restart policy asks for it (the exit's record
// says so: the policy may have changed since the start, see Update),
// starts the container again after the back-off. It returns when the
// container stays exited, is removed or was started by another program.
func (m *monitor) supervise(run *running) {
	defer m.release()
	var delay time.Duration
	for run != nil {
		<-run.done
		if !run.restarting {
			return
		}
		delay = restartDelay(delay, run.ran)
		run = m.waitAndRestart(run.rec.ID, run.rec.Starts, delay)
	}
}

// waitAndRestart waits out the back-off, reading the record again every
// 250 ms meanwhile (a Stop, Start or Remove calls the restart off, and the
// monitor need not linger for it), then restarts the container; past the back-off,
// the owner lock may be held a moment by a Commit or a Start (which calls
// the restart off). Given up on while the record says restarting (it
// could not be read or written), the container is left exited, not
// "restarting" for as long as this monitor lives.
func (m *monitor) waitAndRestart(id string, starts int, delay time.Duration) *running {
	defer m.rt.updateRecord(context.Background(), id, func(cur *containerRecord) error {
		if !cur.restartPending() || cur.Starts != starts || cur.Creator != os.Getpid() {
			return errUnchanged
		}
		cur.State.Restarting = false
		return nil
	})
	for end := time.Now().Add(delay); ; {
		time.Sleep(max(min(time.Until(end), 250*time.Millisecond), 20*time.Millisecond))
		if rec, err := m.rt.readRecord(id); err != nil || !rec.State.Restarting || rec.Starts != starts {
			return nil
		}
		if time.Now().After(end) {
			if run, busy := m.restart(id, starts); !busy {
				return run
			}
		}
	}
}

// restart starts container id again by its restart policy, unless the
// restart was called off. It reports busy when another program holds the
// container's owner lock. On failure the container is left exited with
// the reason in its State, as a failed Start leaves it.
func (m *monitor) restart(id string, starts int) (_ *running, busy bool) {
	rec, unlock, busy := m.rt.prepareRestart(id, starts)
	if rec == nil {
		return nil, busy
	}
	run, err := m.rt.launch(context.Background(), rec, stdio{}, unlock)
	if err != nil {
		return nil, false // launch recorded why
	}
	return run, false
}

// prepareRestart readies container id to be started again by its restart
// policy after its run number starts, and returns its record with its
// owner lock held: nil when the restart was called off, or failed (the
// container is then left exited with the reason in its State), with busy
// set when another program holds the lock.
func (r *Runtime) prepareRestart(id string, starts int) (_ *containerRecord, unlock func(), busy bool) {
	rec, unlock, err := r.lockOwner(id)
	if err != nil {
		return nil, nil, errors.Is(err, errOwned)
	}
	if !rec.State.Restarting || rec.Starts != starts {
		unlock()
		return nil, nil, false
	}
	ctx := context.Background()
	c := &Container{ID: id, Name: rec.Name, rt: r}
	if err := r.prepareStartAgain(ctx, c, rec, true); err != nil {
		if !errors.Is(err, errRestartCalledOff) {
			r.updateRecord(ctx, id, func(cur *containerRecord) error {
				cur.State.Restarting = false
				cur.State.Error = "restarting: " + err.Error()
				return nil
			})
		}
		unlock()
		return nil, nil, false
	}
	return rec, unlock, false
}

// callOffUnwatched records that its user ended container id whose owner
// died (its process ended, its record still says running: processGone)
// or whose restart by its policy its monitor left when it died, claimed
// since by a sweep or not: no sweep restarts it then, and a claim is
// called off as endByUser calls off a monitor's pending restart. (The
// record the caller judged may predate a sweep's claim.) It reports
// movedOn for one being started again meanwhile: the caller reads it
// again.
func (r *Runtime) callOffUnwatched(ctx context.Context, id string) (movedOn bool, err error) {
	_, err = r.updateRecord(ctx, id, func(cur *containerRecord) error {
		switch {
		case cur.State.Restarting && cur.State.Status == statusCreated:
			movedOn = true
			return errUnchanged
		case cur.State.Restarting && cur.State.Status == statusExited:
			cur.State.Restarting = false
		case cur.processGone():
		default:
			return errUnchanged
		}
		cur.StopRequested = true
		return nil
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	return movedOn, err
}

// What endByUser found.
const (
	endRun       = iota // the run rec records goes on: signal it
	endCalledOff        // a pending restart was called off: nothing runs
	endMovedOn          // the record changed since rec: read it again
)

// endByUser records that the user ends container rec's run (Stop, a
// Signal that stops it, a forced Remove), before it is signalled, in one
// record update: its restart policy then leaves it exited, and a restart
// the policy has pending is called off (docker stop and kill of a
// restarting container). Only if the record still tells of the run or
// the back-off rec does: a run that exits meanwhile may be the policy's
// to restart, and is then read again.
func (r *Runtime) endByUser(ctx context.Context, rec *containerRecord) (int, error) {
	found := endMovedOn
	_, err := r.updateRecord(ctx, rec.ID, func(cur *containerRecord) error {
		switch {
		case cur.Starts != rec.Starts:
		case cur.State.Running:
			found = endRun
		case cur.restartPending():
			found, cur.State.Restarting = endCalledOff, false
		}
		if found == endMovedOn {
			return errUnchanged
		}
		cur.StopRequested = true
		return nil
	})
	if found == endMovedOn {
		err = nil
	}
	return found, err
}
