package berth_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"golang.org/x/sys/unix"
)

// helperRun is the test binary acting as another program that runs a
// container in BERTH_TEST_RUN_ROOT: the busybox image "busybox" must be
// there. It runs `sh -c BERTH_TEST_RUN_SCRIPT` named BERTH_TEST_RUN_NAME,
// attached, detached or detached and auto-removed (BERTH_TEST_RUN_MODE
// attached, detached, detached-rm), or starts the exited container of that
// name again (start), prints "started" once it runs, and then
// blocks (attached) or exits (detached). BERTH_TEST_RUN_PID is its pid
// mode (WithPidMode), and BERTH_TEST_RUN_CHILD_STAGE set starts it
// through the child stage (an rlimit).
func helperRun() {
	ctx := context.Background()
	rt, err := berth.New(os.Getenv("BERTH_TEST_RUN_ROOT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var opts []berth.RunOption
	opts = append(opts, berth.WithName(os.Getenv("BERTH_TEST_RUN_NAME")))
	mode := os.Getenv("BERTH_TEST_RUN_MODE")
	detached := mode == "detached" || mode == "detached-rm"
	if detached {
		opts = append(opts, berth.WithDetach())
	}
	if mode == "detached-rm" {
		opts = append(opts, berth.WithAutoRemove())
	}
	if m := os.Getenv("BERTH_TEST_RUN_PID"); m != "" {
		opts = append(opts, berth.WithPidMode(m))
	}
	if os.Getenv("BERTH_TEST_RUN_CHILD_STAGE") != "" {
		opts = append(opts, starts[1].opts...)
	}
	if mode == "start" { // start the existing container NAME again, attached
		c, err := rt.Container(ctx, os.Getenv("BERTH_TEST_RUN_NAME"))
		if err == nil {
			err = c.Start(ctx)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
	} else if _, err := rt.Run(ctx, "busybox", sh(os.Getenv("BERTH_TEST_RUN_SCRIPT")), opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	fmt.Println("started")
	if detached {
		os.Exit(0)
	}
	select {} // until killed
}

// runProgram starts the test binary as a helper program (helperRun) and
// returns once it printed "started".
func runProgram(t *testing.T, root, mode, name, script string) *exec.Cmd {
	t.Helper()
	return startHelperProgram(t, "BERTH_TEST_RUN_ROOT="+root, "BERTH_TEST_RUN_MODE="+mode,
		"BERTH_TEST_RUN_NAME="+name, "BERTH_TEST_RUN_SCRIPT="+script)
}

// startHelperProgram starts this test binary with env added, in the role
// the env selects, and returns once the program printed "started".
func startHelperProgram(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "started\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper program: %q, %v; stderr: %s", line, err, stderr.String())
	}
	return cmd
}

// rootTag is how berth names a root in host-wide places (cgroups): the
// first 12 hex digits of the sha256 of its absolute path.
func rootTag(root string) string {
	sum := sha256.Sum256([]byte(root))
	return hex.EncodeToString(sum[:6])
}

// cgroupDirs lists the cgroup directories of a root's containers in every
// hierarchy: /sys/fs/cgroup/*/berth/<tag>/* (v1 and hybrid; a container
// with devices of its own has its devices one in <tag>.devices) and
// /sys/fs/cgroup/berth/<tag>/* (v2).
func cgroupDirs(t *testing.T, root string) []string {
	t.Helper()
	tag := rootTag(root)
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/berth/" + tag + "/*", "/sys/fs/cgroup/*/berth/" + tag + ".devices/*", "/sys/fs/cgroup/berth/" + tag + "/*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range m {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				out = append(out, d)
			}
		}
	}
	return out
}

// parentCgroups lists the root's parent cgroup in every hierarchy where it
// exists: /sys/fs/cgroup/*/berth/<tag> (and <tag>.devices) and
// /sys/fs/cgroup/berth/<tag>.
func parentCgroups(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/berth/" + rootTag(root), "/sys/fs/cgroup/*/berth/" + rootTag(root) + ".devices", "/sys/fs/cgroup/berth/" + rootTag(root)} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	return out
}

// runSleeper starts a detached `sleep 300` named name.
func runSleeper(t *testing.T, rt *berth.Runtime, name string) *berth.Container {
	t.Helper()
	c, err := rt.Run(context.Background(), "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithDetach(), berth.WithName(name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLifetimeCloseRemovesParentCgroup: the root's parent cgroup goes
// with the Close of a Runtime that ran a container in it, once it is
// empty, also when that Runtime was opened while another's container
// still ran (its New found a container cgroup, not an empty root).
func TestLifetimeCloseRemovesParentCgroup(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	long := mustRun(t, rt, "busybox", sh("sleep 300"))
	rt2 := sameRoot(t, rt)
	mustOutput(t, rt2, "busybox", sh("true"), berth.WithAutoRemove())
	if err := long.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	if len(parentCgroups(t, rt.Root())) == 0 {
		t.Fatal("no parent cgroup for the root before Close: the test checks nothing")
	}
	rt2.Close()
	if left := parentCgroups(t, rt.Root()); len(left) > 0 {
		t.Errorf("the root's parent cgroup is left after Close: %v", left)
	}
}

// mountinfo returns the host's mount table without mount IDs, which
// change when anything remounts.
func mountinfo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 {
			lines = append(lines, strings.Join(f[3:], " ")) // root, mount point, options, ...
		}
	}
	return strings.Join(lines, "\n")
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLifetimeKilledProgram SIGKILLs a program while its attached container
// runs: the container's processes die with it, and the next New on the
// root removes the container, its cgroups and its name, and the host mount
// table is as before.
func TestLifetimeKilledProgram(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	setup, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	berthtest.Busybox(t, setup, "busybox")
	setup.Close()
	mountsBefore := mountinfo(t)

	prog := runProgram(t, root, "attached", "orphan", "sleep 300")
	// Find the container's processes from the outside, as its state and
	// its cgroup record them, before the kill.
	observer, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	c, err := observer.Container(ctx, "orphan")
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.State(ctx)
	if err != nil || !st.Running || st.Pid == 0 {
		t.Fatalf("State of the running container = %+v, %v", st, err)
	}
	pids := []int{st.Pid}
	dirs := cgroupDirs(t, root)
	if len(dirs) == 0 {
		t.Fatal("the running container has no cgroup directory")
	}
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
	}
	observer.Close()

	prog.Process.Signal(syscall.SIGKILL)
	prog.Wait()
	if !eventually(5*time.Second, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("container processes %v still alive 5s after their program was SIGKILLed", pids)
	}

	rt, err := berth.New(root)
	if err != nil {
		t.Fatalf("New after the kill: %v", err)
	}
	defer rt.Close()
	if d := cgroupDirs(t, root); len(d) > 0 {
		t.Errorf("cgroups left after New: %v", d)
	}
	list, err := rt.Containers(ctx, berth.WithAll())
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range list {
		t.Errorf("container left after New: %s %s %+v", info.Name, info.ID, info.State)
	}
	if _, err := rt.Container(ctx, "orphan"); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("Container(orphan) after New: %v, want ErrNotFound", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "containers")); len(ents) > 0 {
		t.Errorf("containers/ has %d entries after New", len(ents))
	}
	if d := diffLines(mountsBefore, mountinfo(t)); d != "" {
		t.Errorf("host mounts (-before +after):\n%s", d)
	}
	// The name is free again.
	c2, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithName("orphan"), berth.WithAutoRemove())
	if err != nil {
		t.Fatalf("Run with the dead container's name: %v", err)
	}
	c2.Wait(ctx)
}

// TestLifetimeDetached starts a detached container from a program that
// then exits; this program finds it by name, lists it, reads its logs,
// stops it, waits for it and removes it.
func TestLifetimeDetached(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	berthtest.Busybox(t, rt, "busybox")

	prog := runProgram(t, root, "detached", "lasting", "echo hello from the detached; echo oops >&2; sleep 300")
	if err := prog.Wait(); err != nil {
		t.Fatalf("the starting program: %v", err)
	}
	c, err := rt.Container(ctx, "lasting")
	if err != nil {
		t.Fatalf("Container(lasting) from another program: %v", err)
	}
	defer c.Remove(ctx, berth.WithForce())
	st, err := c.State(ctx)
	if err != nil || !st.Running || !alive(st.Pid) {
		t.Fatalf("State after the starting program exited = %+v, %v; want running", st, err)
	}
	list, err := rt.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "lasting" || !list[0].Detached || !list[0].State.Running {
		t.Errorf("Containers = %+v, want the running detached container", list)
	}
	var out, errOut bytes.Buffer
	if !eventually(5*time.Second, func() bool {
		out.Reset()
		errOut.Reset()
		c.Logs(ctx, &out, &errOut)
		return out.Len() > 0 && errOut.Len() > 0
	}) {
		t.Errorf("no logs")
	}
	if d := diffLines("hello from the detached\n", out.String()); d != "" {
		t.Errorf("stdout logs (-want +got):\n%s", d)
	}
	if d := diffLines("oops\n", errOut.String()); d != "" {
		t.Errorf("stderr logs (-want +got):\n%s", d)
	}

	waited := make(chan error, 1)
	go func() { waited <- c.Wait(ctx) }()
	start := time.Now()
	// sh is PID 1 with no TERM handler: the kernel drops the TERM, the
	// timeout's SIGKILL ends it.
	if err := c.Stop(ctx, 200*time.Millisecond); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %v", d)
	}
	select {
	case err := <-waited:
		var ee *berth.ExitError
		if !errors.As(err, &ee) || ee.Code != 137 {
			t.Errorf("Wait = %v, want exit code 137", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Stop")
	}
	st, err = c.State(ctx)
	if err != nil || st.Running || st.ExitCode != 137 || st.Status != "exited" {
		t.Errorf("State after Stop = %+v, %v; want exited 137", st, err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := rt.Container(ctx, "lasting"); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("Container after Remove: %v, want ErrNotFound", err)
	}
	if d := cgroupDirs(t, root); len(d) > 0 {
		t.Errorf("cgroups left after Remove: %v", d)
	}
}

// TestLifetimeStopTimeout checks that a process ignoring the stop signal
// is killed once the timeout passes.
func TestLifetimeStopTimeout(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, detach := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detach), func(t *testing.T) {
			opts := []berth.RunOption{}
			if detach {
				opts = append(opts, berth.WithDetach())
			}
			c := mustRun(t, rt, "busybox", sh(`trap "" TERM; sleep 300 & wait; sleep 300`), opts...)
			defer c.Remove(ctx, berth.WithForce())
			start := time.Now()
			if err := c.Stop(ctx, 500*time.Millisecond); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if d := time.Since(start); d < 500*time.Millisecond || d > 2*time.Second {
				t.Errorf("Stop returned after %v, want 0.5-2s", d)
			}
			err := c.Wait(ctx)
			var ee *berth.ExitError
			if !errors.As(err, &ee) || ee.Code != 137 || ee.Signal != 9 {
				t.Errorf("Wait = %#v, want exit code 137 by signal 9", err)
			}
			if st, _ := c.State(ctx); st.ExitCode != 137 {
				t.Errorf("State().ExitCode = %d, want 137", st.ExitCode)
			}
		})
	}
	t.Run("stopped by TERM", func(t *testing.T) {
		c := mustRun(t, rt, "busybox", sh(`trap "exit 0" TERM; while true; do sleep 0.05; done`))
		defer c.Remove(ctx, berth.WithForce())
		time.Sleep(100 * time.Millisecond) // let the trap be set
		start := time.Now()
		if err := c.Stop(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Stop of a TERM-handling process took %v", d)
		}
		if err := c.Wait(ctx); err != nil {
			t.Errorf("Wait = %v, want exit 0", err)
		}
	})
}

// TestLifetimeAutoRemove checks that WithAutoRemove leaves nothing once
// the container exits: no directory, no cgroup, the name free.
func TestLifetimeAutoRemove(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, detach := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detach), func(t *testing.T) {
			// The container exits once the test has asked for its exit:
			// one removed before Wait is not found, as docker's is not.
			gate := t.TempDir()
			opts := []berth.RunOption{berth.WithAutoRemove(), berth.WithName("gone"),
				berth.WithMounts(berth.Mount{Type: berth.MountBind, Source: gate, Target: "/gate"})}
			if detach {
				opts = append(opts, berth.WithDetach())
			}
			c := mustRun(t, rt, "busybox", sh("while [ ! -e /gate/go ]; do sleep 0.01; done; echo bye; exit 2"), opts...)
			waited := make(chan error, 1)
			go func() { waited <- c.Wait(ctx) }()
			time.Sleep(100 * time.Millisecond) // Wait is waiting by then
			if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			var ee *berth.ExitError
			if err := <-waited; !errors.As(err, &ee) || ee.Code != 2 {
				t.Errorf("Wait = %v, want exit code 2", err)
			}
			if !eventually(5*time.Second, func() bool {
				_, err := os.Stat(filepath.Join(rt.Root(), "containers", c.ID))
				return errors.Is(err, os.ErrNotExist)
			}) {
				t.Errorf("containers/%s still exists", c.ID)
			}
			if _, err := rt.Container(ctx, "gone"); !errors.Is(err, berth.ErrNotFound) {
				t.Errorf("Container(gone): %v, want ErrNotFound", err)
			}
			if d := cgroupDirs(t, rt.Root()); len(d) > 0 {
				t.Errorf("cgroups left: %v", d)
			}
			list, _ := rt.Containers(ctx, berth.WithAll())
			if len(list) != 0 {
				t.Errorf("Containers(WithAll) = %d containers, want none", len(list))
			}
			c2 := mustRun(t, rt, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithName("gone"), berth.WithAutoRemove())
			c2.Wait(ctx)
		})
	}
}

// TestRemoveLetsWaitersReadExit: a forced Remove of a container that
// other programs Wait on lets them read its exit before the record goes,
// so their Wait returns 137 as docker's does, not ErrNotFound (a common
// test pattern: Wait on a goroutine, force removal in the cleanup). The
// second half holds the wait lock as a Wait elsewhere holds it before
// reading: Remove must not delete the record under it.
func TestRemoveLetsWaitersReadExit(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	other := sameRoot(t, rt)

	c := mustRun(t, rt, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithDetach())
	elsewhere, err := other.Container(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- elsewhere.Wait(ctx) }()
	if !eventually(10*time.Second, func() bool { return berth.WaitLockHeld(rt, c.ID) }) {
		t.Fatal("the Wait elsewhere never took the wait lock")
	}
	if err := c.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	var ee *berth.ExitError
	if err := <-waited; !errors.As(err, &ee) || ee.Code != 137 {
		t.Errorf("Wait elsewhere during a forced Remove = %v, want exit code 137", err)
	}

	c = mustRun(t, rt, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithDetach())
	release := berth.HoldWaitLock(t, other, c.ID)
	removed := make(chan error, 1)
	go func() { removed <- c.Remove(ctx, berth.WithForce()) }()
	select {
	case err := <-removed:
		release()
		t.Fatalf("Remove returned (%v) while a Wait elsewhere had not read the exit", err)
	case <-time.After(300 * time.Millisecond):
	}
	// What the held Wait would read next: the exit, still there.
	if held, err := other.Container(ctx, c.ID); err != nil {
		t.Errorf("the container is gone while a Wait elsewhere had not read its exit: %v", err)
	} else if st, err := held.State(ctx); err != nil || st.Running || st.ExitCode != 137 {
		t.Errorf("State while a Wait elsewhere holds on: %+v, %v; want exited with 137", st, err)
	}
	release()
	if err := <-removed; err != nil {
		t.Errorf("Remove: %v", err)
	}
}

// holdVolumeSeed creates the empty volume name and holds its seed lock,
// so that a container's start mounting it waits in the seeding until
// release (or the test's end).
func holdVolumeSeed(t *testing.T, rt *berth.Runtime, name string) (release func()) {
	t.Helper()
	if _, err := rt.CreateVolume(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(rt.Root(), "volumes", name, "seed.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }
}

// TestRemoveWhileStarting: a forced Remove of a container still being
// started (created, its owner's lock held, here by an attached Run) kills
// it once it runs and removes it; it used to wait for the owner's lock,
// held for the container's whole life, until its context ended. The start
// is held in its volume's seeding by the test's hold on the seed lock.
func TestRemoveWhileStarting(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	release := holdVolumeSeed(t, rt, "held")
	ran := make(chan error, 1)
	go func() {
		_, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "1000"}}, berth.WithName("starting"),
			berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "held", Target: "/data"}))
		ran <- err
	}()
	var c *berth.Container
	var err error
	if !eventually(10*time.Second, func() bool {
		c, err = rt.Container(ctx, "starting")
		return err == nil
	}) {
		t.Fatalf("the container's record never appeared: %v", err)
	}
	removed := make(chan error, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		removed <- c.Remove(rctx, berth.WithForce())
	}()
	time.Sleep(300 * time.Millisecond)
	release()
	if err := <-removed; err != nil {
		t.Errorf("Remove(WithForce) of a container being started: %v", err)
	}
	<-ran // started, or failed as its container went: either is docker's
	if _, err := rt.Container(ctx, "starting"); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("Container after the removal: %v, want ErrNotFound", err)
	}
}

// TestCloseDuringRun: Close while a Run is starting an attached container
// waits for it and kills that container with the others; it used to
// return at once and leave the container running, owned by a closed
// Runtime. The start is held in its volume's seeding by the test.
func TestCloseDuringRun(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	rt2 := sameRoot(t, rt)
	release := holdVolumeSeed(t, rt2, "held")
	ran := make(chan error, 1)
	go func() {
		_, err := rt2.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "1000"}}, berth.WithName("late"),
			berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "held", Target: "/data"}))
		ran <- err
	}()
	if !eventually(10*time.Second, func() bool {
		_, err := rt.Container(ctx, "late")
		return err == nil
	}) {
		t.Fatal("the container's record never appeared")
	}
	closed := make(chan error, 1)
	go func() { closed <- rt2.Close() }()
	time.Sleep(200 * time.Millisecond)
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	<-ran
	c, err := rt.Container(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.State(ctx); err != nil || st.Running {
		t.Errorf("State after Close: %+v, %v; want the container stopped with its Runtime", st, err)
		c.Remove(ctx, berth.WithForce())
	}
}

// TestBerthtestRuntimeCleanup: the runtime berthtest.NewRuntime gives a
// test leaves nothing running when the test ends, detached containers
// included (Close keeps those, and the test's root goes with its temp
// dir).
func TestBerthtestRuntimeCleanup(t *testing.T) {
	var pid int
	t.Run("test", func(t *testing.T) {
		rt := busyboxRuntime(t)
		c := mustRun(t, rt, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithDetach())
		st, err := c.State(context.Background())
		if err != nil || st.Pid == 0 {
			t.Fatalf("State: %+v, %v", st, err)
		}
		pid = st.Pid
	})
	if pid == 0 {
		return
	}
	if !eventually(10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("the detached container's process %d still runs after its test ended", pid)
	}
}

// A removed container's directory is kept as a spare, three empty
// directories owned by root with no extended attributes left (overlayfs
// marks an upper directory; this container chowns and chmods its root),
// an empty log and /etc files of at most a block (emptied when larger),
// and the next container gets it and sees nothing of the first: its /etc
// files, written over the first's longer ones, hold none of their tail.
func TestLifetimeSpareDirectory(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	root := rt.Root()
	first := mustRun(t, rt, "busybox", sh("echo secret > /secret && mkdir /d && echo x > /d/f && chown 1000:1000 / && chmod 1777 / && "+
		"echo 10.0.0.1 secret-host >> /etc/hosts && chmod 600 /etc/hosts && chown 1000 /etc/resolv.conf && "+
		"head -c 5000 /dev/zero | tr '\\0' x >> /etc/resolv.conf && echo logged-secret"))
	if err := first.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// What a program could leave on the container's files from outside.
	if err := unix.Setxattr(filepath.Join(root, "containers", first.ID, "etc_hostname"), "user.secret", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := first.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	rt.Close() // waits for the removal
	spares, _ := os.ReadDir(filepath.Join(root, "spare"))
	if len(spares) != 1 {
		t.Fatalf("spare/ holds %d entries after one removal, want 1", len(spares))
	}
	spare := filepath.Join(root, "spare", spares[0].Name())
	entries, _ := os.ReadDir(spare)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// The file names/<name> linked to, the two record files kept to write
	// the next container's records into (its state.json, of a dozen
	// fields, is one of them), and its endpoint's file on the default
	// network, back from endpoints/.
	const want = "endpoint.next etc_hostname etc_hosts etc_resolv.conf log name rootfs state.next state.old upper work"
	if strings.Join(names, " ") != want {
		t.Fatalf("spare holds %q, want %s", names, want)
	}
	for name, want := range map[string]struct {
		mode    uint32
		maxSize int64
	}{"etc_hostname": {0o644, 4096}, "etc_hosts": {0o644, 4096}, "etc_resolv.conf": {0o644, 0}, "log": {0o600, 0},
		"name": {0o600, 4096}, "state.next": {0o600, 4096}, "state.old": {0o600, 4096}, "endpoint.next": {0o600, 4096}} {
		p := filepath.Join(spare, name)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != want.mode || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Size > want.maxSize || st.Nlink != 1 {
			t.Errorf("%s: uid %d gid %d mode %o size %d links %d; want a root-owned %o file of at most %d bytes", p, st.Uid, st.Gid, st.Mode, st.Size, st.Nlink, want.mode, want.maxSize)
		}
		if n, err := syscall.Listxattr(p, nil); err != nil || n != 0 {
			t.Errorf("%s: %d bytes of extended attribute names (%v); want none", p, n, err)
		}
	}
	for _, p := range []string{spare, filepath.Join(spare, "rootfs"), filepath.Join(spare, "upper"), filepath.Join(spare, "work")} {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != 0o700 || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			t.Errorf("%s: uid %d gid %d mode %o; want a root-owned 0700 directory", p, st.Uid, st.Gid, st.Mode)
		}
		if n, err := syscall.Listxattr(p, nil); err != nil || n != 0 {
			t.Errorf("%s: %d bytes of extended attribute names (%v); want none", p, n, err)
		}
		if p != spare {
			if sub, _ := os.ReadDir(p); len(sub) != 0 {
				t.Errorf("%s is not empty: %d entries", p, len(sub))
			}
		}
	}

	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	second := mustRun(t, rt, "busybox", sh("exec sleep 300"))
	if left, _ := os.ReadDir(filepath.Join(root, "spare")); len(left) != 0 {
		t.Errorf("spare/ holds %d entries with the second container running, want it taken", len(left))
	}
	if b, err := os.ReadFile(filepath.Join(root, "containers", second.ID, "state.json")); err != nil || !strings.Contains(string(b), `"id":"`+second.ID+`"`) {
		t.Errorf("the second container's state.json holds %.80q (%v), want its own record", b, err)
	}
	out, err := execOutput(t, second, "stat -c '%u %g %a' /; ls -A / | grep -c -e secret -e '^d$'; true")
	if err != nil || out != "0 0 755\n0\n" {
		t.Errorf("a container in the spare directory sees / as %q (%v); want 0 0 755 and no file of the first", out, err)
	}
	if diff, err := second.Diff(ctx); err != nil || len(diff) != 0 {
		t.Errorf("Diff of the second container = %v, %v; want no change", diff, err)
	}
	if out, err := execOutput(t, second, "stat -c '%a %u' /etc/hosts /etc/resolv.conf; grep -c -e secret -e xxx /etc/hosts /etc/resolv.conf; true"); err != nil || out != "644 0\n644 0\n/etc/hosts:0\n/etc/resolv.conf:0\n" {
		t.Errorf("the second container's /etc/hosts and /etc/resolv.conf: %q (%v); want 644 0 twice and no line of the first's", out, err)
	}
	var logs bytes.Buffer
	if err := second.Logs(ctx, &logs, &logs); err != nil || strings.Contains(logs.String(), "secret") {
		t.Errorf("Logs of the second container: %q, %v; want nothing of the first's", logs.String(), err)
	}
	second.Remove(ctx, berth.WithForce())
	rt.Close()
	if left, _ := os.ReadDir(filepath.Join(root, "spare")); len(left) != 1 {
		t.Errorf("spare/ holds %d entries once the second is removed, want 1", len(left))
	}

	// A root with an inode flag set on it (synchronous updates, FS_SYNC_FL 0x8, which a
	// container may set on its /) is not kept: the next container would
	// inherit it.
	rt, err = berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	third := mustRun(t, rt, "busybox", sh("exec sleep 300"))
	upper, err := os.Open(filepath.Join(root, "containers", third.ID, "upper"))
	if err != nil {
		t.Fatal(err)
	}
	flags, err := unix.IoctlGetUint32(int(upper.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(upper.Fd()), unix.FS_IOC_SETFLAGS, int(flags|0x8))
	}
	upper.Close()
	if err != nil {
		t.Skipf("setting a flag on the upper directory: %v", err)
	}
	third.Remove(ctx, berth.WithForce())
	rt.Close()
	if left, _ := os.ReadDir(filepath.Join(root, "spare")); len(left) != 0 {
		t.Errorf("spare/ holds %d entries after removing a container whose root had a flag set, want none", len(left))
	}
}

// TestLifetimeNoLeaks runs and removes many containers and checks that
// the program's fds and goroutines, the host's mounts and the root's
// cgroups are back at their baseline.
func TestLifetimeNoLeaks(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	cycles := 500
	if testing.Short() {
		cycles = 50
	}
	run := func() {
		t.Helper()
		c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithAutoRemove())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Warm-up: the sealed binary and the compiled filter are made once, and
	// from the second container on the Runtime holds one pre-started child
	// stage (its pipes are fds), refilled in the background after each use.
	for i := 0; i < 3; i++ {
		run()
	}
	time.Sleep(300 * time.Millisecond)
	fds, goroutines, mounts := countFds(t), runtime.NumGoroutine(), len(strings.Split(mountinfo(t), "\n"))
	start := time.Now()
	for i := 0; i < cycles; i++ {
		run()
	}
	t.Logf("%d run/remove cycles in %v", cycles, time.Since(start))
	if !eventually(2*time.Second, func() bool { return runtime.NumGoroutine() <= goroutines }) {
		t.Errorf("goroutines: %d before, %d after", goroutines, runtime.NumGoroutine())
	}
	if !eventually(2*time.Second, func() bool { return countFds(t) <= fds }) {
		t.Errorf("open fds: %d before, %d after", fds, countFds(t))
	}
	if got := len(strings.Split(mountinfo(t), "\n")); got != mounts {
		t.Errorf("host mounts: %d before, %d after", mounts, got)
	}
	if d := cgroupDirs(t, rt.Root()); len(d) > 0 {
		t.Errorf("cgroups left: %v", d)
	}
	if ents, _ := os.ReadDir(filepath.Join(rt.Root(), "containers")); len(ents) > 0 {
		t.Errorf("containers/ has %d entries", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(rt.Root(), "names")); len(ents) > 0 {
		t.Errorf("names/ has %d entries", len(ents))
	}
}

func countFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestLifetimePaused checks that a paused (frozen) container can still be
// stopped, force-removed, and killed by its Runtime's Close: frozen tasks
// take SIGKILL only once thawed, and each path must thaw.
func TestLifetimePaused(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, how := range []string{"stop", "rm-f", "close"} {
		t.Run(how, func(t *testing.T) {
			r := rt
			if how == "close" {
				r = berthtest.NewRuntime(t)
				berthtest.Busybox(t, r, "busybox")
			}
			c, err := r.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "300"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			s := time.Now()
			switch how {
			case "stop":
				err = c.Stop(ctx, 500*time.Millisecond)
			case "rm-f":
				err = c.Remove(ctx, berth.WithForce())
			case "close":
				err = r.Close()
			}
			t.Logf("%s of a paused container: %v in %v", how, err, time.Since(s))
			if err != nil || time.Since(s) > 5*time.Second {
				t.Errorf("%s: %v after %v", how, err, time.Since(s))
			}
		})
	}
}

// TestLifetimeSweepSparesNewContainers: other Runtimes open and close on
// a root while one starts containers on it. A container created after the
// sweep in New listed the root has a cgroup the sweep did not expect: it
// must take it for a starting container's, not an orphan's. And each Close
// removes the root's parent cgroup when it finds it empty, which can fall
// between the start's making that parent and making its own cgroup in it.
func TestLifetimeSweepSparesNewContainers(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	// Stopped containers to read make the sweep's window between listing
	// the root and listing its cgroups wide enough to be hit.
	for i := range 100 {
		c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("stopped container %d: %v", i, err)
		}
	}
	stop := make(chan struct{})
	errs := make(chan error, 1)
	runs := 0
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "0.01"}}, berth.WithAutoRemove())
			if err == nil {
				err = c.Wait(ctx)
			}
			if err != nil {
				errs <- fmt.Errorf("run %d: %w", runs, err)
				return
			}
			runs++
		}
	}()
	sweeps := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); sweeps++ {
		other, err := berth.New(rt.Root())
		if err != nil {
			t.Fatal(err)
		}
		other.Close()
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Errorf("with %d sweeps alongside: %v", sweeps, err)
	}
	t.Logf("%d runs, %d sweeps", runs, sweeps)
}

// silentMonitor stands in for a root's monitor: it listens on the
// monitor's address, takes requests and never answers them. It returns a
// channel that receives once per connection.
func silentMonitor(t *testing.T, root string) <-chan struct{} {
	t.Helper()
	ln, err := net.Listen("unix", "@berth-monitor-"+rootTag(root))
	if err != nil {
		t.Fatal(err)
	}
	asked := make(chan struct{}, 16)
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			asked <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return asked
}

// TestLifetimeKilledBeforeStart SIGKILLs a program after it wrote a
// detached container's record and while it waits for the monitor to start
// it. The container, which nothing will start, is settled: a Wait begun
// before the kill in another program returns, and the next New finds a
// detached one exited with the reason, an auto-removed one removed and its
// name free.
func TestLifetimeKilledBeforeStart(t *testing.T) {
	berthtest.Skip(t)
	for _, mode := range []string{"detached", "detached-rm"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			root := filepath.Join(t.TempDir(), "root")
			setup, err := berth.New(root)
			if err != nil {
				t.Fatal(err)
			}
			berthtest.Busybox(t, setup, "busybox")
			setup.Close()
			asked := silentMonitor(t, root)

			prog := exec.Command(os.Args[0])
			prog.Env = append(os.Environ(), "BERTH_TEST_RUN_ROOT="+root, "BERTH_TEST_RUN_MODE="+mode,
				"BERTH_TEST_RUN_NAME=unborn", "BERTH_TEST_RUN_SCRIPT=sleep 300")
			var stderr bytes.Buffer
			prog.Stderr = &stderr
			if err := prog.Start(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-asked: // its record is written: it asks only then
			case <-time.After(30 * time.Second):
				prog.Process.Kill()
				prog.Wait()
				t.Fatalf("the program never asked the monitor; stderr: %s", stderr.String())
			}
			observer, err := berth.New(root)
			if err != nil {
				t.Fatal(err)
			}
			defer observer.Close()
			waiting, err := observer.Container(ctx, "unborn")
			if err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			go func() {
				wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				waited <- waiting.Wait(wctx)
			}()
			prog.Process.Signal(syscall.SIGKILL)
			prog.Wait()
			var ee *berth.ExitError
			switch err := <-waited; {
			case mode == "detached" && !errors.As(err, &ee):
				t.Errorf("Wait begun before the kill = %v, want an *ExitError", err)
			case mode == "detached-rm" && !errors.As(err, &ee) && !errors.Is(err, berth.ErrNotFound):
				t.Errorf("Wait begun before the kill = %v, want an *ExitError or ErrNotFound", err)
			}

			rt, err := berth.New(root)
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			c, err := rt.Container(ctx, "unborn")
			if mode == "detached-rm" {
				if !errors.Is(err, berth.ErrNotFound) {
					t.Fatalf("Container(unborn) after New: %v, want ErrNotFound", err)
				}
				if ents, _ := os.ReadDir(filepath.Join(root, "containers")); len(ents) > 0 {
					t.Errorf("containers/ has %d entries after New", len(ents))
				}
				c2, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithName("unborn"), berth.WithAutoRemove())
				if err != nil {
					t.Fatalf("Run with the settled container's name: %v", err)
				}
				c2.Wait(ctx)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != "exited" || st.ExitCode == 0 || !strings.Contains(st.Error, "exited before starting") {
				t.Errorf("State after New = %+v, want exited, non-zero, with the reason", st)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.Wait(wctx); !errors.As(err, &ee) {
				t.Errorf("Wait = %v, want an *ExitError", err)
			}
			if err := c.Remove(ctx); err != nil {
				t.Errorf("Remove: %v", err)
			}
		})
	}
}

// TestRunDetachedMonitorSilent runs a detached container while the root's
// monitor takes the request and never answers: Run returns when its
// context ends, and the container, which never started, is exited with the
// reason instead of staying created; Wait returns.
func TestRunDetachedMonitorSilent(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	silentMonitor(t, rt.Root())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := rt.Run(ctx, "busybox", sh("sleep 300"), berth.WithDetach(), berth.WithName("unheard"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run succeeded with a monitor that never answers")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still waits for the monitor 20 s after its context ended")
	}
	bg := context.Background()
	c, err := rt.Container(bg, "unheard")
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.State(bg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "exited" || st.ExitCode == 0 || st.Error == "" {
		t.Errorf("State after the failed Run = %+v, want exited, non-zero, with the reason", st)
	}
	wctx, wcancel := context.WithTimeout(bg, 10*time.Second)
	defer wcancel()
	var ee *berth.ExitError
	if err := c.Wait(wctx); !errors.As(err, &ee) {
		t.Errorf("Wait = %v, want an *ExitError", err)
	}
}

// TestRunDetachedMonitorSquatted: the monitor's socket is an abstract
// name any local user can bind. Taken by another user's process, a
// detached Run fails at once with an error that names it, and never talks
// to it (it could answer with any pid).
func TestRunDetachedMonitorSquatted(t *testing.T) {
	rt := busyboxRuntime(t)
	berth.SquatAbstract(t, "@berth-monitor-"+rootTag(rt.Root()), true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := rt.Run(ctx, "busybox", sh("sleep 300"), berth.WithDetach())
	if err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("detached Run with the monitor's name squatted: %v, want an error naming uid 65534", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the Run took %v to fail", d)
	}
}

// TestLifetimeSpareKeepsNoOpenLog removes a container whose log a reader
// (a Logs follower, say) still has open: the log does not go to a spare,
// so the reader never reads the next container's output from it.
func TestLifetimeSpareKeepsNoOpenLog(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	root := rt.Root()
	first := mustRun(t, rt, "busybox", sh("echo first-output"))
	if err := first.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(filepath.Join(root, "containers", first.ID, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := first.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	rt.Close() // waits for the removal
	spares, _ := os.ReadDir(filepath.Join(root, "spare"))
	if len(spares) != 1 {
		t.Fatalf("spare/ holds %d entries after one removal, want 1", len(spares))
	}
	if _, err := os.Lstat(filepath.Join(root, "spare", spares[0].Name(), "log")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the spare kept the log a reader has open (Lstat: %v)", err)
	}

	rt, err = berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	second := mustRun(t, rt, "busybox", sh("echo second-output"))
	if err := second.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(held)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "first-output") || strings.Contains(string(b), "second-output") {
		t.Errorf("the removed container's log, read through a descriptor held across the removal: %q; want its own output only", b)
	}
}

// TestLifetimeSweepOrphanCgroup leaves a cgroup of the root with a process
// in it and no container (as a removal that could not delete the cgroup
// leaves one): New sweeps it, at the latest by the Runtime's Close, and
// the process is killed.
func TestLifetimeSweepOrphanCgroup(t *testing.T) {
	berthtest.Skip(t)
	root := filepath.Join(t.TempDir(), "root")
	setup, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	setup.Close()
	var hierarchies []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
		hierarchies = []string{"/sys/fs/cgroup"}
	} else {
		all, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
		for _, p := range all {
			hierarchies = append(hierarchies, filepath.Dir(p))
		}
	}
	if len(hierarchies) == 0 {
		t.Skip("no cgroup hierarchy found under /sys/fs/cgroup")
	}
	orphan := exec.Command("sleep", "300")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { orphan.Wait(); close(exited) }()
	id := strings.Repeat("0f", 32)
	t.Cleanup(func() {
		orphan.Process.Kill()
		<-exited
		for _, h := range hierarchies {
			os.Remove(filepath.Join(h, "berth", rootTag(root), id))
			os.Remove(filepath.Join(h, "berth", rootTag(root)))
		}
	})
	for _, h := range hierarchies {
		dir := filepath.Join(h, "berth", rootTag(root), id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h, "/cpuset") {
			continue // a cpuset takes tasks only once it has cpus and mems
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(orphan.Process.Pid)), 0o644); err != nil {
			t.Fatalf("placing the process in %s: %v", dir, err)
		}
	}

	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	rt.Close()
	if d := cgroupDirs(t, root); len(d) > 0 {
		t.Errorf("cgroups left after New and Close: %v", d)
	}
	if left := parentCgroups(t, root); len(left) > 0 {
		t.Errorf("the root's parent cgroup is left after New and Close in %v", left)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the orphaned cgroup's process still runs 5 s after New and Close")
	}

	// A program that died between making the parent and its container's
	// cgroup leaves the parent alone: the next New and Close remove it.
	for _, h := range hierarchies {
		if err := os.MkdirAll(filepath.Join(h, "berth", rootTag(root)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if rt, err = berth.New(root); err != nil {
		t.Fatal(err)
	}
	rt.Close()
	if left := parentCgroups(t, root); len(left) > 0 {
		t.Errorf("an empty parent cgroup is left after New and Close in %v", left)
	}
}

// TestRunFailedStartLeavesNoLocks starts auto-removed containers whose
// command does not exist, attached and detached: each is removed with every
// lock file it had (the failure paths take and settle the owner lock after
// the removal began).
func TestRunFailedStartLeavesNoLocks(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, detach := range []bool{false, true} {
		opts := []berth.RunOption{berth.WithAutoRemove()}
		if detach {
			opts = append(opts, berth.WithDetach())
		}
		_, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"/no/such/program"}}, opts...)
		var ee *berth.ExitError
		if !errors.As(err, &ee) || ee.Code != 127 {
			t.Fatalf("Run of a missing program (detached %v) = %v, want exit code 127", detach, err)
		}
	}
	root := rt.Root()
	rt.Close()
	ents, err := os.ReadDir(filepath.Join(root, "locks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		for _, p := range []string{"owner-", "ctr-", "wait-"} {
			if strings.HasPrefix(e.Name(), p) {
				t.Errorf("locks/%s left after the failed starts", e.Name())
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "containers")); len(ents) > 0 {
		t.Errorf("containers/ has %d entries after the failed starts", len(ents))
	}
}

// TestRunDetachedCancelledLeavesNothingRunning runs detached containers
// with contexts that end at points spread over the start: a Run that
// fails reports the context's error and leaves no container running (one
// the monitor went on starting is stopped), and one that succeeds runs.
func TestRunDetachedCancelledLeavesNothingRunning(t *testing.T) {
	rt := busyboxRuntime(t)
	bg := context.Background()
	warm := mustRun(t, rt, "busybox", sh("true"), berth.WithDetach(), berth.WithAutoRemove()) // the monitor runs
	warm.Wait(bg)
	failed := 0
	for i := range 40 {
		ctx, cancel := context.WithTimeout(bg, time.Duration(i%20)*250*time.Microsecond)
		name := fmt.Sprintf("cancelled-%d", i)
		c, err := rt.Run(ctx, "busybox", sh("sleep 300"), berth.WithDetach(), berth.WithName(name))
		cancel()
		if err == nil {
			if st, err := c.State(bg); err != nil || !st.Running {
				t.Errorf("%s: Run succeeded, State = %+v, %v; want running", name, st, err)
			}
			c.Remove(bg, berth.WithForce())
			continue
		}
		failed++
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Run = %v, want an error wrapping context.DeadlineExceeded", name, err)
		}
		c, err = rt.Container(bg, name)
		if errors.Is(err, berth.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if st, err := c.State(bg); err != nil || st.Running || st.Status == "created" {
			t.Errorf("%s: after a failed Run, State = %+v, %v; want neither running nor created", name, st, err)
		}
		c.Remove(bg, berth.WithForce())
	}
	if failed == 0 {
		t.Error("no Run failed: the contexts never ended during a start")
	}
}

// TestLifetimeLeaveSpares removes containers through a Runtime made
// WithLeaveSpares: the directory of one that wrote nothing is left under
// tmp/ (its Close does not wait to make a spare of it), one that wrote a
// file or logged is deleted as always; the next New makes the spare.
func TestLifetimeLeaveSpares(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	rt, err := berth.New(root, berth.WithLeaveSpares())
	if err != nil {
		t.Fatal(err)
	}
	berthtest.Busybox(t, rt, "busybox")
	quiet := mustRun(t, rt, "busybox", sh("true"), berth.WithAutoRemove())
	writer := mustRun(t, rt, "busybox", sh("echo data > /file"), berth.WithAutoRemove())
	talker := mustRun(t, rt, "busybox", sh("echo output to the log"), berth.WithAutoRemove())
	for _, c := range []*berth.Container{quiet, writer, talker} {
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rt.Close()
	tmp := filepath.Join(root, "tmp")
	if _, err := os.Stat(filepath.Join(tmp, "left-"+quiet.ID)); err != nil {
		t.Errorf("the quiet container's directory was not left under tmp/: %v", err)
	}
	for _, c := range []*berth.Container{writer, talker} {
		if ents, _ := filepath.Glob(filepath.Join(tmp, "*"+c.ID)); len(ents) != 0 {
			t.Errorf("the directory of a container that wrote a file or logged is still under tmp/: %v", ents)
		}
	}
	spares, _ := os.ReadDir(filepath.Join(root, "spare"))

	next, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	next.Close() // waits for the spare
	if ents, _ := filepath.Glob(filepath.Join(tmp, "*"+quiet.ID)); len(ents) != 0 {
		t.Errorf("the left directory is still under tmp/ after the next New: %v", ents)
	}
	after, _ := os.ReadDir(filepath.Join(root, "spare"))
	if len(after) != len(spares)+1 {
		t.Errorf("spare/ holds %d entries after the next New, %d before; want one more", len(after), len(spares))
	}
}

// TestRecordWritesWhole: a container's record is rewritten in a file kept
// beside it and swapped into place (writeRecord). Readers that run
// beside the writes always read a whole record, and a reader that holds
// the record open across many writes keeps what it opened: that file is
// never written over while someone has it open.
func TestRecordWritesWhole(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach())
	defer c.Remove(ctx, berth.WithForce())
	held, err := os.Open(filepath.Join(rt.Root(), "containers", c.ID, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	first, err := io.ReadAll(held)
	if err != nil || !strings.Contains(string(first), `"Status":"running"`) {
		t.Fatalf("state.json = %.80q (%v), want a running record", first, err)
	}
	heldStat, err := held.Stat()
	if err != nil {
		t.Fatal(err)
	}
	other := sameRoot(t, rt)
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					if n < 10 {
						t.Errorf("a reader read only %d records", n)
					}
					return
				default:
				}
				oc, err := other.Container(ctx, c.Name)
				if err != nil {
					t.Errorf("Container(%s) beside the writes: %v", c.Name, err)
					return
				}
				st, err := oc.State(ctx)
				if err != nil || st.Status != "running" && st.Status != "paused" {
					t.Errorf("State beside the writes = %+v, %v; want running or paused", st, err)
					return
				}
			}
		}()
	}
	for range 100 {
		if err := c.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Unpause(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	readers.Wait()
	again := make([]byte, len(first)+1)
	n, err := held.ReadAt(again, 0)
	if err != nil && err != io.EOF || string(again[:n]) != string(first) {
		t.Errorf("the record held open across 200 writes now reads %.80q (%v), want what it held", again[:n], err)
	}
	// Pause and Unpause leave the same bytes every other write: the file's
	// modification time tells whether anything wrote it.
	if st, err := held.Stat(); err != nil || !st.ModTime().Equal(heldStat.ModTime()) {
		t.Errorf("the record held open was written over while held (modified %v, then %v)", heldStat.ModTime(), st.ModTime())
	}
}

// TestLifetimeSweepUnreadableRecord: a record that does not parse (what a
// host crash can leave: records are swapped into place whole but not
// fsynced) is swept by the next New with its directory and its name.
func TestLifetimeSweepUnreadableRecord(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("true"), berth.WithName("crashed"))
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	root := rt.Root()
	rt.Close()
	p := filepath.Join(root, "containers", c.ID, "state.json")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, st.Size()), 0o600); err != nil {
		t.Fatal(err)
	}
	rt, err = berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	assertGone(t, rt, c.ID, "crashed")
}

// assertGone checks that container id's directory is gone and that its
// name can be taken again.
func assertGone(t *testing.T, rt *berth.Runtime, id, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(rt.Root(), "containers", id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the container's directory is still there (Stat: %v)", err)
	}
	c := mustRun(t, rt, "busybox", sh("true"), berth.WithName(name), berth.WithAutoRemove())
	c.Wait(context.Background())
}

// TestRemoveForceUnreadableRecord: a running detached container whose
// record no longer parses cannot be swept (its monitor owns it), but
// another program finds it by name or ID, and a forced Remove kills its
// processes through its cgroup and removes it and its name; without
// force, Remove says why it cannot.
func TestRemoveForceUnreadableRecord(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := runSleeper(t, rt, "damaged")
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rt.Root(), "containers", c.ID, "state.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("Remove without force of a container with a damaged record = %v, want an error saying the state file is unreadable", err)
	}
	// Found by name and by ID prefix from another program (berth rm -f).
	rt2 := sameRoot(t, rt)
	if byID, err := rt2.Container(ctx, c.ID[:12]); err != nil || byID.ID != c.ID {
		t.Fatalf("Container(ID prefix) of a container with a damaged record = %v, %v", byID, err)
	}
	found, err := rt2.Container(ctx, "damaged")
	if err != nil {
		t.Fatalf("Container(name) of a container with a damaged record: %v", err)
	}
	if err := found.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatalf("forced Remove: %v", err)
	}
	if !eventually(5*time.Second, func() bool { return !alive(st.Pid) }) {
		t.Errorf("the container's process %d still runs after the forced Remove", st.Pid)
	}
	if d := cgroupDirs(t, rt.Root()); len(d) > 0 {
		t.Errorf("cgroups left: %v", d)
	}
	assertGone(t, rt, c.ID, "damaged")
}

// TestLifetimeRemoveDetachedRemovesParentCgroup: a detached container's
// monitor never closes its Runtime, so the program that removes the root's
// last container removes the parent cgroup at its Close, also when its New
// found that container's cgroup (docker rm -f from another shell).
func TestLifetimeRemoveDetachedRemovesParentCgroup(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	runSleeper(t, rt, "last")
	rt2 := sameRoot(t, rt)
	c, err := rt2.Container(ctx, "last")
	if err != nil {
		t.Fatal(err)
	}
	if len(parentCgroups(t, rt.Root())) == 0 {
		t.Fatal("no parent cgroup for the root while a container runs: the test checks nothing")
	}
	if err := c.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	rt2.Close()
	if left := parentCgroups(t, rt.Root()); len(left) > 0 {
		t.Errorf("the root's parent cgroup is left after the last container's removal and Close: %v", left)
	}
}

// TestRemoveForceUnreadableRecordAttached: the same for an attached
// container, whose owner is the Runtime removing it: the forced Remove
// does not wait on itself, and Wait reports the kill.
func TestRemoveForceUnreadableRecordAttached(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("sleep 300"), berth.WithName("damaged"))
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rt.Root(), "containers", c.ID, "state.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Remove(rctx, berth.WithForce()); err != nil {
		t.Fatalf("forced Remove: %v", err)
	}
	if !eventually(5*time.Second, func() bool { return !alive(st.Pid) }) {
		t.Errorf("the container's process %d still runs after the forced Remove", st.Pid)
	}
	var ee *berth.ExitError
	if err := c.Wait(rctx); !errors.As(err, &ee) || ee.Signal != 9 {
		t.Errorf("Wait after the forced Remove = %v, want the SIGKILL exit", err)
	}
	assertGone(t, rt, c.ID, "damaged")
}

// TestLifetimeMonitorRemovesParentCgroup: a detached container that exits
// on its own, with no program left to close, takes the root's parent
// cgroup with it: its monitor removes it when it goes.
func TestLifetimeMonitorRemovesParentCgroup(t *testing.T) {
	rt := busyboxRuntime(t)
	if _, err := rt.Run(context.Background(), "busybox", sh("sleep 1"), berth.WithDetach()); err != nil {
		t.Fatal(err)
	}
	if len(parentCgroups(t, rt.Root())) == 0 {
		t.Fatal("no parent cgroup for the root while a container runs: the test checks nothing")
	}
	if !eventually(20*time.Second, func() bool { return len(parentCgroups(t, rt.Root())) == 0 }) {
		t.Errorf("the root's parent cgroup is left 20 s after its only container exited: %v", parentCgroups(t, rt.Root()))
	}
}

// TestLifetimeWaitRemovesParentCgroup: a program that waited for the
// root's last container to end (opened while it ran) removes the parent
// cgroup at its Close, before the monitor's own removal when it goes
// idle (monitorIdle, 2 s, after the exit).
func TestLifetimeWaitRemovesParentCgroup(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if _, err := rt.Run(ctx, "busybox", sh("sleep 1"), berth.WithDetach(), berth.WithName("brief")); err != nil {
		t.Fatal(err)
	}
	rt2 := sameRoot(t, rt)
	c, err := rt2.Container(ctx, "brief")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	rt2.Close()
	if left := parentCgroups(t, rt.Root()); len(left) > 0 {
		t.Errorf("the root's parent cgroup is left after Wait and Close: %v", left)
	}
}
