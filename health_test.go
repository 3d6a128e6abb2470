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

	failing := berth.HealthConfig{Test: []string{"CMD", "false"}, Interval: 20 * time.Millisecond, StartPeriod: time.Nanosecond, Retries: 3}
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

	slow := berth.HealthConfig{Test: []string{"CMD", "sleep", "30"}, Timeout: 100 * time.Millisecond, StartPeriod: time.Nanosecond, Retries: 1}
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
