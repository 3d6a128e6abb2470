package berth_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// TestRestartPolicyRefused: a policy docker refuses, or one that cannot
// work (an attached or auto-removed container), fails Run with
// ErrInvalid and leaves no container.
func TestRestartPolicyRefused(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, tc := range []struct {
		policy berth.RestartPolicy
		opts   []berth.RunOption
		want   string
	}{
		{berth.RestartPolicy{Name: "sometimes"}, []berth.RunOption{berth.WithDetach()}, "invalid restart policy 'sometimes'"},
		{berth.RestartPolicy{Name: "always", MaxRetries: 3}, []berth.RunOption{berth.WithDetach()}, "maximum retry count cannot be used with restart policy 'always'"},
		{berth.RestartPolicy{Name: "on-failure", MaxRetries: -1}, []berth.RunOption{berth.WithDetach()}, "maximum retry count cannot be negative"},
		{berth.RestartPolicy{Name: "always"}, nil, "needs a detached container"},
		{berth.RestartPolicy{Name: "unless-stopped"}, []berth.RunOption{berth.WithDetach(), berth.WithAutoRemove()}, "auto-remove"},
	} {
		opts := append([]berth.RunOption{berth.WithRestartPolicy(tc.policy)}, tc.opts...)
		c, err := rt.Run(ctx, "busybox", sh("true"), opts...)
		if err == nil {
			c.Remove(ctx, berth.WithForce())
			t.Errorf("Run with %+v succeeded", tc.policy)
			continue
		}
		if !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run with %+v: %v; want ErrInvalid saying %q", tc.policy, err, tc.want)
		}
	}
	if all, err := rt.Containers(ctx, berth.WithAll()); err != nil || len(all) != 0 {
		t.Errorf("containers after refused runs: %d, %v", len(all), err)
	}
	// "no" is no policy, also for an attached container.
	c := mustRun(t, rt, "busybox", sh("true"), berth.WithRestartPolicy(berth.RestartPolicy{Name: "no"}))
	if err := c.Wait(ctx); err != nil {
		t.Errorf("attached run with policy no: %v", err)
	}
}

// TestRestartOnFailure: on-failure restarts a container that fails, at
// most MaxRetries times, keeping its filesystem; one that succeeds is
// left exited.
func TestRestartOnFailure(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	policy := berth.WithRestartPolicy(berth.RestartPolicy{Name: "on-failure", MaxRetries: 2})
	c := mustRun(t, rt, "busybox", sh(counting), berth.WithDetach(), policy)
	defer c.Remove(ctx, berth.WithForce())
	info := settled(t, c)
	if info.State.ExitCode != 3 || info.RestartCount != 2 {
		t.Errorf("after its retries: exit %d, RestartCount %d; want 3 and 2", info.State.ExitCode, info.RestartCount)
	}
	if got := logsOf(t, c); got != "run 1\nrun 2\nrun 3\n" {
		t.Errorf("logs = %q, want three runs counted in the kept filesystem", got)
	}
	if info.RestartPolicy != (berth.RestartPolicy{Name: "on-failure", MaxRetries: 2}) {
		t.Errorf("Inspect's RestartPolicy = %+v", info.RestartPolicy)
	}

	ok := mustRun(t, rt, "busybox", sh("echo once"), berth.WithDetach(), policy)
	defer ok.Remove(ctx, berth.WithForce())
	if err := ok.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the first restart would come after 100 ms
	if info := settled(t, ok); info.RestartCount != 0 || logsOf(t, ok) != "once\n" {
		t.Errorf("a run that exited 0 was restarted: RestartCount %d, logs %q", info.RestartCount, logsOf(t, ok))
	}
}

// TestRestartAlways: always restarts a container that exits, even with
// 0, after docker's doubling back-off; Stop and a SIGKILL end it for
// good, and Start starts it with its count reset.
func TestRestartAlways(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	script := "echo x >> /runs; n=$(wc -l < /runs); echo run $n; [ $n -ge 4 ] && exec sleep 300; exit 0"
	c := mustRun(t, rt, "busybox", sh(script), berth.WithDetach(), berth.WithRestartPolicy(berth.RestartPolicy{Name: "always"}))
	defer c.Remove(ctx, berth.WithForce())
	if !eventually(10*time.Second, func() bool { return logsOf(t, c) == "run 1\nrun 2\nrun 3\nrun 4\n" }) {
		t.Fatalf("logs = %q, want four runs", logsOf(t, c))
	}
	var info *berth.ContainerInfo
	if !eventually(5*time.Second, func() bool {
		info, _ = c.Inspect(ctx)
		return info != nil && info.State.Running // its line may be logged before the record says so
	}) || info.RestartCount != 3 {
		t.Fatalf("after three restarts: %+v", info)
	}
	// Each run's line is logged as it starts: the gaps are the back-off,
	// 100, 200 and 400 ms, each at least.
	starts := logTimes(t, c)
	for i, want := range []time.Duration{100, 200, 400} {
		if gap := starts[i+1].Sub(starts[i]); gap < want*time.Millisecond*9/10 {
			t.Errorf("restart %d came %v after the last start, want ≥ %d ms", i+1, gap, want)
		}
	}

	// The next back-off is 800 ms: past it, a stopped container is still
	// exited.
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	if st, _ := c.State(ctx); st.Running || st.Restarting || st.Status != "exited" {
		t.Fatalf("after Stop: %+v, want exited for good", st)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err := c.Inspect(ctx); err != nil || !info.State.Running || info.RestartCount != 0 {
		t.Fatalf("after Start: %+v, RestartCount %d, %v; want running, count reset", info.State, info.RestartCount, err)
	}
	if err := c.Signal(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); exitCode(err) != 137 {
		t.Fatalf("Wait after SIGKILL: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if st, _ := c.State(ctx); st.Status != "exited" || st.ExitCode != 137 {
		t.Errorf("after a SIGKILL: %+v, want exited 137 for good (docker kill)", st)
	}
}

// TestRestartSignalNotStop: a signal other than the container's stop
// signal leaves the policy to restart what it ends (docker kill -s with
// a STOPSIGNAL set).
func TestRestartSignalNotStop(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	script := "trap 'exit 5' HUP; echo x >> /runs; n=$(wc -l < /runs); echo run $n; sleep 300 & wait"
	c := mustRun(t, rt, "busybox", sh(script), berth.WithDetach(), berth.WithStopSignal("SIGUSR1"),
		berth.WithRestartPolicy(berth.RestartPolicy{Name: "always"}))
	defer c.Remove(ctx, berth.WithForce())
	if !eventually(5*time.Second, func() bool { return logsOf(t, c) == "run 1\n" }) {
		t.Fatalf("logs = %q", logsOf(t, c))
	}
	if err := c.Signal(ctx, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return logsOf(t, c) == "run 1\nrun 2\n" }) {
		st, _ := c.State(ctx)
		t.Fatalf("after SIGHUP: logs %q, state %+v; want it restarted", logsOf(t, c), st)
	}
}

// TestRestartCalledOff: Stop, Signal and Remove of a container waiting
// out its back-off call the restart off; Remove without force refuses
// it, as docker refuses to remove a restarting container.
func TestRestartCalledOff(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, end := range []string{"stop", "kill", "rm"} {
		c := mustRun(t, rt, "busybox", sh("echo run; exit 1"), berth.WithDetach(), berth.WithRestartPolicy(berth.RestartPolicy{Name: "always"}))
		defer c.Remove(ctx, berth.WithForce())
		restarting(t, c, 4) // the back-off is 800 ms or more
		runs := logsOf(t, c)
		var err error
		switch end {
		case "stop":
			err = c.Stop(ctx, 0)
		case "kill":
			err = c.Signal(ctx, syscall.SIGKILL)
		case "rm":
			if err := c.Remove(ctx); !errors.Is(err, berth.ErrInUse) {
				t.Errorf("Remove of a restarting container: %v, want ErrInUse", err)
			}
			err = c.Remove(ctx, berth.WithForce())
		}
		if err != nil {
			t.Fatalf("%s of a restarting container: %v", end, err)
		}
		time.Sleep(1500 * time.Millisecond)
		st, err := c.State(ctx)
		switch {
		case end == "rm" && !errors.Is(err, berth.ErrNotFound):
			t.Errorf("after rm -f: %+v, %v; want it gone", st, err)
		case end != "rm" && (err != nil || st.Status != "exited" || st.Restarting):
			t.Errorf("1.5 s after %s: %+v, %v; want exited", end, st, err)
		case end != "rm" && logsOf(t, c) != runs:
			t.Errorf("after %s, logs went from %q to %q: it ran again", end, runs, logsOf(t, c))
		}
	}
}

// TestRestartMonitorKilled: a container whose monitor is killed during
// its back-off is left exited, not "restarting" for ever, and starts
// again on Start.
func TestRestartMonitorKilled(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("echo x >> /runs; [ $(wc -l < /runs) -ge 6 ] && exec sleep 300; exit 1"),
		berth.WithDetach(), berth.WithRestartPolicy(berth.RestartPolicy{Name: "always"}))
	defer c.Remove(ctx, berth.WithForce())
	restarting(t, c, 4) // an 800 ms back-off: time to find and kill the monitor
	pid := monitorPid(t, rt.Root())
	syscall.Kill(pid, syscall.SIGKILL)
	if !eventually(5*time.Second, func() bool { return !alive(pid) }) {
		t.Fatal("the monitor did not die")
	}
	time.Sleep(time.Second)
	// "created" if it was killed starting the container again.
	if st, err := c.State(ctx); err != nil || (st.Status != "exited" && st.Status != "created") || st.Restarting {
		t.Fatalf("with its monitor killed: %+v, %v; want exited", st, err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Its fifth run (Start's) exits 1 and the new monitor restarts it:
	// the sixth runs on.
	if !eventually(5*time.Second, func() bool { st, err := c.State(ctx); return err == nil && st.Running }) {
		st, err := c.State(ctx)
		t.Errorf("after Start: %+v, %v", st, err)
	}
}

// TestRestartWaiters: Wait, WaitLog, WaitListening and WaitHealthy on a container
// that crashes until what it needs is there wait through its restarts
// (docker counts a restarting container running), and a signal that does
// not stop it leaves its back-off alone.
func TestRestartWaiters(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("[ -e /ready ] || exit 3; echo serving; exec httpd -f -p 8080"), berth.WithDetach(),
		berth.WithRestartPolicy(berth.RestartPolicy{Name: "on-failure"}), berth.WithStopSignal("SIGTERM"),
		berth.WithHealthcheck(berth.HealthConfig{Test: []string{"CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/ready"},
			Interval: 50 * time.Millisecond, StartPeriod: 10 * time.Second}))
	defer c.Remove(ctx, berth.WithForce())
	// A back-off of 3.2 s: the waits below begin in it, and the container
	// runs next once /ready is there.
	restarting(t, c, 6)
	if err := c.Signal(ctx, syscall.SIGHUP); err != nil {
		t.Errorf("SIGHUP to a restarting container: %v, want nil", err)
	}
	listening, healthy, waited, logged := make(chan error, 1), make(chan error, 1), make(chan error, 1), make(chan error, 1)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() { logged <- c.WaitLog(wctx, "serving") }()
	go func() { listening <- c.WaitListening(wctx, "tcp", 8080) }()
	go func() { healthy <- c.WaitHealthy(wctx) }()
	go func() { waited <- c.Wait(wctx) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-listening:
		t.Fatalf("WaitListening returned before the service could listen: %v", err)
	case err := <-healthy:
		t.Fatalf("WaitHealthy returned before the service could answer: %v", err)
	case err := <-waited:
		t.Fatalf("Wait returned during the back-off: %v", err)
	case err := <-logged:
		t.Fatalf("WaitLog returned before the service said so: %v", err)
	default:
	}
	if err := c.CopyTo(ctx, "/", bytes.NewReader(tarOf(t, "ready", ""))); err != nil {
		t.Fatal(err)
	}
	if err := <-logged; err != nil {
		t.Errorf("WaitLog: %v", err)
	}
	if err := <-listening; err != nil {
		t.Errorf("WaitListening: %v", err)
	}
	if err := <-healthy; err != nil {
		t.Errorf("WaitHealthy: %v", err)
	}
	if err := c.Stop(ctx, 0); err != nil { // httpd as pid 1 ignores SIGTERM
		t.Fatal(err)
	}
	if err := <-waited; exitCode(err) != 137 {
		t.Errorf("Wait begun during a back-off = %v, want the next run's end (137), not the last's (3)", err)
	}
}

// restarting waits until c waits out a back-off after at least n
// restarts.
func restarting(t *testing.T, c *berth.Container, n int) {
	t.Helper()
	ok := eventually(10*time.Second, func() bool {
		info, err := c.Inspect(context.Background())
		return err == nil && info.State.Status == "restarting" && info.State.Restarting && info.RestartCount >= n
	})
	if !ok {
		info, err := c.Inspect(context.Background())
		t.Fatalf("container %s never seen restarting after %d restarts: %+v, %v", c.Name, n, info, err)
	}
	if info, _ := c.Inspect(context.Background()); info.State.Running || info.State.ExitCode == 0 {
		t.Errorf("restarting: %+v, want not running, with the last exit code", info.State)
	}
}

// settled waits until c's policy is done restarting it, and returns its
// inspect data.
func settled(t *testing.T, c *berth.Container) *berth.ContainerInfo {
	t.Helper()
	var info *berth.ContainerInfo
	ok := eventually(10*time.Second, func() bool {
		var err error
		info, err = c.Inspect(context.Background())
		return err == nil && info.State.Status == "exited" && !info.State.Restarting
	})
	if !ok {
		t.Fatalf("container %s still restarting: %+v", c.Name, info)
	}
	return info
}

func logsOf(t *testing.T, c *berth.Container) string {
	var out bytes.Buffer
	if err := c.Logs(context.Background(), &out, &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// logTimes are the timestamps of c's log lines.
func logTimes(t *testing.T, c *berth.Container) []time.Time {
	var out bytes.Buffer
	if err := c.Logs(context.Background(), &out, &out, berth.WithTimestamps()); err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for sc := bufio.NewScanner(&out); sc.Scan(); {
		stamp, _, _ := strings.Cut(sc.Text(), " ")
		ts, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		times = append(times, ts)
	}
	return times
}

// TestRestartUnwatched: containers whose restart policy lost its monitor
// (killed with their processes, as a host crash kills them) are started
// again by the next New on their root, as docker's daemon starts them
// when it starts: "always", and "on-failure" (the exit unknown, 255),
// with a fresh restart count, and one that was waiting out its back-off;
// not one without a policy, nor one its user stopped; and a Stop right
// after that New is not undone by the restart.
func TestRestartUnwatched(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	run := func(policy string, p *berth.Process) *berth.Container {
		c := mustRun(t, rt, "busybox", p, berth.WithDetach(), berth.WithRestartPolicy(berth.RestartPolicy{Name: policy}))
		t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
		return c
	}
	sleeper := sh("exec sleep 300")
	always, onFailure, none, stopped, stopAfter := run("always", sleeper), run("on-failure", sleeper), run("no", sleeper), run("unless-stopped", sleeper), run("always", sleeper)
	crashing := run("always", sh("exit 1"))
	if err := stopped.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, c := range []*berth.Container{always, onFailure, none, stopAfter} {
		st, err := c.State(ctx)
		if err != nil || !st.Running {
			t.Fatalf("%s: %+v, %v", c.Name, st, err)
		}
		pids[c.Name] = st.Pid
	}
	restarting(t, crashing, 3) // a back-off of 400 ms or more
	killDead(t, append([]int{monitorPid(t, rt.Root())}, slices.Collect(maps.Values(pids))...)...)

	opened := time.Now()
	rt2, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	// Stopped at once: whether before its restart (which it calls off)
	// or after, it stays stopped.
	if err := stopAfter.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*berth.Container{always, onFailure} {
		if !eventually(10*time.Second, func() bool { st, err := c.State(ctx); return err == nil && st.Running && st.Pid != pids[c.Name] }) {
			st, err := c.State(ctx)
			t.Errorf("%s after its monitor died and the next New: %+v, %v; want started again", c.Name, st, err)
		}
		if info, err := c.Inspect(ctx); err != nil || info.RestartCount != 0 {
			t.Errorf("%s: restart count %d, %v; want 0 (docker resets it when its daemon starts them)", c.Name, info.RestartCount, err)
		}
	}
	if !eventually(10*time.Second, func() bool { st, err := crashing.State(ctx); return err == nil && st.StartedAt.After(opened) }) {
		st, err := crashing.State(ctx)
		t.Errorf("the container in its back-off after the next New: %+v, %v; want started again", st, err)
	}
	rt2.Close() // waits for the starts
	if st, err := none.State(ctx); err != nil || st.Status != "exited" || st.ExitCode != 255 {
		t.Errorf("without a policy: %+v, %v; want exited 255", st, err)
	}
	if st, err := stopped.State(ctx); err != nil || st.Status != "exited" || st.ExitCode != 137 {
		t.Errorf("stopped by its user: %+v, %v; want left exited (137)", st, err)
	}
	if st, err := stopAfter.State(ctx); err != nil || st.Running || st.Restarting {
		t.Errorf("stopped right after the New: %+v, %v; want left stopped", st, err)
	}
}

// TestRestartUnwatchedByMonitor: in a program that keeps its Runtime, the
// next monitor (started for another container) is the first to sweep
// after the last one died, and restarts what that one left, but for a
// container its user stopped before that sweep.
func TestRestartUnwatchedByMonitor(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	run := func() (*berth.Container, int) {
		c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithRestartPolicy(berth.RestartPolicy{Name: "always"}))
		t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
		st, err := c.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c, st.Pid
	}
	c, pid := run()
	stopped, stoppedPid := run()
	st := berth.ContainerState{Pid: pid}
	killDead(t, monitorPid(t, rt.Root()), pid, stoppedPid)
	if err := stopped.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	other := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach())
	defer other.Remove(ctx, berth.WithForce())
	if !eventually(10*time.Second, func() bool { now, err := c.State(ctx); return err == nil && now.Running && now.Pid != st.Pid }) {
		now, err := c.State(ctx)
		t.Errorf("after the next monitor started: %+v, %v; want started again", now, err)
	}
	if now, err := stopped.State(ctx); err != nil || now.Running || now.Restarting {
		t.Errorf("stopped before the next monitor swept: %+v, %v; want left exited", now, err)
	}
}

// killDead SIGKILLs processes pids, which run when it is called (a
// monitor and its containers, as a host crash kills them), and waits
// until each has ended: a zombie the host's init has not reaped yet (it
// takes seconds here) counts as ended, as it does for berth, once its
// threads are gone. It signals
// through pidfds opened first, never a pid reused meanwhile (this
// machine's pid_max is 32768).
func killDead(t *testing.T, pids ...int) {
	t.Helper()
	type proc struct {
		pid, fd int
		start   string
	}
	var procs []proc
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("process %d: %v", pid, err)
		}
		defer unix.Close(fd)
		start, _ := statStart(pid)
		procs = append(procs, proc{pid, fd, start})
	}
	for _, p := range procs {
		unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0)
	}
	for _, p := range procs {
		// A zombie leader's other threads may still be exiting, holding
		// its files (and so its locks): its task list says when they are gone.
		if !eventually(10*time.Second, func() bool {
			start, zombie := statStart(p.pid)
			tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid))
			return start != p.start || zombie && len(tasks) <= 1
		}) {
			t.Fatalf("process %d did not die", p.pid)
		}
	}
}

// statStart is process pid's start time from /proc/PID/stat, "" when no
// process has that pid, and whether it is a zombie.
func statStart(pid int) (start string, zombie bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return "", false
	}
	return f[19], f[0] == "Z" || f[0] == "X"
}
