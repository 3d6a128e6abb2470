package berth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
)

// TestUpdate: Update gives a running container new limits at once (its
// cgroup's files), keeps them for its next start, and gives it a restart
// policy that decides about its next exit; what docker refuses is refused
// and changes nothing.
func TestUpdate(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("trap 'exit 4' USR2; echo x >> /runs; [ $(wc -l < /runs) -ge 2 ] && exec sleep 300; sleep 300 & wait"), berth.WithDetach(),
		berth.WithResources(berth.Resources{Memory: 64 << 20, PidsLimit: 20}))
	defer c.Remove(ctx, berth.WithForce())
	limits := func() string {
		t.Helper()
		st, err := c.State(ctx)
		if err != nil || !st.Running {
			t.Fatalf("State = %+v, %v", st, err)
		}
		return cgroupFile(t, st.Pid, "memory", "memory.limit_in_bytes") + " " + cgroupFile(t, st.Pid, "pids", "pids.max") + " " +
			cgroupFile(t, st.Pid, "cpu", "cpu.cfs_quota_us")
	}
	if got := limits(); got != "67108864 20 -1" {
		t.Fatalf("limits at the start: %q", got)
	}
	res := berth.Resources{Memory: 128 << 20, PidsLimit: 50, NanoCPUs: 500_000_000}
	policy := berth.RestartPolicy{Name: "on-failure"}
	if err := c.Update(ctx, set(res, policy)); err != nil {
		t.Fatal(err)
	}
	if got := limits(); got != "134217728 50 50000" {
		t.Errorf("limits after Update: %q, want 128 MiB, 50 pids, half a CPU", got)
	}
	if info, err := c.Inspect(ctx); err != nil || info.Resources != res || info.RestartPolicy != policy {
		t.Errorf("Inspect after Update: %+v, %+v, %v", info.Resources, info.RestartPolicy, err)
	}

	// Refused: nothing changes.
	bad := berth.Resources{Memory: 1 << 20}
	if err := c.Update(ctx, setLimits(bad)); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Update to a 1 MiB memory limit: %v, want ErrInvalid", err)
	}
	if err := c.Update(ctx, set(bad, berth.RestartPolicy{Name: "always"})); err == nil {
		t.Error("Update with a bad limit and a good policy succeeded")
	} else if info, _ := c.Inspect(ctx); info.RestartPolicy != policy {
		t.Errorf("a refused update changed the restart policy to %+v", info.RestartPolicy)
	}
	if err := c.Update(ctx, setPolicy(berth.RestartPolicy{Name: "sometimes"})); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Update to an unknown policy: %v, want ErrInvalid", err)
	}
	if got := limits(); got != "134217728 50 50000" {
		t.Errorf("limits after refused updates: %q", got)
	}

	// The policy it was given restarts it after a failure (a signal from
	// inside, which the user did not send: the script exits 4), and the
	// new run has the limits.
	e, err := c.Exec(ctx, sh("kill -USR2 1"))
	if err != nil {
		t.Fatal(err)
	}
	e.Wait(ctx)
	if !eventually(10*time.Second, func() bool {
		info, err := c.Inspect(ctx)
		return err == nil && info.State.Running && info.RestartCount == 1
	}) {
		info, _ := c.Inspect(ctx)
		t.Fatalf("after a failure, with an on-failure policy from Update: %+v", info)
	}
	if got := limits(); got != "134217728 50 50000" {
		t.Errorf("limits of the restarted run: %q", got)
	}

	// Stopped, it takes new limits at its next start.
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	res.PidsLimit = 70
	if err := c.Update(ctx, setLimits(res)); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := limits(); !strings.HasPrefix(got, "134217728 70 ") {
		t.Errorf("limits after a stopped container's update and a start: %q", got)
	}

	// The change is given the current values; its error changes nothing.
	err = c.Update(ctx, func(u *berth.ContainerUpdate) error {
		if u.Resources != res || u.RestartPolicy != policy {
			t.Errorf("Update's change was given %+v, want the container's %+v and %+v", u, res, policy)
		}
		u.Resources.PidsLimit = 5
		return errors.New("changed my mind")
	})
	if err == nil || err.Error() != "changed my mind" {
		t.Errorf("Update whose change failed: %v", err)
	}
	if info, _ := c.Inspect(ctx); info.Resources != res {
		t.Errorf("a failed change was kept: %+v", info.Resources)
	}

	attached := mustRun(t, rt, "busybox", sh("sleep 300"))
	defer attached.Remove(ctx, berth.WithForce())
	if err := attached.Update(ctx, setPolicy(policy)); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("a restart policy for an attached container: %v, want ErrInvalid", err)
	}
}

// TestCFSAndReservation: docker's --cpu-period, --cpu-quota,
// --memory-reservation and --cpuset-mems reach the container's cgroup at
// its start and with Update, and Update lifts them; --cpus with a period
// is refused as docker refuses it.
func TestCFSAndReservation(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	res := berth.Resources{Memory: 64 << 20, MemoryReservation: 32 << 20, CPUPeriod: 50000, CPUQuota: 25000}
	v1 := cgroupV1Memory()
	if v1 {
		res.CpusetMems = "0"
	}
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithResources(res))
	defer c.Remove(ctx, berth.WithForce())
	files := func() string {
		t.Helper()
		st, err := c.State(ctx)
		if err != nil || !st.Running {
			t.Fatalf("State = %+v, %v", st, err)
		}
		if !v1 {
			return cgroupFile(t, st.Pid, "cpu", "cpu.max") + " " + cgroupFile(t, st.Pid, "memory", "memory.low")
		}
		return cgroupFile(t, st.Pid, "cpu", "cpu.cfs_period_us") + " " + cgroupFile(t, st.Pid, "cpu", "cpu.cfs_quota_us") + " " +
			cgroupFile(t, st.Pid, "memory", "memory.soft_limit_in_bytes") + " " + cgroupFile(t, st.Pid, "cpuset", "cpuset.mems")
	}
	want := map[bool]string{true: "50000 25000 33554432 0", false: "25000 50000 33554432"}
	if got := files(); got != want[v1] {
		t.Errorf("at the start: %q, want %q", got, want[v1])
	}
	res2 := berth.Resources{Memory: 64 << 20}
	if err := c.Update(ctx, setLimits(res2)); err != nil {
		t.Fatal(err)
	}
	// Lifted: no quota, a soft limit the kernel's largest (its value
	// depends on the page size), the parent's memory nodes.
	got := strings.Fields(files())
	if v1 {
		soft, _ := strconv.ParseInt(got[2], 10, 64)
		parentMems, _ := os.ReadFile("/sys/fs/cgroup/cpuset/cpuset.mems")
		if got[0] != "100000" || got[1] != "-1" || soft < 1<<62 || got[3] != strings.TrimSpace(string(parentMems)) {
			t.Errorf("after lifting them: %q, want 100000 -1, unlimited, the root cpuset's mems", got)
		}
	} else if strings.Join(got, " ") != "max 100000 0" {
		t.Errorf("after lifting them: %q, want max 100000 0", got)
	}
	if err := c.Update(ctx, setLimits(berth.Resources{NanoCPUs: 1e9, CPUPeriod: 50000})); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("--cpus with --cpu-period: %v, want ErrInvalid", err)
	}
}

// TestOomScoreAdj: WithOomScoreAdj gives the container's processes the
// OOM score adjustment in both starts (a child of its command inherits
// it), and an exec'd process too; a negative one needs CAP_SYS_RESOURCE, which this machine kind's
// root lacks: then the start fails saying so; out of range is refused.
func TestOomScoreAdj(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			out := containerOut(t, rt, "cat /proc/self/oom_score_adj; sh -c 'cat /proc/self/oom_score_adj'", append(start.opts, berth.WithOomScoreAdj(500))...)
			if out != "500\n500\n" {
				t.Errorf("oom_score_adj of the command and its child: %q, want 500 twice", out)
			}
		})
	}
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithOomScoreAdj(400), berth.WithDetach())
	defer c.Remove(ctx, berth.WithForce())
	if got := execOut(t, c, sh("cat /proc/self/oom_score_adj")); got != "400\n" {
		t.Errorf("an exec'd process's oom_score_adj: %q, want the container's 400", got)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var capEff uint64
	fmt.Sscanf(statusFields(string(status), "CapEff")[len("CapEff: "):], "%x", &capEff)
	out, _, err := runOut(t, rt, "busybox", sh("cat /proc/self/oom_score_adj"), berth.WithOomScoreAdj(-500), berth.WithAutoRemove())
	if capEff&(1<<24) != 0 { // CAP_SYS_RESOURCE
		if err != nil || out != "-500\n" {
			t.Errorf("a negative adjustment with CAP_SYS_RESOURCE: %q, %v", out, err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
		t.Errorf("a negative adjustment without CAP_SYS_RESOURCE: %q, %v; want an error naming it", out, err)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithOomScoreAdj(1001)); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("adjustment 1001: %v, want ErrInvalid", err)
	}
}

// cgroupV1Memory reports whether the host has a v1 memory hierarchy.
func cgroupV1Memory() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	return err == nil
}

// TestUpdateRefusedByKernel: a memory limit below what the container holds
// and cannot give back (tmpfs pages, no swap allowed) is refused by a v1
// memory cgroup: Update fails, and the cgroup and the record keep the old
// limits. (cgroup v2 takes it and OOM-kills instead.)
func TestUpdateRefusedByKernel(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	old := berth.Resources{Memory: 64 << 20, MemorySwap: 64 << 20}
	c := mustRun(t, rt, "busybox", sh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 2>/dev/null; echo filled; exec sleep 300"),
		berth.WithDetach(), berth.WithResources(old))
	defer c.Remove(ctx, berth.WithForce())
	if err := c.WaitLog(ctx, "filled"); err != nil {
		t.Fatal(err)
	}
	st, _ := c.State(ctx)
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if !regexp.MustCompile(`(?m)^\d+:([^:]*,)?memory(,[^:]*)?:`).Match(cg) {
		t.Skip("no cgroup v1 memory controller: v2 reclaims and OOM-kills rather than refuse")
	}
	// The pids limit is written before the memory limit is refused.
	low := berth.Resources{Memory: 16 << 20, MemorySwap: 16 << 20, PidsLimit: 30}
	if err := c.Update(ctx, setLimits(low)); err == nil || errors.Is(err, berth.ErrInvalid) {
		t.Fatalf("Update to 16 MiB of a container holding 40 MiB of tmpfs: %v, want the kernel's refusal", err)
	}
	if got := cgroupFile(t, st.Pid, "memory", "memory.limit_in_bytes") + " " + cgroupFile(t, st.Pid, "memory", "memory.memsw.limit_in_bytes") + " " +
		cgroupFile(t, st.Pid, "pids", "pids.max"); got != "67108864 67108864 max" {
		t.Errorf("limits after the refusal: %s, want the old 64 MiB and no pids limit", got)
	}
	if info, err := c.Inspect(ctx); err != nil || info.Resources != old {
		t.Errorf("the record after the refusal: %+v, %v", info.Resources, err)
	}
}

// set, setLimits and setPolicy are Update's change functions that set
// both, the limits or the policy.
func set(res berth.Resources, p berth.RestartPolicy) func(*berth.ContainerUpdate) error {
	return func(u *berth.ContainerUpdate) error {
		u.Resources, u.RestartPolicy = res, p
		return nil
	}
}

func setLimits(res berth.Resources) func(*berth.ContainerUpdate) error {
	return func(u *berth.ContainerUpdate) error {
		u.Resources = res
		return nil
	}
}

func setPolicy(p berth.RestartPolicy) func(*berth.ContainerUpdate) error {
	return func(u *berth.ContainerUpdate) error {
		u.RestartPolicy = p
		return nil
	}
}
