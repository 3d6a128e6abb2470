package berth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// starts are the two ways a container starts: directly (the default for
// most) and through the child stage, which an rlimit needs.
var starts = []struct {
	name string
	opts []berth.RunOption
}{
	{"direct", nil},
	{"child stage", []berth.RunOption{berth.WithRlimits(berth.Rlimit{Name: "nofile", Soft: 1024, Hard: 1024})}},
}

// TestPidModeHost: with WithPidMode("host") the container is in the host's
// pid namespace (its shell is no PID 1 and sees this test's process), a
// process Exec starts there too; when its command exits, the processes it
// left behind are killed and Wait does not wait for their output.
func TestPidModeHost(t *testing.T) {
	rt := busyboxRuntime(t)
	self := strconv.Itoa(os.Getpid())
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			out := containerOut(t, rt, `[ $$ != 1 ] && echo not-pid-1; [ -d /proc/`+self+` ] && echo sees-host`,
				append(start.opts, berth.WithPidMode("host"))...)
			if out != "not-pid-1\nsees-host\n" {
				t.Errorf("in the host's pid namespace: %q", out)
			}

			out, errOut, err := runOut(t, rt, "busybox", sh("sleep 1000 & echo $!"),
				append(start.opts, berth.WithPidMode("host"), berth.WithAutoRemove())...)
			if err != nil {
				t.Fatalf("leaving a process behind: %v %s", err, errOut)
			}
			left, err := strconv.Atoi(strings.TrimSpace(out))
			if err != nil {
				t.Fatalf("the background pid: %q", out)
			}
			if !eventually(5*time.Second, func() bool { return !alive(left) }) {
				t.Errorf("the process the command left behind (host pid %d) still runs", left)
			}
		})
	}

	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithPidMode("host"), berth.WithDetach())
	defer c.Remove(context.Background(), berth.WithForce())
	info, err := c.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.PidMode != "host" {
		t.Errorf("ContainerInfo.PidMode = %q, want host", info.PidMode)
	}
	own, _ := os.Readlink("/proc/self/ns/pid")
	if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", info.State.Pid)); ns != own {
		t.Errorf("the container's pid namespace %s, want the host's %s", ns, own)
	}
	if got := execOut(t, c, sh(`[ -d /proc/`+self+` ] && echo sees-host`)); got != "sees-host\n" {
		t.Errorf("an exec'd process: %q", got)
	}
}

// TestPidModeKilledProgram: the command of a container attached to a
// program and in another container's pid namespace dies with the program,
// SIGKILLed, in both starts: Go's parent-death signal cannot be used
// there, so the exec helper or the child stage arms its own. What the
// command started in the background outlives it (no pid namespace of its
// own ends), until the next New on the root sweeps the dead program's
// container.
func TestPidModeKilledProgram(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	target := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithName("target"))
	defer target.Remove(ctx, berth.WithForce())
	var background []int
	for i, stage := range []string{"", "1"} {
		name := fmt.Sprintf("joiner%d", i)
		prog := startHelperProgram(t, "BERTH_TEST_RUN_ROOT="+rt.Root(), "BERTH_TEST_RUN_MODE=attached",
			"BERTH_TEST_RUN_NAME="+name, "BERTH_TEST_RUN_SCRIPT=sleep 301 & exec sleep 300",
			"BERTH_TEST_RUN_PID=container:target", "BERTH_TEST_RUN_CHILD_STAGE="+stage)
		c, err := rt.Container(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.State(ctx)
		if err != nil || !st.Running {
			t.Fatalf("%s: %+v, %v", name, st, err)
		}
		var top []berth.ProcessInfo
		eventually(5*time.Second, func() bool { top, _ = c.Top(ctx); return len(top) == 2 })
		for _, p := range top {
			if p.PID != st.Pid {
				background = append(background, p.PID)
			}
		}
		prog.Process.Signal(syscall.SIGKILL)
		prog.Wait()
		if !eventually(5*time.Second, func() bool { return !alive(st.Pid) }) {
			t.Errorf("%s (child stage %q): its process %d still runs 5s after its program was SIGKILLed", name, stage, st.Pid)
		}
	}
	if len(background) != 2 {
		t.Fatalf("background processes %v, want one per container", background)
	}
	swept, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	swept.Close()
	for _, pid := range background {
		if !eventually(5*time.Second, func() bool { return !alive(pid) }) {
			t.Errorf("background process %d still runs after the sweep", pid)
		}
	}
	if st, err := target.State(ctx); err != nil || !st.Running || !alive(st.Pid) {
		t.Errorf("the target container died with the joiners: %+v, %v", st, err)
	}
}

// TestPidModeContainer: WithPidMode("container:NAME") puts the container in
// the running container NAME's pid namespace, whose PID 1 it sees; NAME
// must exist and run.
func TestPidModeContainer(t *testing.T) {
	rt := busyboxRuntime(t)
	target := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithName("target"))
	defer target.Remove(context.Background(), berth.WithForce())
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			out := containerOut(t, rt, `tr '\0' ' ' </proc/1/cmdline; echo; [ $$ != 1 ] && echo not-pid-1`,
				append(start.opts, berth.WithPidMode("container:target"))...)
			if out != "sleep 300 \nnot-pid-1\n" {
				t.Errorf("in container target's pid namespace: %q", out)
			}
		})
	}
	if _, _, err := runOut(t, rt, "busybox", sh("true"), berth.WithPidMode("container:nosuch"), berth.WithAutoRemove()); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("pid mode of a missing container: %v, want ErrNotFound", err)
	}
	if err := target.Stop(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runOut(t, rt, "busybox", sh("true"), berth.WithPidMode("container:target"), berth.WithAutoRemove()); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("pid mode of a stopped container: %v, want ErrNotRunning", err)
	}
	if _, _, err := runOut(t, rt, "busybox", sh("true"), berth.WithPidMode("private")); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("pid mode private: %v, want ErrInvalid", err)
	}
}

// TestIpcModes: WithIpcMode("host") shares the host's IPC namespace (a
// SysV segment of this test's shows) and /dev/shm (a file written there
// shows); "none" has no /dev/shm; the default has neither of the host's.
// Modes berth does not support, and IPC sysctls with the host's
// namespace, are refused.
func TestIpcModes(t *testing.T) {
	rt := busyboxRuntime(t)
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	shmFile := fmt.Sprintf("/dev/shm/berth-test-%d", os.Getpid())
	if err := os.WriteFile(shmFile, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(shmFile)
	script := fmt.Sprintf(`awk '$2 == %d {print "segment"}' /proc/sysvipc/shm; cat %s 2>/dev/null; [ -e /dev/shm ] || echo no-shm`, id, shmFile)
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			for _, tc := range []struct{ mode, want string }{
				{"host", "segment\nfrom the host\n"},
				{"none", "no-shm\n"},
				{"private", ""},
				{"", ""},
			} {
				opts := start.opts
				if tc.mode != "" {
					opts = append(opts, berth.WithIpcMode(tc.mode))
				}
				if got := containerOut(t, rt, script, opts...); got != tc.want {
					t.Errorf("IPC mode %q: %q, want %q", tc.mode, got, tc.want)
				}
			}
		})
	}
	for _, tc := range []struct {
		opts []berth.RunOption
		want string
	}{
		{[]berth.RunOption{berth.WithIpcMode("hots")}, `IPC mode "hots": want private, shareable, host, none or container:NAME`},
		{[]berth.RunOption{berth.WithIpcMode("host"), berth.WithSysctls(map[string]string{"kernel.shmmax": "1"})}, `sysctl "kernel.shmmax" is not allowed with IPC mode host`},
		{[]berth.RunOption{berth.WithIpcMode("none"), berth.WithShmSize(1 << 20)}, `WithShmSize sizes a /dev/shm of the container's own`},
	} {
		if _, _, err := runOut(t, rt, "busybox", sh("true"), append(tc.opts, berth.WithAutoRemove())...); !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v; want ErrInvalid saying %q", err, tc.want)
		}
	}
}

// TestIpcModeContainer: WithIpcMode("container:NAME") joins the IPC
// namespace of a running "shareable" container and sees its /dev/shm (files
// written on either side show on the other) and its /dev/mqueue, by both
// ways of starting, again at a restart and from an Exec; a "host" donor
// gives the host's. Joining a private container is refused, a stopped one
// is ErrNotRunning, and a donor that put something else at its /dev/shm (a
// symlink out, a filesystem that is no tmpfs) fails the start, leaving no
// copy of a mount open; one that mounted its own suid, exec tmpfs there
// gives a nosuid, noexec one.
func TestIpcModeContainer(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	donor := mustRun(t, rt, "busybox", sh("touch /dev/mqueue/q; echo from-donor > /dev/shm/d; exec sleep 300"), berth.WithDetach(), berth.WithName("donor"), berth.WithIpcMode("shareable"))
	defer donor.Remove(ctx, berth.WithForce())
	donorNS, err := execOutput(t, donor, "until [ -e /dev/shm/d ]; do sleep 0.01; done; readlink /proc/self/ns/ipc")
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			got := containerOut(t, rt, `readlink /proc/self/ns/ipc; cat /dev/shm/d; ls /dev/mqueue; echo from-joiner > /dev/shm/j`, append(start.opts, berth.WithIpcMode("container:donor"))...)
			if want := donorNS + "from-donor\nq\n"; got != want {
				t.Errorf("joining the donor: %q, want %q", got, want)
			}
			if out, err := execOutput(t, donor, "cat /dev/shm/j"); err != nil || out != "from-joiner\n" {
				t.Errorf("the joiner's file in the donor's /dev/shm: %q, %v", out, err)
			}
		})
	}
	// Once the runtime's own files are open, a join leaves no file
	// open (the copy of the donor's /dev/shm, its namespaces); its
	// /dev/shm is as the donor's, nosuid, nodev and noexec.
	fdsBefore := countFds(t)
	if got := containerOut(t, rt, "grep ' /dev/shm ' /proc/self/mountinfo | cut -d' ' -f6", berth.WithIpcMode("container:donor")); got != "rw,nosuid,nodev,noexec,relatime\n" {
		t.Errorf("the joiner's /dev/shm mount options: %q", got)
	}
	// A restarted joiner joins again; an Exec into it is in the donor's
	// namespace too.
	joiner := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithIpcMode("container:donor"))
	defer joiner.Remove(ctx, berth.WithForce())
	for range 2 {
		if got, err := execOutput(t, joiner, "readlink /proc/self/ns/ipc; cat /dev/shm/d"); err != nil || got != donorNS+"from-donor\n" {
			t.Errorf("exec in the joiner: %q, %v", got, err)
		}
		if err := joiner.Restart(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
	}

	hostNS, err := os.Readlink("/proc/self/ns/ipc")
	if err != nil {
		t.Fatal(err)
	}
	hostFile := fmt.Sprintf("/dev/shm/berth-test-%d", os.Getpid())
	if err := os.WriteFile(hostFile, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hostFile)
	hostDonor := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithName("host-donor"), berth.WithIpcMode("host"))
	defer hostDonor.Remove(ctx, berth.WithForce())
	if got := containerOut(t, rt, "readlink /proc/self/ns/ipc; cat "+hostFile, berth.WithIpcMode("container:host-donor")); got != hostNS+"\nhost\n" {
		t.Errorf("joining a host-IPC donor: %q, want the host's namespace and /dev/shm", got)
	}

	private := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithName("private"))
	defer private.Remove(ctx, berth.WithForce())
	for _, tc := range []struct {
		opts []berth.RunOption
		want error
		text string
	}{
		{[]berth.RunOption{berth.WithIpcMode("container:private")}, berth.ErrInvalid, "non-shareable IPC namespace"},
		{[]berth.RunOption{berth.WithIpcMode("container:nosuch")}, berth.ErrNotFound, "nosuch"},
		{[]berth.RunOption{berth.WithIpcMode("container:donor"), berth.WithShmSize(1 << 20)}, berth.ErrInvalid, "WithShmSize"},
		{[]berth.RunOption{berth.WithIpcMode("container:donor"), berth.WithSysctls(map[string]string{"kernel.shmmax": "1"})}, berth.ErrInvalid, "IPC namespace it shares"},
	} {
		if _, _, err := runOut(t, rt, "busybox", sh("true"), append(tc.opts, berth.WithAutoRemove())...); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("got %v; want %v saying %q", err, tc.want, tc.text)
		}
	}

	for name, script := range map[string]string{
		"symlink": "umount /dev/shm && rmdir /dev/shm && ln -s / /dev/shm",
		"proc":    "umount /dev/shm && mount -t proc proc /dev/shm",
	} {
		bad := mustRun(t, rt, "busybox", sh(script+" && touch /ready && exec sleep 300"), berth.WithDetach(), berth.WithIpcMode("shareable"), berth.WithPrivileged())
		defer bad.Remove(ctx, berth.WithForce())
		if _, err := execOutput(t, bad, "until [ -e /ready ]; do sleep 0.01; done"); err != nil {
			t.Fatal(err)
		}
		_, _, err := runOut(t, rt, "busybox", sh("ls /dev/shm"), berth.WithIpcMode("container:"+bad.ID), berth.WithAutoRemove())
		if err == nil || !strings.Contains(err.Error(), "/dev/shm") {
			t.Errorf("a donor whose /dev/shm is a %s: %v, want an error about /dev/shm", name, err)
		}
	}
	// (Background work of the runtime may hold a file for a moment.)
	for deadline := time.Now().Add(5 * time.Second); countFds(t) > fdsBefore; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("open files of this program: %d before the joins, %d after", fdsBefore, countFds(t))
			break
		}
	}
	// A donor's own tmpfs, mounted suid and exec, reaches a joiner as a
	// /dev/shm of berth's: nosuid, nodev, noexec.
	loose := mustRun(t, rt, "busybox", sh("umount /dev/shm && mount -t tmpfs -o suid,dev,exec tmpfs /dev/shm && touch /ready && exec sleep 300"), berth.WithDetach(), berth.WithIpcMode("shareable"), berth.WithPrivileged())
	defer loose.Remove(ctx, berth.WithForce())
	if _, err := execOutput(t, loose, "until [ -e /ready ]; do sleep 0.01; done"); err != nil {
		t.Fatal(err)
	}
	if got := containerOut(t, rt, "grep ' /dev/shm ' /proc/self/mountinfo | cut -d' ' -f6", berth.WithIpcMode("container:"+loose.ID)); !strings.Contains(got, "nosuid") || !strings.Contains(got, "nodev") || !strings.Contains(got, "noexec") {
		t.Errorf("the joiner's /dev/shm from a loose donor: %q, want nosuid,nodev,noexec", got)
	}

	if err := donor.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runOut(t, rt, "busybox", sh("true"), berth.WithIpcMode("container:donor"), berth.WithAutoRemove()); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("joining a stopped donor: %v, want ErrNotRunning", err)
	}
}

// TestUTSModeHost:  WithUTSMode("host") gives the container the host's
// hostname (uname, /etc/hostname and $HOSTNAME alike) and refuses a
// hostname of its own.
func TestUTSModeHost(t *testing.T) {
	rt := busyboxRuntime(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			got := containerOut(t, rt, `hostname; cat /etc/hostname; echo $HOSTNAME`, append(start.opts, berth.WithUTSMode("host"))...)
			if want := strings.Repeat(host+"\n", 3); got != want {
				t.Errorf("UTS mode host: %q, want %q", got, want)
			}
		})
	}
	if _, _, err := runOut(t, rt, "busybox", sh("true"), berth.WithUTSMode("host"), berth.WithHostname("mine")); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("UTS mode host with a hostname: %v, want ErrInvalid", err)
	}
}
