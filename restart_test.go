package berth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
)

// counting is a script that counts its runs in a file of the container's
// root filesystem, prints the count and exits with it.
const counting = "echo x >> /runs; n=$(wc -l < /runs); echo run $n; exit $n"

// exitCode is the code of Wait's *ExitError, 0 for nil, -1 for another error.
func exitCode(err error) int {
	var ee *berth.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	}
	return -1
}

// TestStartAgain starts an exited attached container again: the changes
// to its filesystem are kept, its log grows, its exit code is the new
// run's, and Wait on handles made before the start waits for the new run.
func TestStartAgain(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	var out bytes.Buffer
	p := sh(counting)
	p.Stdout = &out
	c := mustRun(t, rt, "busybox", p, berth.WithName("again"))
	if got := exitCode(c.Wait(ctx)); got != 1 {
		t.Fatalf("first run: exit %d, want 1", got)
	}
	first, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rt.Container(ctx, "again") // a handle made while it is exited
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	for name, h := range map[string]*berth.Container{"Run's handle": c, "a later handle": other} {
		if got := exitCode(h.Wait(ctx)); got != 2 {
			t.Errorf("Wait on %s after Start: exit %d, want 2 (the second run's)", name, got)
		}
	}
	st, err := c.State(ctx)
	if err != nil || st.Status != "exited" || st.ExitCode != 2 || !st.StartedAt.After(first.StartedAt) {
		t.Errorf("State after the second run = %+v, %v; want exited 2, started after %v", st, err, first.StartedAt)
	}
	if out.String() != "run 1\n" {
		t.Errorf("Run's stdout got %q, want only the first run's output", out.String())
	}
	var logs bytes.Buffer
	if err := c.Logs(ctx, &logs, &logs); err != nil {
		t.Fatal(err)
	}
	if logs.String() != "run 1\nrun 2\n" {
		t.Errorf("Logs = %q, want both runs' output", logs.String())
	}
	// Restart of an exited container starts it.
	if err := c.Restart(ctx, time.Second); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got := exitCode(c.Wait(ctx)); got != 3 {
		t.Errorf("after Restart: exit %d, want 3", got)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatalf("Remove after the restarts: %v", err)
	}
}

// TestStartRunningAndPaused: Start leaves a running container alone (no
// second process) and refuses a paused one; Restart gives a running
// container a new process.
func TestStartRunningAndPaused(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := sleeper(t, rt, "steady")
	before, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start of a running container: %v", err)
	}
	if st, _ := c.State(ctx); st.Pid != before.Pid || !st.Running {
		t.Errorf("Start of a running container changed it: %+v, was %+v", st, before)
	}
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Start of a paused container: %v, want ErrInvalid", err)
	}
	if err := c.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	st, err := c.State(ctx)
	if err != nil || !st.Running || st.Pid == before.Pid || !alive(st.Pid) || !st.StartedAt.After(before.StartedAt) {
		t.Errorf("State after Restart = %+v, %v; want running with a new process (was %+v)", st, err, before)
	}
	if got, err := execOutput(t, c, "echo in"); err != nil || got != "in\n" {
		t.Errorf("exec after Restart: %q, %v", got, err)
	}
}

// TestStartAutoRemoved: an auto-removed container is gone once it exits.
func TestStartAutoRemoved(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("true"), berth.WithAutoRemove())
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("Start of an auto-removed container: %v, want ErrNotFound", err)
	}
}

// TestStartDetachedFromAnotherProgram: a detached container another
// program ran, stopped here, is started here again, and outlives this
// Runtime.
func TestStartDetachedFromAnotherProgram(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	prog := runProgram(t, rt.Root(), "detached", "lasting", "echo x >> /runs; wc -l < /runs; exec sleep 300")
	if err := prog.Wait(); err != nil {
		t.Fatalf("the starting program: %v", err)
	}
	c, err := rt.Container(ctx, "lasting")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitLog(wctx, "1"); err != nil {
		t.Fatalf("the first run's output: %v", err)
	}
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rt2 := sameRoot(t, rt)
	rt.Close()
	c, err = rt2.Container(ctx, "lasting")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, berth.WithForce())
	st, err := c.State(ctx)
	if err != nil || !st.Running || !alive(st.Pid) {
		t.Fatalf("State after the starting Runtime closed = %+v, %v; want running", st, err)
	}
	var logs bytes.Buffer
	if !eventually(5*time.Second, func() bool {
		logs.Reset()
		c.Logs(ctx, &logs, &logs)
		return logs.String() == "1\n2\n"
	}) {
		t.Errorf("Logs = %q, want 1 and 2: the file of the first run kept", logs.String())
	}
}

// TestStartNetworking: a restarted container is on its network again,
// under its name and alias, with its port published anew.
func TestStartNetworking(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if _, err := rt.CreateNetwork(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	c := httpServer(t, rt, "web", berth.WithNetwork("again", "www"), berth.WithPublish("127.0.0.1::80"))
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitListening(wctx, "tcp", 80); err != nil {
		t.Fatalf("after Restart, never listened on 80: %v", err)
	}
	for _, name := range []string{"web", "www"} {
		got, err := output(t, rt, "busybox", sh("wget -q -O - http://"+name+"/"), berth.WithNetwork("again"))
		if err != nil || strings.TrimSpace(got) != "hello from web" {
			t.Errorf("wget http://%s/ after Restart: %q, %v", name, got, err)
		}
	}
	if got := getPublished(t, c); got != "hello from web" {
		t.Errorf("through the published port after Restart: %q", got)
	}
}

// TestStartKeptWhenStarterDies: an attached container started again by a
// program that is then killed is left exited by the next New, with its
// filesystem, not removed as on its first run.
func TestStartKeptWhenStarterDies(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("echo x >> /runs; echo ran; exec sleep 300"), berth.WithName("kept"))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitLog(wctx, "ran"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c = startedByKilledProgram(t, rt, "kept")
	st, err := c.State(ctx)
	if err != nil || st.Running || st.Status != "exited" {
		t.Fatalf("State = %+v, %v; want exited", st, err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The first run's line is kept, this run's comes (the killed start's
	// process may have died before writing one).
	var got string
	if !eventually(5*time.Second, func() bool {
		got, err = execOutput(t, c, "wc -l < /runs")
		n, _ := strconv.Atoi(strings.TrimSpace(got))
		return err == nil && n >= 2
	}) {
		t.Errorf("runs recorded in its filesystem: %q, %v; want at least 2", got, err)
	}
	c.Remove(ctx, berth.WithForce())
}

// TestStartAfterMonitorDied: a detached container whose monitor was
// killed runs on unowned; stopped, it starts again (its record said
// "running" with no owner: Start used to wait for ever).
func TestStartAfterMonitorDied(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithName("orphan"), berth.WithDetach())
	defer c.Remove(ctx, berth.WithForce())
	pid := monitorPid(t, rt.Root())
	syscall.Kill(pid, syscall.SIGKILL)
	if !eventually(5*time.Second, func() bool { return !alive(pid) }) {
		t.Fatal("the monitor did not die")
	}
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st, err := c.State(ctx); err != nil || !st.Running || !alive(st.Pid) {
		t.Errorf("State after Start = %+v, %v; want running", st, err)
	}
}

// monitorPid is the pid of the monitor serving root.
func monitorPid(t *testing.T, root string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		env, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(env, []byte("_BERTH_MONITOR_ROOT="+root+"\x00")) {
			continue
		}
		if cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline")); strings.HasPrefix(string(cmd), "berth-monitor") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	t.Fatalf("no monitor for %s", root)
	return 0
}

// TestStartJoinsNetworkConnectedWhileStopped: Connect to a stopped
// container takes effect at its next start.
func TestStartJoinsNetworkConnectedWhileStopped(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	n, err := rt.CreateNetwork(ctx, "later")
	if err != nil {
		t.Fatal(err)
	}
	c := httpServer(t, rt, "late", berth.WithNetworkMode("none"))
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := n.Connect(ctx, c, "latecomer"); !errors.Is(err, berth.ErrInvalid) {
		t.Fatalf("Connect of a --network none container: %v, want ErrInvalid", err)
	}
	c2 := httpServer(t, rt, "late2")
	if err := c2.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := n.Connect(ctx, c2, "latecomer"); err != nil {
		t.Fatalf("Connect of a stopped container: %v", err)
	}
	if err := c2.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c2.WaitListening(wctx, "tcp", 80); err != nil {
		t.Fatal(err)
	}
	got, err := output(t, rt, "busybox", sh("wget -q -O - http://latecomer/"), berth.WithNetwork("later"))
	if err != nil || strings.TrimSpace(got) != "hello from late2" {
		t.Errorf("wget http://latecomer/ on the network connected while stopped: %q, %v", got, err)
	}
}

// TestRestartPausedAndAutoRemoved: Restart stops a paused container and
// starts it; it refuses an auto-removed one, which stopping would remove,
// and leaves it running.
func TestRestartPausedAndAutoRemoved(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := sleeper(t, rt, "frozen")
	before, _ := c.State(ctx)
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Restart(rctx, 0); err != nil {
		t.Fatalf("Restart of a paused container: %v", err)
	}
	if st, err := c.State(ctx); err != nil || st.Status != "running" || st.Pid == before.Pid {
		t.Errorf("State after Restart of the paused container = %+v, %v", st, err)
	}
	rm := sleeper(t, rt, "passing", berth.WithAutoRemove())
	if err := rm.Restart(ctx, 0); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Restart of an auto-removed container: %v, want ErrInvalid", err)
	}
	if st, err := rm.State(ctx); err != nil || !st.Running {
		t.Errorf("the auto-removed container after the refused Restart: %+v, %v; want it running", st, err)
	}
}

// TestCreate: a container Create made is "created" until Start, survives
// another program's New, takes files (CopyTo) and network connections
// before it starts, and runs with them once started.
func TestCreate(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if _, err := rt.Create(ctx, "busybox", &berth.Process{Args: []string{"true"}, Stdout: &bytes.Buffer{}}); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Create with a Stdout: %v, want ErrInvalid", err)
	}
	c, err := rt.Create(ctx, "busybox", sh("cat /etc/greeting; exit 4"), berth.WithName("made"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	rt2 := sameRoot(t, rt) // its sweep leaves the created container alone
	c2, err := rt2.Container(ctx, "made")
	if err != nil {
		t.Fatalf("the created container from another Runtime: %v", err)
	}
	if st, err := c2.State(ctx); err != nil || st.Status != "created" || st.Running {
		t.Fatalf("State of the created container = %+v, %v; want created", st, err)
	}
	if list, err := rt.Containers(ctx); err != nil || len(list) != 0 {
		t.Errorf("Containers without WithAll = %v, %v; want none running", list, err)
	}
	if list, err := rt.Containers(ctx, berth.WithAll()); err != nil || len(list) != 1 || list[0].State.Status != "created" {
		t.Errorf("Containers(WithAll) = %+v, %v; want the created one", list, err)
	}
	if err := c.Stop(ctx, 0); err != nil {
		t.Errorf("Stop of a created container: %v", err)
	}
	if _, err := c.Exec(ctx, &berth.Process{Args: []string{"true"}}); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Exec in a created container: %v, want ErrNotRunning", err)
	}
	if err := c.CopyTo(ctx, "/etc", bytes.NewReader(tarOf(t, "greeting", "hello\n"))); err != nil {
		t.Fatalf("CopyTo the created container: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := exitCode(c.Wait(ctx)); got != 4 {
		t.Errorf("exit %d, want 4", got)
	}
	var logs bytes.Buffer
	if err := c.Logs(ctx, &logs, &logs); err != nil || logs.String() != "hello\n" {
		t.Errorf("Logs = %q, %v; want the copied file's content", logs.String(), err)
	}

	d, err := rt.Create(ctx, "busybox", sh("true"), berth.WithName("dropped"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx); err != nil {
		t.Errorf("Remove of a created container: %v", err)
	}
	if _, err := rt.Container(ctx, "dropped"); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("Container after Remove: %v, want ErrNotFound", err)
	}
}

// TestCreateDetached: a detached container Create made runs on, once
// started, after the Runtime that started it closed.
func TestCreateDetached(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c, err := rt.Create(ctx, "busybox", sh("exec sleep 300"), berth.WithName("later"), berth.WithDetach())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, berth.WithForce())
	rt2 := sameRoot(t, rt)
	c2, err := rt2.Container(ctx, "later")
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rt2.Close()
	if st, err := c.State(ctx); err != nil || !st.Running || !alive(st.Pid) {
		t.Errorf("State after the starting Runtime closed = %+v, %v; want running", st, err)
	}
}

// TestLifecycleStress runs Start, Stop, Restart, Exec, Pause, Unpause,
// CopyTo, Wait and Remove on a few containers (one of them restarted by
// its restart policy too) from several goroutines at once for a while. No
// operation may hang, and once every container is removed nothing of them
// may be left: cgroups, veths, processes.
func TestLifecycleStress(t *testing.T) {
	if testing.Short() {
		t.Skip("a stress test")
	}
	rt := busyboxRuntime(t)
	ctx := context.Background()
	names := []string{"s0", "s1", "s2", "s3"}
	var ids []string
	for i, name := range names {
		opts := []berth.RunOption{berth.WithName(name)}
		script := "trap 'exit 3' TERM; echo x >> /runs; while true; do sleep 0.05; done"
		if i%2 == 1 {
			opts = append(opts, berth.WithDetach())
		}
		if i == 3 {
			// Its restart policy restarts it after every 0.2 s run.
			script = "trap 'exit 3' TERM; echo x >> /runs; for i in 1 2 3 4; do sleep 0.05; done; exit 1"
			opts = append(opts, berth.WithRestartPolicy(berth.RestartPolicy{Name: "always"}))
		}
		c := mustRun(t, rt, "busybox", sh(script), opts...)
		ids = append(ids, c.ID)
	}
	var copies atomic.Int64
	n, err := rt.CreateNetwork(ctx, "stress")
	if err != nil {
		t.Fatal(err)
	}
	ops := []func(c *berth.Container, ctx context.Context) error{
		func(c *berth.Container, ctx context.Context) error { return n.Connect(ctx, c) },
		func(c *berth.Container, ctx context.Context) error { return n.Disconnect(ctx, c) },
		func(c *berth.Container, ctx context.Context) error {
			_, err := c.Commit(ctx)
			return err
		},
		func(c *berth.Container, ctx context.Context) error {
			_, err := c.Top(ctx)
			return err
		},
		func(c *berth.Container, ctx context.Context) error {
			// Another container made and removed beside these.
			o, err := rt.Create(ctx, "busybox", sh("true"))
			if err == nil {
				err = o.Start(ctx)
				if rerr := o.Remove(ctx, berth.WithForce()); err == nil {
					err = rerr
				}
			}
			return err
		},
		func(c *berth.Container, ctx context.Context) error { return c.Start(ctx) },
		func(c *berth.Container, ctx context.Context) error { return c.Stop(ctx, 50*time.Millisecond) },
		func(c *berth.Container, ctx context.Context) error { return c.Restart(ctx, 50*time.Millisecond) },
		func(c *berth.Container, ctx context.Context) error {
			e, err := c.Exec(ctx, &berth.Process{Args: []string{"true"}})
			if err == nil {
				c.Unpause(ctx) // a Pause after the start would hold the exec'd process
				err = e.Wait(ctx)
			}
			return err
		},
		func(c *berth.Container, ctx context.Context) error {
			err := c.Pause(ctx)
			time.Sleep(5 * time.Millisecond)
			c.Unpause(ctx)
			return err
		},
		func(c *berth.Container, ctx context.Context) error {
			// Two copies of one file at once may race each other: each
			// copy's file is its own.
			return c.CopyTo(ctx, "/", bytes.NewReader(tarOf(t, fmt.Sprintf("f%d", copies.Add(1)), "x")))
		},
		func(c *berth.Container, ctx context.Context) error {
			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			err := c.Wait(wctx)
			if errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err
		},
	}
	deadline := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 7))
			for time.Now().Before(deadline) {
				c, err := rt.Container(ctx, names[rnd.IntN(len(names))])
				if err != nil {
					t.Errorf("Container: %v", err)
					return
				}
				i := rnd.IntN(len(ops))
				octx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err = ops[i](c, octx)
				timedOut := octx.Err() != nil
				cancel()
				if timedOut {
					t.Errorf("operation %d on %s did not return in 20 s: %v", i, c.Name, err)
					return
				}
				// Errors the races allow: not running, paused, already
				// paused or not paused, on the network already or not.
				if err != nil && !errors.Is(err, berth.ErrNotRunning) && !errors.Is(err, berth.ErrInvalid) && exitCode(err) < 0 &&
					!errors.Is(err, berth.ErrExists) && !errors.Is(err, berth.ErrNotFound) { // connected twice, disconnected twice
					t.Errorf("operation %d on %s: %v", i, c.Name, err)
				}
			}
		}(g)
	}
	wg.Wait()
	for _, name := range names {
		c, err := rt.Container(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		c.Unpause(ctx)
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := c.Remove(rctx, berth.WithForce()); err != nil {
			t.Errorf("Remove %s: %v", name, err)
		}
		cancel()
	}
	if !eventually(5*time.Second, func() bool { return len(cgroupDirs(t, rt.Root())) == 0 }) {
		t.Errorf("cgroups left: %v", cgroupDirs(t, rt.Root()))
	}
	links, _ := filepath.Glob("/sys/class/net/bv*")
	for _, l := range links {
		for _, id := range ids {
			if strings.HasPrefix(filepath.Base(l), "bv"+id[:10]) {
				if eventually(3*time.Second, func() bool { _, err := os.Stat(l); return err != nil }) {
					continue
				}
				t.Errorf("veth left: %s", l)
			}
		}
	}
}

// TestCreateCopyIntoVolume: a copy into a volume of a container Create
// made gives the volume the image's content first, as docker's create
// does: the copy used to leave it with the copied file alone, and the
// start, finding it not empty, never seeded it.
func TestCreateCopyIntoVolume(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c, err := rt.Create(ctx, "busybox", &berth.Process{Args: []string{"/bin/sh", "-c", "cat /bin/extra"}},
		berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "tools", Target: "/bin"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, berth.WithForce())
	if err := c.Wait(ctx); err != nil {
		t.Errorf("Wait on a container never started: %v, want nil at once (docker wait)", err)
	}
	var logs bytes.Buffer
	if err := c.Logs(ctx, &logs, &logs); err != nil || logs.Len() != 0 {
		t.Errorf("Logs of a container never started: %q, %v; want nothing", logs.String(), err)
	}
	if err := c.CopyTo(ctx, "/bin", bytes.NewReader(tarOf(t, "extra", "extra\n"))); err != nil {
		t.Fatalf("CopyTo: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v (the volume lacks the image's /bin/sh?)", err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("the container: %v", err)
	}
	logs.Reset()
	if c.Logs(ctx, &logs, &logs); logs.String() != "extra\n" {
		t.Errorf("Logs = %q", logs.String())
	}
}

// TestCreateKeptWhenStarterDies: an attached container Create made is
// kept, exited, when the program that started it is killed during its
// first run.
func TestCreateKeptWhenStarterDies(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if _, err := rt.Create(ctx, "busybox", sh("exec sleep 300"), berth.WithName("made-kept")); err != nil {
		t.Fatal(err)
	}
	c := startedByKilledProgram(t, rt, "made-kept")
	if st, err := c.State(ctx); err != nil || st.Status != "exited" {
		t.Errorf("State = %+v, %v; want exited", st, err)
	}
}

// startedByKilledProgram has another program start the attached container
// name, kills that program, and returns the container as a Runtime opened
// next (whose New sweeps what the program left) finds it.
func startedByKilledProgram(t *testing.T, rt *berth.Runtime, name string) *berth.Container {
	t.Helper()
	prog := runProgram(t, rt.Root(), "start", name, "")
	prog.Process.Kill()
	prog.Wait()
	c, err := sameRoot(t, rt).Container(context.Background(), name)
	if err != nil {
		t.Fatalf("container %s after its starter died: %v", name, err)
	}
	return c
}

// TestRemoveAfterMonitorDied: a detached container whose monitor was
// killed, and whose process then ended, is removed (force or not): its
// record says running with no owner to record the exit, and Remove used to
// wait for that exit for ever.
func TestRemoveAfterMonitorDied(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach())
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := monitorPid(t, rt.Root())
	syscall.Kill(pid, syscall.SIGKILL)
	if !eventually(5*time.Second, func() bool { return !alive(pid) }) {
		t.Fatal("the monitor did not die")
	}
	syscall.Kill(st.Pid, syscall.SIGKILL)
	if !eventually(5*time.Second, func() bool { return !alive(st.Pid) }) {
		t.Fatal("the container's process did not die")
	}
	if err := c.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := rt.Container(ctx, c.ID); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("after Remove: %v, want ErrNotFound", err)
	}
}
