package berth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestWaitHealthy runs health checks as docker does: the image's
// HEALTHCHECK, or WithHealthcheck's over it; healthy at the first pass;
// unhealthy after Retries failures in a row, those within StartPeriod
// not counted; a run beyond Timeout failing; none to run refused.
func TestWaitHealthy(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	ref := configImage(t, rt, "healthy", v1.Config{
		Cmd: []string{"sh", "-c", "sleep 0.3; touch /ready; exec sleep 300"},
		Healthcheck: &v1.HealthConfig{
			Test:        []string{"CMD-SHELL", "test -f /ready"},
			Interval:    50 * time.Millisecond,
			StartPeriod: 10 * time.Second, // failures until /ready do not count
		},
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	c := mustRun(t, rt, ref, nil, berth.WithAutoRemove())
	defer c.Stop(ctx, 0)
	if info, err := c.Inspect(ctx); err != nil || info.Healthcheck == nil || info.Healthcheck.Test[1] != "test -f /ready" {
		t.Errorf("Inspect's Healthcheck = %+v, %v; want the image's", info, err)
	}
	if err := c.WaitHealthy(wctx); err != nil {
		t.Errorf("WaitHealthy with the image's check: %v", err)
	}
	if d := sinceStart(t, c); d < 250*time.Millisecond {
		t.Errorf("healthy %v after the start, before the container made /ready (0.3 s)", d)
	}

	failing := berth.HealthConfig{Test: []string{"CMD", "false"}, Interval: 20 * time.Millisecond, StartPeriod: time.Millisecond, Retries: 3}
	c2 := mustRun(t, rt, ref, nil, berth.WithAutoRemove(), berth.WithHealthcheck(failing))
	defer c2.Stop(ctx, 0)
	if err := c2.WaitHealthy(wctx); !errors.Is(err, berth.ErrUnhealthy) {
		t.Errorf("WaitHealthy with a failing check: %v, want ErrUnhealthy", err)
	}

	failing.StartPeriod = 500 * time.Millisecond
	c3 := mustRun(t, rt, ref, nil, berth.WithAutoRemove(), berth.WithHealthcheck(failing))
	defer c3.Stop(ctx, 0)
	if err := c3.WaitHealthy(wctx); !errors.Is(err, berth.ErrUnhealthy) {
		t.Errorf("WaitHealthy with a failing check and a start period: %v, want ErrUnhealthy", err)
	}
	if d := sinceStart(t, c3); d < 500*time.Millisecond {
		t.Errorf("unhealthy %v after the start, within its 0.5 s start period", d)
	}

	slow := berth.HealthConfig{Test: []string{"CMD", "sleep", "30"}, Timeout: 100 * time.Millisecond, StartPeriod: time.Millisecond, Retries: 1}
	c4 := mustRun(t, rt, ref, nil, berth.WithAutoRemove(), berth.WithHealthcheck(slow))
	defer c4.Stop(ctx, 0)
	start := time.Now()
	if err := c4.WaitHealthy(wctx); !errors.Is(err, berth.ErrUnhealthy) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("WaitHealthy with a check beyond its timeout: %v, want ErrUnhealthy naming the timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a 100 ms timeout took %v", d)
	}

	failing.StartPeriod, failing.Retries = 0, 1000
	c5 := mustRun(t, rt, ref, sh("sleep 0.3"), berth.WithHealthcheck(failing))
	defer c5.Remove(ctx, berth.WithForce())
	if err := c5.WaitHealthy(wctx); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("WaitHealthy on a container that exits: %v, want ErrNotRunning", err)
	}

	none := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithAutoRemove())
	defer none.Stop(ctx, 0)
	if err := none.WaitHealthy(wctx); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("WaitHealthy with no check: %v, want ErrInvalid", err)
	}
	off := mustRun(t, rt, ref, nil, berth.WithAutoRemove(), berth.WithHealthcheck(berth.HealthConfig{Test: []string{"NONE"}}))
	defer off.Stop(ctx, 0)
	if err := off.WaitHealthy(wctx); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("WaitHealthy with the check turned off (NONE): %v, want ErrInvalid", err)
	}
	if _, err := rt.Run(ctx, ref, nil, berth.WithHealthcheck(berth.HealthConfig{Test: []string{"true"}})); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Run with a check not CMD, CMD-SHELL or NONE: %v, want ErrInvalid", err)
	}
	if _, err := rt.Run(ctx, ref, nil, berth.WithHealthcheck(berth.HealthConfig{Interval: time.Microsecond})); !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), "interval") {
		t.Errorf("Run with a check every microsecond: %v, want ErrInvalid naming the interval", err)
	}
}

// sinceStart is how long ago the container's process started.
func sinceStart(t *testing.T, c *berth.Container) time.Duration {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(st.StartedAt)
}

// TestHealthState checks that the process that started a container runs
// its health check without anyone waiting on it, as docker's daemon does,
// and records what it finds in State.Health: starting (failures within
// the start period not counted), healthy at a pass, unhealthy after
// Retries failures in a row, the last five results in its log;
// unhealthy and unchecked while paused, and once stopped; starting again,
// the log kept, at the next start. Both for an attached container
// (checked by this program) and a detached one (checked by its monitor).
func TestHealthState(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	check := berth.HealthConfig{Test: []string{"CMD-SHELL", "test -f /ready"}, Interval: 50 * time.Millisecond, Retries: 2, StartPeriod: time.Minute}
	for _, detach := range []bool{false, true} {
		t.Run(map[bool]string{false: "attached", true: "detached"}[detach], func(t *testing.T) {
			opts := []berth.RunOption{berth.WithHealthcheck(check)}
			if detach {
				opts = append(opts, berth.WithDetach())
			}
			c := mustRun(t, rt, "busybox", sh("exec sleep 300"), opts...)
			defer c.Remove(ctx, berth.WithForce())
			touch := func(verb string) { execOut(t, c, &berth.Process{Args: []string{verb, "/ready"}}) }
			st, err := c.State(ctx)
			if err != nil || st.Health == nil || st.Health.Status != berth.HealthStarting {
				t.Fatalf("State.Health at the start = %+v, %v; want starting", st.Health, err)
			}
			if !eventually(20*time.Second, func() bool { return checksIn(t, c, false) >= 3 }) {
				t.Fatal("no three checks recorded in 20 s")
			}
			if st, _ := c.State(ctx); st.Health.Status != berth.HealthStarting || st.Health.FailingStreak != 0 || st.Health.Log[0].ExitCode != 1 {
				t.Errorf("after failing checks in the start period: %+v; want starting, no streak, exit code 1 logged", st.Health)
			}
			touch("touch")
			h := awaitHealth(t, c, berth.HealthHealthy)
			if last := h.Log[len(h.Log)-1]; last.ExitCode != 0 || last.End.Before(last.Start) || h.FailingStreak != 0 {
				t.Errorf("healthy with log %+v, streak %d; want the last check passed, streak 0", h.Log, h.FailingStreak)
			}

			if err := c.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			paused := checksIn(t, c, true)
			time.Sleep(300 * time.Millisecond)
			if st, _ := c.State(ctx); st.Health.Status != berth.HealthUnhealthy || checksIn(t, c, true) != paused {
				t.Errorf("paused: %+v; want unhealthy (docker's), no check recorded meanwhile", st.Health)
			}
			if err := c.Unpause(ctx); err != nil {
				t.Fatal(err)
			}
			awaitHealth(t, c, berth.HealthHealthy) // the next check passes

			touch("rm")
			h = awaitHealth(t, c, berth.HealthUnhealthy) // its start period does not matter once it passed
			if h.FailingStreak < 2 || len(h.Log) != 5 || h.Log[4].ExitCode != 1 {
				t.Errorf("unhealthy with streak %d and log %+v; want a streak of 2 or more, five results, the last failed", h.FailingStreak, h.Log)
			}
			if err := c.WaitHealthy(ctx); !errors.Is(err, berth.ErrUnhealthy) {
				t.Errorf("WaitHealthy on an unhealthy container whose check still fails: %v, want ErrUnhealthy", err)
			}
			touch("touch")
			awaitHealth(t, c, berth.HealthHealthy) // a pass makes it healthy again

			touch("rm")
			if err := c.Stop(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if st, _ := c.State(ctx); st.Health == nil || st.Health.Status != berth.HealthUnhealthy {
				t.Errorf("State.Health once stopped = %+v, want unhealthy (docker's)", st.Health)
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if st, _ := c.State(ctx); st.Health == nil || st.Health.Status != berth.HealthStarting || st.Health.FailingStreak != 0 || len(st.Health.Log) != 5 {
				t.Errorf("State.Health at the next start = %+v, want starting with the log kept", st.Health)
			}
			touch("touch")
			awaitHealth(t, c, berth.HealthHealthy)
		})
	}
}

// awaitHealth waits until c's State.Health says status, and returns it.
func awaitHealth(t *testing.T, c *berth.Container, status string) berth.HealthState {
	t.Helper()
	var st berth.ContainerState
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		var err error
		if st, err = c.State(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st.Health != nil && st.Health.Status == status {
			return *st.Health
		}
	}
	t.Fatalf("State.Health = %+v after 20 s, want %s", st.Health, status)
	return berth.HealthState{}
}

// checksIn counts c's recorded checks (up to the log's five), or with
// last, returns the start time of the last one as nanoseconds, which
// changes with every check recorded.
func checksIn(t *testing.T, c *berth.Container, last bool) int64 {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil || st.Health == nil {
		t.Fatalf("State.Health = %+v, %v; want one", st.Health, err)
	}
	n := len(st.Health.Log)
	switch {
	case !last:
		return int64(n)
	case n == 0:
		t.Fatal("no check recorded")
	}
	return st.Health.Log[n-1].Start.UnixNano()
}

// TestHealthCheckCutByExit: a check the container's exit kills (the
// kernel kills a pid namespace's processes with its first) failed
// nothing: neither the container's checks nor WaitHealthy count it.
func TestHealthCheckCutByExit(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	slow := berth.HealthConfig{Test: []string{"CMD", "sleep", "30"}, Interval: time.Millisecond, Timeout: time.Minute, Retries: 1}
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithHealthcheck(slow))
	defer c.Remove(ctx, berth.WithForce())
	waited := make(chan error, 1)
	go func() { waited <- c.WaitHealthy(ctx) }()
	time.Sleep(500 * time.Millisecond) // both checks under way
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("WaitHealthy whose check the stop cut short: %v, want ErrNotRunning", err)
	}
	time.Sleep(300 * time.Millisecond)
	if st, _ := c.State(ctx); st.Health == nil || len(st.Health.Log) != 0 || st.Health.FailingStreak != 0 {
		t.Errorf("State.Health after a stop cut the check short = %+v, want nothing recorded", st.Health)
	}
}

// TestHealthUnwatched: a detached container whose monitor died runs on,
// unowned, with no one to check it: the next New's sweep marks its
// health unhealthy (docker's daemon marks so a container it stops
// checking), rather than leaving the last "healthy" for WaitHealthy and
// ps to trust.
func TestHealthUnwatched(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(),
		berth.WithHealthcheck(berth.HealthConfig{Test: []string{"CMD", "true"}, Interval: 50 * time.Millisecond}))
	defer c.Remove(ctx, berth.WithForce())
	awaitHealth(t, c, berth.HealthHealthy)
	killDead(t, monitorPid(t, rt.Root()))
	rt2, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	if st, err := c.State(ctx); err != nil || !st.Running || st.Health == nil || st.Health.Status != berth.HealthUnhealthy {
		t.Errorf("after its monitor died and the next New: %+v, %v; want running, unhealthy", st, err)
	}

	// Its process dead with its monitor, before any sweep: shown dead,
	// and so not healthy.
	d := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(),
		berth.WithHealthcheck(berth.HealthConfig{Test: []string{"CMD", "true"}, Interval: 50 * time.Millisecond}))
	defer d.Remove(ctx, berth.WithForce())
	awaitHealth(t, d, berth.HealthHealthy)
	st, err := d.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killDead(t, monitorPid(t, rt.Root()), st.Pid)
	if st, err := d.State(ctx); err != nil || st.Status != "dead" || st.Health == nil || st.Health.Status != berth.HealthUnhealthy {
		t.Errorf("dead with its monitor, before a sweep: %+v, %v; want dead, unhealthy", st, err)
	}
}
