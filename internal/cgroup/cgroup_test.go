package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const busybox = "/bin/busybox"

// testRoot is this run's parent cgroup; every test works below it.
var testRoot = fmt.Sprintf("/berth-test-%d", os.Getpid())

func TestMain(m *testing.M) {
	if os.Getenv(idleEnv) != "" { // another program, for TestKillSparesAnotherProgram
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	code := m.Run()
	if l, err := hostLayout(); err == nil && os.Geteuid() == 0 {
		if c, err := l.load(testRoot); err == nil {
			if err := c.Delete(); err != nil {
				fmt.Fprintf(os.Stderr, "removing %s: %v\n", testRoot, err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

type testLayout struct {
	name string
	l    layout
	// limits says whether the layout has the memory, cpu and pids controllers.
	limits bool
}

// layouts returns the host's layout and, on a hybrid host, two more: its v1 hierarchies alone
// (a v1 host, where Kill has no cgroup.kill and must freeze, signal and thaw), and its cgroup2
// tree driven as if it were a v2 host: that tree has no controllers, but it exercises the v2
// code for creating, adding, freezing, killing, FD and deleting on a real kernel.
func layouts(t *testing.T) []testLayout {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create cgroups under /sys/fs/cgroup")
	}
	l, err := hostLayout()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if err := unix.Access(firstRoot(t, l), unix.W_OK); err != nil {
		t.Skipf("skipping: cgroup filesystem not writable (%v); read-only /sys/fs/cgroup in a container?", err)
	}
	out := []testLayout{{name: "host-" + l.mode, l: l, limits: true}}
	if l.mode == ModeHybrid {
		out = append(out,
			testLayout{name: "v1-only", l: layout{mode: ModeV1, v1: l.v1}, limits: true},
			testLayout{name: "v2-on-unified", l: layout{mode: ModeV2, v2Mount: l.v2Mount}})
	}
	return out
}

func firstRoot(t *testing.T, l layout) string {
	t.Helper()
	roots, err := l.roots()
	if err != nil || len(roots) == 0 {
		t.Skipf("skipping: no cgroup hierarchy found (%v)", err)
	}
	return roots[0]
}

func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("skipping: %s is missing (install busybox-static): %v", busybox, err)
	}
}

// parentFor returns a parent cgroup path for one (sub)test and removes it when the test ends.
func parentFor(t *testing.T, l layout) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	parent := path.Join(testRoot, name)
	t.Cleanup(func() {
		c, err := l.load(parent)
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err == nil {
			_ = c.Kill()
			err = c.Delete()
		}
		if err != nil {
			t.Errorf("cleaning up %s: %v", parent, err)
		}
	})
	return parent
}

func mustNew(t *testing.T, l layout, p string, res Resources) *Cgroup {
	t.Helper()
	c, err := l.create(p, res)
	if err != nil {
		t.Fatalf("New(%q): %v", p, err)
	}
	return c
}

// proc is a busybox shell that runs script only after a line arrives on its stdin, so that a
// test can place it in a cgroup before it does anything.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	err   error
}

func startBlocked(t *testing.T, script string) *proc {
	t.Helper()
	requireBusybox(t)
	cmd := exec.Command(busybox, "sh", "-c", "read x; "+script)
	cmd.Env = []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q: %v", script, err)
	}
	p := &proc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		p.wait(t, 10*time.Second)
	})
	return p
}

// reap starts collecting the exit status; until then the process stays a zombie after death.
func (p *proc) reap() {
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
}

func (p *proc) release(t *testing.T) {
	t.Helper()
	p.reap()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatalf("releasing pid %d: %v", p.cmd.Process.Pid, err)
	}
}

func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("pid %d still running after %v", p.cmd.Process.Pid, timeout)
		return nil
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func signaled(err error) (syscall.Signal, bool) {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	s, err := readString(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMode(t *testing.T) {
	got := Mode()
	if !slices.Contains([]string{ModeV1, ModeHybrid, ModeV2, ""}, got) {
		t.Fatalf("Mode() = %q", got)
	}
	t.Logf("Mode() = %q", got)
}

func TestLifecycle(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			l := tl.l
			parent := parentFor(t, l)
			a := mustNew(t, l, parent+"/a", Resources{})
			mustNew(t, l, parent+"/b", Resources{})
			if got := a.Path(); got != parent+"/a" {
				t.Errorf("Path() = %q, want %q", got, parent+"/a")
			}
			for _, d := range a.dirs {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("after New: %v", err)
				}
			}
			if l.mode == ModeHybrid {
				for _, name := range []cgroup1.Name{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"} {
					if _, ok := a.v1Dirs[name]; !ok {
						t.Errorf("no %s hierarchy in %v", name, a.v1Dirs)
					}
				}
				if a.v2Dir != "/sys/fs/cgroup/unified"+parent+"/a" {
					t.Errorf("v2 dir = %q", a.v2Dir)
				}
			}
			if _, err := l.create(parent+"/a", Resources{}); err != nil {
				t.Errorf("New on an existing cgroup: %v", err)
			}
			if _, err := l.load(parent + "/a"); err != nil {
				t.Errorf("Load: %v", err)
			}
			if _, err := l.load(parent + "/missing"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load(missing) = %v, want an error wrapping fs.ErrNotExist", err)
			}
			if _, err := l.create("relative/path", Resources{}); err == nil {
				t.Error("New accepted a relative path")
			}
			if got, err := l.list(parent); err != nil || !slices.Equal(got, []string{parent + "/a", parent + "/b"}) {
				t.Errorf("List(%q) = %q, %v; want [a b]", parent, got, err)
			}
			if got, err := l.list(parent + "/missing"); err != nil || len(got) != 0 {
				t.Errorf("List(missing) = %q, %v; want nothing", got, err)
			}

			// A process added lands in every hierarchy.
			p := startBlocked(t, "exec sleep 100")
			if err := a.Add(p.pid()); err != nil {
				t.Fatal(err)
			}
			p.release(t)
			cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.pid()))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
				fields := strings.SplitN(line, ":", 3)
				inV1 := fields[1] != "" && tl.l.v1 != nil
				inV2 := fields[1] == "" && tl.l.v2Mount != ""
				if (inV1 || inV2) && fields[2] != parent+"/a" {
					t.Errorf("/proc/%d/cgroup: %q, want every hierarchy at %s", p.pid(), line, parent+"/a")
				}
			}
			if pids, err := a.Pids(); err != nil || !slices.Equal(pids, []int{p.pid()}) {
				t.Errorf("Pids() = %v, %v; want [%d]", pids, err, p.pid())
			}

			// Delete kills nothing and says why it failed.
			err = a.Delete()
			if !errors.Is(err, ErrPopulated) || !strings.Contains(err.Error(), "cgroup.procs") || !strings.Contains(err.Error(), parent+"/a") {
				t.Errorf("Delete of a populated cgroup = %v; want ErrPopulated naming the cgroup and file", err)
			}
			if err := unix.Kill(p.pid(), 0); err != nil {
				t.Errorf("Delete harmed the process: %v", err)
			}

			// A child cgroup made by the container is killed and removed with its parent.
			if err := os.Mkdir(filepath.Join(a.dirs[0], "nested"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := a.Kill(); err != nil {
				t.Fatal(err)
			}
			if sig, ok := signaled(p.wait(t, 5*time.Second)); !ok || sig != syscall.SIGKILL {
				t.Errorf("process ended with %v, want SIGKILL", p.err)
			}
			if err := a.Delete(); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if err := a.Delete(); err != nil {
				t.Errorf("second Delete: %v", err)
			}
			for _, d := range a.dirs {
				if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("after Delete, stat %s: %v", d, err)
				}
			}
			if _, err := l.load(parent + "/a"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load after Delete = %v, want fs.ErrNotExist", err)
			}
			if got, err := l.list(parent); err != nil || !slices.Equal(got, []string{parent + "/b"}) {
				t.Errorf("List after Delete = %q, %v; want [b]", got, err)
			}
		})
	}
}

// idleEnv makes this test binary idle, multithreaded, as another program.
const idleEnv = "BERTH_CGROUP_TEST_IDLE"

// TestKillSparesAnotherProgram: a thread of another program in the
// cgroup's v1 hierarchies (a berth program's Exec forking into the
// container, for a moment) does not make that program one of the
// cgroup's processes. Kill, run by the container's owner as the container
// exited, used to SIGKILL it: v1's cgroup.procs lists the process of every
// thread inside.
func TestKillSparesAnotherProgram(t *testing.T) {
	for _, tl := range layouts(t) {
		if tl.l.v1 == nil {
			t.Run(tl.name, func(t *testing.T) {
				t.Skip("no v1 hierarchy: a v2 cgroup takes a process's threads together")
			})
			continue
		}
		t.Run(tl.name, func(t *testing.T) {
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/a", Resources{})
			victim := startBlocked(t, "exec sleep 300")
			if err := c.Add(victim.pid()); err != nil {
				t.Fatal(err)
			}
			victim.release(t)
			other := exec.Command(os.Args[0])
			other.Env = append(os.Environ(), idleEnv+"=1")
			if err := other.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				other.Process.Kill()
				other.Wait()
			}()
			pid := other.Process.Pid
			var tid int
			deadline := time.Now().Add(5 * time.Second)
			for tid == 0 && time.Now().Before(deadline) {
				entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
				for _, e := range entries {
					if id, _ := strconv.Atoi(e.Name()); id != pid && id != 0 {
						tid = id
					}
				}
				time.Sleep(time.Millisecond)
			}
			if tid == 0 {
				t.Fatal("the other program has no second thread")
			}
			// Where the thread is in each v1 hierarchy, to put it back.
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", tid))
			if err != nil {
				t.Fatal(err)
			}
			was := map[string]string{}
			for line := range strings.Lines(string(b)) {
				parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
				for ctrl := range strings.SplitSeq(parts[1], ",") {
					was[ctrl] = parts[2]
				}
			}
			back := map[string]string{}
			for name, dir := range c.v1Dirs {
				back[dir] = strings.TrimSuffix(dir, c.path) + was[procKey(name)]
				if err := writeFile(dir, "tasks", strconv.Itoa(tid)); err != nil {
					t.Fatal(err)
				}
			}
			killErr := c.Kill()
			// A SIGKILL sent to it would have made it a zombie within this.
			for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
					t.Fatalf("the other program, whose thread was in the cgroup, was killed (%v)", err)
				}
			}
			for _, dir := range back {
				if err := writeFile(dir, "tasks", strconv.Itoa(tid)); err != nil {
					t.Fatal(err)
				}
			}
			if killErr != nil {
				t.Fatalf("Kill: %v", killErr)
			}
			if sig, ok := signaled(victim.wait(t, 10*time.Second)); !ok || sig != syscall.SIGKILL {
				t.Errorf("the cgroup's process: %v, want killed", victim.err)
			}
			if err := c.Delete(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKillLeavesNoZombieInside checks what Kill's doc promises: a killed process its parent
// has not reaped yet no longer counts as inside the cgroup.
func TestKillLeavesNoZombieInside(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/c", Resources{})
			p := startBlocked(t, "exec sleep 100")
			if err := c.Add(p.pid()); err != nil {
				t.Fatal(err)
			}
			if err := c.Kill(); err != nil {
				t.Fatalf("Kill with an unreaped child: %v", err)
			}
			if err := c.Delete(); err != nil {
				t.Fatalf("Delete with a zombie left: %v", err)
			}
			p.reap()
			p.wait(t, 5*time.Second)
		})
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			if !tl.limits {
				t.Skip("skipping: this layout has no memory controller")
			}
			const limit = 32 << 20
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/oom", Resources{MemoryLimit: limit})
			if s, err := c.Stats(); err != nil || s.MemoryLimit != limit {
				t.Errorf("Stats().MemoryLimit = %d, %v; want %d", s.MemoryLimit, err, limit)
			}
			if oom, err := c.OOMKilled(); err != nil || oom {
				t.Fatalf("OOMKilled() before anything ran = %v, %v", oom, err)
			}
			p := startBlocked(t, "exec tail /dev/zero")
			if err := c.Add(p.pid()); err != nil {
				t.Fatal(err)
			}
			p.release(t)
			err := p.wait(t, 60*time.Second)
			if sig, ok := signaled(err); !ok || sig != syscall.SIGKILL {
				t.Fatalf("memory hog ended with %v, want SIGKILL", err)
			}
			if oom, err := c.OOMKilled(); err != nil || !oom {
				t.Errorf("OOMKilled() = %v, %v; want true", oom, err)
			}
		})
	}
}

func TestPidsLimit(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			if !tl.limits {
				t.Skip("skipping: this layout has no pids controller")
			}
			const limit = 10
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/pids", Resources{PidsLimit: limit})
			dir := c.v2Dir
			if tl.l.v1 != nil {
				dir = c.v1Dirs[cgroup1.Pids]
			}
			if got := readFile(t, dir, "pids.max"); got != "10" {
				t.Errorf("pids.max = %q, want 10", got)
			}
			p := startBlocked(t, `i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); done; wait`)
			if err := c.Add(p.pid()); err != nil {
				t.Fatal(err)
			}
			p.release(t)
			peak, peakCurrent := 0, int64(0)
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				pids, err := c.Pids()
				if err != nil {
					t.Fatal(err)
				}
				cur, err := readInt(dir, "pids.current")
				if err != nil {
					t.Fatal(err)
				}
				peak, peakCurrent = max(peak, len(pids)), max(peakCurrent, cur)
			}
			if peak > limit || peakCurrent > limit {
				t.Errorf("peak of %d processes, pids.current %d: above the limit of %d", peak, peakCurrent, limit)
			}
			// Sampling can miss the moment at the limit (the shell exits when a fork fails),
			// so ask the kernel: its own peak, and its count of refused forks.
			if kpeak, err := readInt(dir, "pids.peak"); err == nil && kpeak != limit {
				t.Errorf("pids.peak = %d, want the limit %d", kpeak, limit)
			}
			if ev, err := readKV(dir, "pids.events"); err == nil {
				if ev["max"] == 0 {
					t.Errorf("pids.events max = 0, want refused forks counted")
				}
			} else if peakCurrent < limit-1 {
				t.Errorf("pids.current peaked at %d, want the loop to reach the limit %d", peakCurrent, limit)
			}
			t.Logf("sampled peak: %d processes, pids.current %d", peak, peakCurrent)
			if err := c.Kill(); err != nil {
				t.Fatal(err)
			}
			if pids, err := c.Pids(); err != nil || len(pids) != 0 {
				t.Errorf("after Kill, Pids() = %v, %v", pids, err)
			}
		})
	}
}

func TestCPULimit(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			if !tl.limits {
				t.Skip("skipping: this layout has no cpu controller")
			}
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/cpu", Resources{NanoCPUs: 5e8})
			if tl.l.v1 != nil {
				dir := c.v1Dirs[cgroup1.Cpu]
				if q, p := readFile(t, dir, "cpu.cfs_quota_us"), readFile(t, dir, "cpu.cfs_period_us"); q != "50000" || p != "100000" {
					t.Errorf("cfs quota/period = %s/%s, want 50000/100000", q, p)
				}
			} else if got := readFile(t, c.v2Dir, "cpu.max"); got != "50000 100000" {
				t.Errorf("cpu.max = %q, want \"50000 100000\"", got)
			}
			p := startBlocked(t, "while :; do :; done")
			if err := c.Add(p.pid()); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p.release(t)
			time.Sleep(time.Second)
			s, err := c.Stats()
			wall := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			used := time.Duration(s.CPUUsageNanos)
			// Half a CPU over the wall time, plus one period of slack for the boundary.
			if budget := wall/2 + 100*time.Millisecond; used > budget {
				t.Errorf("used %v of CPU in %v at 0.5 CPU, want at most %v", used, wall, budget)
			}
			if used < wall/5 {
				t.Errorf("used only %v of CPU in %v; did the loop run?", used, wall)
			}
			t.Logf("busy loop used %v of CPU in %v", used, wall)
		})
	}
}

func TestUpdate(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			if !tl.limits {
				t.Skip("skipping: this layout has no controllers to update")
			}
			if tl.l.v1 == nil {
				t.Skip("skipping: v2 Update is covered by TestV2Resources here")
			}
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/update", Resources{MemoryLimit: 32 << 20, PidsLimit: 5, CPUShares: 512, NanoCPUs: 1e9})
			mem, cpu, pids := c.v1Dirs[cgroup1.Memory], c.v1Dirs[cgroup1.Cpu], c.v1Dirs[cgroup1.Pids]
			_, swapErr := os.Stat(filepath.Join(mem, "memory.memsw.limit_in_bytes"))
			check := func(dir, name, want string) {
				t.Helper()
				if name == "memory.memsw.limit_in_bytes" && swapErr != nil {
					return
				}
				if got := readFile(t, dir, name); got != want {
					t.Errorf("%s = %s, want %s", name, got, want)
				}
			}
			check(mem, "memory.limit_in_bytes", "33554432")
			check(mem, "memory.memsw.limit_in_bytes", "67108864")
			check(cpu, "cpu.shares", "512")
			check(cpu, "cpu.cfs_quota_us", "100000")
			check(pids, "pids.max", "5")

			// docker's --cpu-period/--cpu-quota and --memory-reservation, and
			// lifting them.
			if err := c.Update(Resources{MemoryLimit: 32 << 20, MemoryReservation: 16 << 20, CPUPeriod: 50000, CPUQuota: 25000}); err != nil {
				t.Fatal(err)
			}
			check(cpu, "cpu.cfs_period_us", "50000")
			check(cpu, "cpu.cfs_quota_us", "25000")
			check(mem, "memory.soft_limit_in_bytes", "16777216")
			if err := c.Update(Resources{MemoryLimit: 32 << 20}); err != nil {
				t.Fatal(err)
			}
			check(cpu, "cpu.cfs_period_us", "100000")
			check(cpu, "cpu.cfs_quota_us", "-1")
			if v, err := readInt(mem, "memory.soft_limit_in_bytes"); err != nil || v < unlimitedV1 {
				t.Errorf("memory.soft_limit_in_bytes after lifting = %d, %v; want unlimited", v, err)
			}

			// Lowering memory+swap below the old memory limit needs the memory limit first.
			if err := c.Update(Resources{MemoryLimit: 16 << 20, MemorySwap: 16 << 20}); err != nil {
				t.Fatal(err)
			}
			check(mem, "memory.limit_in_bytes", "16777216")
			check(mem, "memory.memsw.limit_in_bytes", "16777216")
			// Raising above the old memory+swap limit needs memory+swap first.
			if err := c.Update(Resources{MemoryLimit: 128 << 20, MemorySwap: -1}); err != nil {
				t.Fatal(err)
			}
			check(mem, "memory.limit_in_bytes", "134217728")
			if err := c.Update(Resources{}); err != nil {
				t.Fatal(err)
			}
			if v, err := readInt(mem, "memory.limit_in_bytes"); err != nil || v < unlimitedV1 {
				t.Errorf("memory.limit_in_bytes after lifting = %d, %v; want unlimited", v, err)
			}
			check(cpu, "cpu.shares", "1024")
			check(cpu, "cpu.cfs_quota_us", "-1")
			check(pids, "pids.max", "max")
			if err := c.Update(Resources{MemorySwap: 1 << 20}); err == nil {
				t.Error("Update accepted a swap limit without a memory limit")
			}
		})
	}
}

func TestFreezeThawKillStats(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/freeze", Resources{})
			// v1 charges a page to the cgroup that first touched it, not to where its process
			// lives now: allocate a megabyte after joining so that the usage is ours.
			p := startBlocked(t, `s=$(head -c 1000000 /dev/zero | tr '\0' x); while :; do :; done`)
			if err := c.Add(p.pid()); err != nil {
				t.Fatal(err)
			}
			p.release(t)
			time.Sleep(200 * time.Millisecond)

			s, err := c.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if s.CPUUsageNanos == 0 {
				t.Errorf("Stats() = %+v: no CPU usage for a busy process", s)
			}
			if tl.limits && (s.MemoryUsage == 0 || s.Pids == 0) {
				t.Errorf("Stats() = %+v: want memory usage and pids of a running process", s)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Freeze(ctx); err != nil {
				t.Fatal(err)
			}
			if dir, ok := c.v1Dirs[cgroup1.Freezer]; ok {
				if got := readFile(t, dir, "freezer.state"); got != "FROZEN" {
					t.Errorf("freezer.state = %q, want FROZEN", got)
				}
			} else if ev, err := readKV(c.v2Dir, "cgroup.events"); err != nil || ev["frozen"] != 1 {
				t.Errorf("cgroup.events = %v, %v; want frozen 1", ev, err)
			}
			if d := cpuDuring(t, c, 300*time.Millisecond); d > time.Millisecond {
				t.Errorf("frozen process used %v of CPU in 300ms", d)
			}
			if err := c.Thaw(ctx); err != nil {
				t.Fatal(err)
			}
			if d := cpuDuring(t, c, 300*time.Millisecond); d < 50*time.Millisecond {
				t.Errorf("thawed process used only %v of CPU in 300ms", d)
			}

			// Kill must get through a freeze too.
			if err := c.Freeze(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.Kill(); err != nil {
				t.Fatal(err)
			}
			if sig, ok := signaled(p.wait(t, 5*time.Second)); !ok || sig != syscall.SIGKILL {
				t.Errorf("process ended with %v, want SIGKILL", p.err)
			}
			if pids, err := c.Pids(); err != nil || len(pids) != 0 {
				t.Errorf("after Kill, Pids() = %v, %v", pids, err)
			}
			if err := c.Delete(); err != nil {
				t.Errorf("Delete after Kill of a frozen cgroup: %v", err)
			}
		})
	}
}

func cpuDuring(t *testing.T, c *Cgroup, d time.Duration) time.Duration {
	t.Helper()
	before, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	after, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(after.CPUUsageNanos - before.CPUUsageNanos)
}

// TestPollContext covers what a real cgroup cannot be made to do on demand: stay FREEZING.
// The wait must end with ctx, undo the half-done freeze and name the file it watched.
func TestPollContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	undone := false
	err := poll(ctx, func() (bool, error) { return false, nil }, func() { undone = true }, "/x/freezer.state")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "/x/freezer.state") || !undone {
		t.Errorf("poll = %v (undone %v); want DeadlineExceeded naming the file, and undo called", err, undone)
	}
}

func TestErrorsNameCgroupAndFile(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/errors", Resources{})
			// A pid that cannot exist: above the kernel's pid_max limit of 2^22.
			err := c.Add(1 << 23)
			if err == nil || !strings.Contains(err.Error(), c.Path()) || !strings.Contains(err.Error(), "cgroup.procs") {
				t.Errorf("Add(no such pid) = %v; want an error naming the cgroup and cgroup.procs", err)
			}
		})
	}
}

func TestUnifiedFD(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			c := mustNew(t, tl.l, parentFor(t, tl.l)+"/fd", Resources{})
			fd, err := c.UnifiedFD()
			if err != nil {
				t.Fatal(err)
			}
			if tl.l.v2Mount == "" {
				if fd != -1 {
					t.Errorf("UnifiedFD() on %s without a unified tree = %d, want -1", tl.l.mode, fd)
				}
				return
			}
			defer unix.Close(fd)
			requireBusybox(t)
			cmd := exec.Command(busybox, "sleep", "100")
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
			if err := cmd.Start(); err != nil {
				t.Fatalf("starting with CLONE_INTO_CGROUP: %v", err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			if procs := strings.Fields(readFile(t, c.v2Dir, "cgroup.procs")); !slices.Equal(procs, []string{strconv.Itoa(cmd.Process.Pid)}) {
				t.Errorf("%s/cgroup.procs = %v; want the child started into the cgroup, %d", c.v2Dir, procs, cmd.Process.Pid)
			}
		})
	}
}

func TestNoLeaks(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			requireBusybox(t)
			parent := parentFor(t, tl.l)
			const cycles = 200
			start := time.Now()
			for i := range cycles {
				p := path.Join(parent, fmt.Sprint(i))
				var res Resources
				if tl.limits {
					res.PidsLimit = 100
				}
				c, err := tl.l.create(p, res)
				if err != nil {
					t.Fatalf("cycle %d: %v", i, err)
				}
				cmd := exec.Command(busybox, "sleep", "100")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				if err := c.Add(cmd.Process.Pid); err != nil {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("cycle %d: %v", i, err)
				}
				if err := c.Kill(); err != nil {
					t.Fatalf("cycle %d: %v", i, err)
				}
				cmd.Wait()
				if err := c.Delete(); err != nil {
					t.Fatalf("cycle %d: %v", i, err)
				}
			}
			t.Logf("%d cycles in %v", cycles, time.Since(start))
			roots, err := tl.l.roots()
			if err != nil {
				t.Fatal(err)
			}
			for _, root := range roots {
				entries, err := os.ReadDir(filepath.Join(root, parent))
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
				for _, e := range entries {
					if e.IsDir() {
						t.Errorf("left behind: %s", filepath.Join(root, parent, e.Name()))
					}
				}
			}
			if got, err := tl.l.list(parent); err != nil || len(got) != 0 {
				t.Errorf("List(%q) = %q, %v; want nothing", parent, got, err)
			}
		})
	}
}

func TestResourcesValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  Resources
		ok   bool
	}{
		{"zero", Resources{}, true},
		{"memory", Resources{MemoryLimit: 6 << 20}, true},
		{"memory below docker's 6 MiB", Resources{MemoryLimit: 6<<20 - 1}, false},
		{"memory of a byte", Resources{MemoryLimit: 1}, false},
		{"memory and swap", Resources{MemoryLimit: 8 << 20, MemorySwap: 16 << 20}, true},
		{"unlimited swap", Resources{MemoryLimit: 8 << 20, MemorySwap: -1}, true},
		{"swap alone", Resources{MemorySwap: 8 << 20}, false},
		{"swap below memory", Resources{MemoryLimit: 16 << 20, MemorySwap: 8 << 20}, false},
		{"negative memory", Resources{MemoryLimit: -1}, false},
		{"too few cpus", Resources{NanoCPUs: 1e6}, false},
		{"one share", Resources{CPUShares: 1}, false},
		{"too many shares", Resources{CPUShares: 262145}, false},
		{"unlimited pids", Resources{PidsLimit: -1}, true},
		{"negative pids", Resources{PidsLimit: -2}, false},
		{"the kernel's most pids", Resources{PidsLimit: 4 << 20}, true},
		{"more pids than the kernel takes", Resources{PidsLimit: 4<<20 + 1}, false},
		{"cpu period and quota", Resources{CPUPeriod: 50000, CPUQuota: 25000}, true},
		{"unlimited quota", Resources{CPUQuota: -1}, true},
		{"period below 1ms", Resources{CPUPeriod: 999}, false},
		{"period above 1s", Resources{CPUPeriod: 1000001}, false},
		{"quota below 1ms", Resources{CPUQuota: 999}, false},
		{"quota below -1", Resources{CPUQuota: -2}, false},
		{"nano cpus and a period", Resources{NanoCPUs: 1e9, CPUPeriod: 50000}, false},
		{"nano cpus and a quota", Resources{NanoCPUs: 1e9, CPUQuota: 50000}, false},
		{"reservation", Resources{MemoryReservation: 8 << 20}, true},
		{"reservation below 6 MiB", Resources{MemoryReservation: 1 << 20}, false},
		{"reservation above the limit", Resources{MemoryLimit: 8 << 20, MemoryReservation: 16 << 20}, false},
		{"mems", Resources{CpusetMems: "0"}, true},
		{"bad mems", Resources{CpusetMems: "0-"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.res.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v, want ok=%v", tc.res, err, tc.ok)
			}
		})
	}
}

// TestV2Resources checks the translation to v2 values without a v2 host: on a hybrid host the
// memory, cpu and pids controllers are bound to v1 and cannot be enabled in any cgroup2 tree.
func TestV2Resources(t *testing.T) {
	all := map[string]bool{"cpu": true, "memory": true, "pids": true}
	type want struct {
		memMax, swapMax int64 // -1: field unset
		weight          uint64
		cpuMax          string
		pidsMax         int64
	}
	for _, tc := range []struct {
		name string
		res  Resources
		swap bool
		want want
	}{
		{"unlimited", Resources{}, true, want{math.MaxInt64, math.MaxInt64, 100, "max 100000", -1}},
		{"docker defaults swap to twice memory", Resources{MemoryLimit: 32 << 20}, true,
			want{32 << 20, 32 << 20, 100, "max 100000", -1}},
		{"swap counts memory", Resources{MemoryLimit: 32 << 20, MemorySwap: 48 << 20}, true,
			want{32 << 20, 16 << 20, 100, "max 100000", -1}},
		{"no swap", Resources{MemoryLimit: 32 << 20, MemorySwap: 32 << 20}, true,
			want{32 << 20, 0, 100, "max 100000", -1}},
		{"unlimited swap", Resources{MemoryLimit: 32 << 20, MemorySwap: -1}, true,
			want{32 << 20, math.MaxInt64, 100, "max 100000", -1}},
		{"no swap accounting", Resources{MemoryLimit: 32 << 20}, false,
			want{32 << 20, -1, 100, "max 100000", -1}},
		{"half a cpu", Resources{NanoCPUs: 5e8}, true, want{math.MaxInt64, math.MaxInt64, 100, "50000 100000", -1}},
		{"cpus", Resources{NanoCPUs: 1.5e9}, true, want{math.MaxInt64, math.MaxInt64, 100, "150000 100000", -1}},
		{"shares 2", Resources{CPUShares: 2}, true, want{math.MaxInt64, math.MaxInt64, 1, "max 100000", -1}},
		{"shares 512", Resources{CPUShares: 512}, true, want{math.MaxInt64, math.MaxInt64, 59, "max 100000", -1}},
		{"shares max", Resources{CPUShares: 262144}, true, want{math.MaxInt64, math.MaxInt64, 10000, "max 100000", -1}},
		{"pids", Resources{PidsLimit: 10}, true, want{math.MaxInt64, math.MaxInt64, 100, "max 100000", 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r2, err := v2Resources(tc.res, all, tc.swap)
			if err != nil {
				t.Fatal(err)
			}
			got := want{memMax: *r2.Memory.Max, swapMax: -1, weight: *r2.CPU.Weight, cpuMax: string(r2.CPU.Max), pidsMax: r2.Pids.Max}
			if r2.Memory.Swap != nil {
				got.swapMax = *r2.Memory.Swap
			}
			if got != tc.want {
				t.Errorf("v2Resources(%+v) (-want +got):\n-%+v\n+%+v", tc.res, tc.want, got)
			}
		})
	}
	t.Run("devices", func(t *testing.T) {
		fuse := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: new(int64(10)), Minor: new(int64(229)), Access: "rw"}
		r2, err := v2Resources(Resources{RestrictDevices: true, Devices: []specs.LinuxDeviceCgroup{fuse}}, all, true)
		if err != nil {
			t.Fatal(err)
		}
		want := append(defaultDevices(), fuse)
		if len(r2.Devices) != len(want) || deviceRule(r2.Devices[len(want)-1]) != "c 10:229 rw" {
			t.Errorf("v2 device rules %v, want docker's and then c 10:229 rw", r2.Devices)
		}
	})
	t.Run("period, quota and reservation", func(t *testing.T) {
		r2, err := v2Resources(Resources{CPUPeriod: 50000, CPUQuota: 25000, MemoryReservation: 16 << 20}, all, true)
		if err != nil {
			t.Fatal(err)
		}
		if string(r2.CPU.Max) != "25000 50000" || r2.Memory.Low == nil || *r2.Memory.Low != 16<<20 {
			t.Errorf("cpu.max %q, memory.low %v; want \"25000 50000\" and 16 MiB", r2.CPU.Max, r2.Memory.Low)
		}
		if _, err := v2Resources(Resources{CpusetMems: "0"}, all, true); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("cpuset mems on v2: %v, want ErrUnsupported", err)
		}
	})
	t.Run("missing controller", func(t *testing.T) {
		_, err := v2Resources(Resources{PidsLimit: 10}, map[string]bool{"cpu": true, "memory": true}, true)
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("pids limit without the pids controller: %v, want ErrUnsupported", err)
		}
		r2, err := v2Resources(Resources{}, map[string]bool{}, true)
		if err != nil || r2.CPU != nil || r2.Memory != nil || r2.Pids != nil {
			t.Errorf("no controllers, no limits: %+v, %v; want empty resources", r2, err)
		}
	})
}

// TestDevicePolicyInherited: a parent that New makes gets docker's device
// policy, so its children start with it (and skip writing it); a child of
// a parent made elsewhere, which allows everything, gets the policy
// written, and the parent stays as it was; a parent narrower than the
// policy makes New fail rather than give a child less than it asked for
// silently.
func TestDevicePolicyInherited(t *testing.T) {
	devRoot := devicesRoot(t)
	list := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(devRoot, p, "devices.list"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	var want []string
	for _, d := range defaultDevices() {
		if d.Allow {
			want = append(want, deviceRule(d))
		}
	}
	slices.Sort(want)
	policy := strings.Join(want, "\n")
	res := Resources{RestrictDevices: true}
	newCgroup := func(p string) *Cgroup {
		t.Helper()
		c, err := New(p, res)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Delete() })
		return c
	}

	made := testRoot + "/devices-made"
	t.Cleanup(func() { unix.Rmdir(filepath.Join(devRoot, made)) })
	newCgroup(made + "/a")
	newCgroup(made + "/b")
	for _, p := range []string{made, made + "/a", made + "/b"} {
		if got := list(p); got != policy {
			t.Errorf("%s devices.list:\n%s\nwant docker's policy:\n%s", p, got, policy)
		}
	}

	// Starts racing to make the parent: every one succeeds, with the
	// policy, and no temporary parent is left behind.
	for round := range 20 {
		race := fmt.Sprintf("%s/devices-race%d", testRoot, round)
		t.Cleanup(func() { unix.Rmdir(filepath.Join(devRoot, race)) })
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				c, err := New(fmt.Sprintf("%s/%d", race, i), res)
				if err == nil {
					t.Cleanup(func() { c.Delete() })
				}
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Errorf("racing New: %v", err)
			}
		}
		for i := range 8 {
			if got := list(fmt.Sprintf("%s/%d", race, i)); got != policy {
				t.Errorf("%s/%d devices.list:\n%s\nwant docker's policy", race, i, got)
			}
		}
	}
	if left, _ := filepath.Glob(filepath.Join(devRoot, testRoot, ".devices-race*")); len(left) > 0 {
		t.Errorf("temporary parents left: %v", left)
	}

	found := testRoot + "/devices-found"
	if err := os.MkdirAll(filepath.Join(devRoot, found), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Rmdir(filepath.Join(devRoot, found)) })
	newCgroup(found + "/a")
	if got := list(found + "/a"); got != policy {
		t.Errorf("child of an allow-all parent: devices.list:\n%s\nwant docker's policy:\n%s", got, policy)
	}
	if got := list(found); got != "a *:* rwm" {
		t.Errorf("the allow-all parent became %q; it must be left alone", got)
	}

	narrow := testRoot + "/devices-narrow"
	dir := filepath.Join(devRoot, narrow)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Rmdir(dir) })
	for _, f := range [][2]string{{"devices.deny", "a"}, {"devices.allow", "c 1:3 rwm"}} {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := New(narrow+"/a", res); err == nil {
		c.Delete()
		t.Fatalf("New under a parent allowing only /dev/null succeeded; want an error")
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed New left %s/a behind (%v)", dir, err)
	}
}

// TestAllDevices: a cgroup made with AllDevices (a privileged container)
// under a parent holding docker's device policy has no devices directory,
// so a process added stays in its starter's devices cgroup while it joins
// the others; Load finds it the same, and Delete leaves nothing. Both
// device settings at once are refused.
func TestAllDevices(t *testing.T) {
	devRoot := devicesRoot(t)
	parent := testRoot + "/all-devices"
	t.Cleanup(func() { unix.Rmdir(filepath.Join(devRoot, parent)) })
	restricted, err := New(parent+"/restricted", Resources{RestrictDevices: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restricted.Delete() })
	c, err := New(parent+"/all", Resources{AllDevices: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete() })
	if _, err := os.Stat(filepath.Join(devRoot, parent, "all")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a devices directory was made (%v): it would inherit the parent's policy", err)
	}
	if _, err := os.Stat(filepath.Join(devRoot, parent, "restricted")); err != nil {
		t.Errorf("the restricted sibling has no devices directory: %v", err)
	}
	loaded, err := Load(parent + "/all")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := loaded.v1Dirs[cgroup1.Devices]; ok || len(loaded.v1Dirs) == 0 {
		t.Errorf("Load's v1 directories %v: want all but devices", loaded.v1Dirs)
	}
	if slices.Contains(loaded.dirs, filepath.Join(devRoot, parent, "all")) {
		t.Errorf("Load lists the missing devices directory in %v", loaded.dirs)
	}
	p := startBlocked(t, "exec sleep 100")
	if err := loaded.Add(p.pid()); err != nil {
		t.Fatal(err)
	}
	cgroups := func(pid int) map[string]string {
		t.Helper()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.SplitN(l, ":", 3); len(f) == 3 {
				m[f[1]] = f[2]
			}
		}
		return m
	}
	own, got := cgroups(os.Getpid()), cgroups(p.pid())
	if got["devices"] != own["devices"] {
		t.Errorf("the process is in devices cgroup %q, want its starter's %q", got["devices"], own["devices"])
	}
	if got["memory"] != parent+"/all" || got["pids"] != parent+"/all" {
		t.Errorf("the process is in memory %q, pids %q; want %s", got["memory"], got["pids"], parent+"/all")
	}
	p.reap()
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	if err := loaded.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, d := range c.dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Delete (%v)", d, err)
		}
	}
	if _, err := New(parent+"/both", Resources{AllDevices: true, RestrictDevices: true}); err == nil {
		t.Error("New took both AllDevices and RestrictDevices")
	}
}

// TestOwnDevices: a cgroup allowing devices of its own (docker run
// --device) under a parent holding docker's device policy has its devices
// directory in the open parent beside it, with the policy and its own
// rules, which the kernel enforces on a process in it; a restricted
// sibling keeps the policy alone. Load and List find it, even when it is
// all that is left of a cgroup, and Delete removes it with the open
// parent. Devices without RestrictDevices, or a rule the kernel would not
// take, are refused.
func TestOwnDevices(t *testing.T) {
	devRoot := devicesRoot(t)
	parent := testRoot + "/own-devices"
	open := filepath.Join(devRoot, parent+".devices")
	t.Cleanup(func() {
		unix.Rmdir(filepath.Join(devRoot, parent))
		unix.Rmdir(open)
	})
	restricted, err := New(parent+"/restricted", Resources{RestrictDevices: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restricted.Delete() })
	major := unusedMajor(t)
	dev := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: new(int64(major)), Minor: new(int64(1)), Access: "rw"}
	res := Resources{RestrictDevices: true, Devices: []specs.LinuxDeviceCgroup{dev}}
	c, err := New(parent+"/own", res)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete() })
	if _, err := os.Stat(filepath.Join(devRoot, parent, "own")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a devices directory below the restricted parent was made (%v)", err)
	}
	list := func(dir string) []string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "devices.list"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		slices.Sort(lines)
		return lines
	}
	var policy []string
	for _, d := range defaultDevices() {
		if d.Allow {
			policy = append(policy, deviceRule(d))
		}
	}
	want := slices.Sorted(slices.Values(append(slices.Clone(policy), fmt.Sprintf("c %d:1 rw", major))))
	if got := list(filepath.Join(open, "own")); !slices.Equal(got, want) {
		t.Errorf("own devices.list %q, want %q", got, want)
	}
	slices.Sort(policy)
	if got := list(filepath.Join(devRoot, parent, "restricted")); !slices.Equal(got, policy) {
		t.Errorf("the restricted sibling's devices.list %q, want docker's %q", got, policy)
	}

	loaded, err := Load(parent + "/own")
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.v1Dirs[cgroup1.Devices]; got != filepath.Join(open, "own") || loaded.NoDevicesDir() {
		t.Errorf("Load's devices directory %q (none: %v), want %s", got, loaded.NoDevicesDir(), filepath.Join(open, "own"))
	}
	// The kernel's check: nodes of the allowed device and of another one
	// of the same major, which no driver has, opened by a process in the
	// cgroup: the first fails with ENXIO, the second with EPERM.
	nodes := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(nodes, &st); err != nil {
		t.Fatal(err)
	}
	if st.Flags&unix.ST_NODEV != 0 {
		t.Skipf("skipping: %s is on a filesystem mounted nodev, where no device opens", nodes)
	}
	for minor := range 3 {
		if err := unix.Mknod(filepath.Join(nodes, strconv.Itoa(minor)), unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(major), uint32(minor)))); err != nil {
			t.Fatal(err)
		}
	}
	p := startBlocked(t, fmt.Sprintf("for n in 1 2; do (exec 3<>%[1]s/$n) 2>>%[1]s/out; done", nodes))
	if err := loaded.Add(p.pid()); err != nil {
		t.Fatal(err)
	}
	p.release(t)
	p.wait(t, 10*time.Second)
	out, err := os.ReadFile(filepath.Join(nodes, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); !regexp.MustCompile(`/1: No such device or address\n.*/2: Operation not permitted\n$`).MatchString(got) {
		t.Errorf("in the cgroup, opening the allowed and another device said %q; want ENXIO (allowed, no driver), then EPERM", got)
	}

	if got, err := List(parent); err != nil || !slices.Contains(got, parent+"/own") {
		t.Errorf("List(%s) = %v, %v; want %s in it", parent, got, err, parent+"/own")
	}
	if err := loaded.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(slices.Clone(c.dirs), open) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Delete (%v)", d, err)
		}
	}

	// What a program killed while making such a cgroup leaves: the
	// devices directory alone.
	if err := os.MkdirAll(filepath.Join(open, "half"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := List(parent); err != nil || !slices.Contains(got, parent+"/half") {
		t.Errorf("List(%s) = %v, %v; want the half-made %s in it", parent, got, err, parent+"/half")
	}
	half, err := Load(parent + "/half")
	if err != nil {
		t.Fatal(err)
	}
	if err := half.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(open); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left after deleting the half-made cgroup (%v)", open, err)
	}
	// An open parent a killed program left empty goes with RemoveIfEmpty,
	// once the parent goes.
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := RemoveIfEmpty(parent); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(open); err != nil {
		t.Errorf("%s removed while its parent %s has a cgroup (%v)", open, parent, err)
	}
	if err := restricted.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := RemoveIfEmpty(parent); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(open); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left after RemoveIfEmpty(%s) (%v)", open, parent, err)
	}

	for _, bad := range []Resources{
		{Devices: []specs.LinuxDeviceCgroup{dev}},
		{RestrictDevices: true, Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "x", Access: "rw"}}},
		{RestrictDevices: true, Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Access: "rwx"}}},
		{RestrictDevices: true, Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Access: ""}}},
		{RestrictDevices: true, Devices: []specs.LinuxDeviceCgroup{{Allow: false, Type: "c", Access: "r"}}},
	} {
		if c, err := New(parent+"/bad", bad); err == nil {
			c.Delete()
			t.Errorf("New took %+v", bad.Devices)
		}
	}
}

// unusedMajor is a character device major kept for local use that no
// driver of this kernel has (as the root package's privileged test picks
// one).
func unusedMajor(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/devices")
	if err != nil {
		t.Fatal(err)
	}
	chars, _, _ := strings.Cut(string(b), "Block devices:")
	used := map[int]bool{}
	for _, l := range strings.Split(chars, "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			n, _ := strconv.Atoi(f[0])
			used[n] = true
		}
	}
	for _, major := range []int{60, 61, 62, 63, 120, 121, 122, 123, 124, 125, 126, 127} { // kept for local use
		if !used[major] {
			return major
		}
	}
	t.Fatal("every character major kept for local use is registered here")
	return 0
}

// TestSweepTemporary: a temporary devices parent a killed program left is
// removed once old; a young one (a program may be filling it), another
// name, and one with a child in it stay.
func TestSweepTemporary(t *testing.T) {
	base := filepath.Join(devicesRoot(t), testRoot)
	stale := filepath.Join(base, ".grp-0123")
	busy := filepath.Join(base, ".grp-4567")
	other := filepath.Join(base, ".other-89ab")
	for _, d := range []string{stale, filepath.Join(busy, "child"), other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{stale, filepath.Join(busy, "child"), busy, other} {
			unix.Rmdir(d)
		}
	})
	exists := func(d string) bool { _, err := os.Stat(d); return err == nil }

	SweepTemporary(testRoot + "/grp")
	if !exists(stale) {
		t.Fatalf("a temporary parent made just now was swept")
	}
	defer func(age time.Duration) { staleTempAge = age }(staleTempAge)
	staleTempAge = 0
	SweepTemporary(testRoot + "/grp")
	if exists(stale) {
		t.Errorf("%s: an old temporary parent was left", stale)
	}
	if !exists(filepath.Join(busy, "child")) || !exists(other) {
		t.Errorf("swept a temporary parent with a child in it, or a directory of another name")
	}
}

// devicesRoot returns the v1 devices hierarchy's root directory, skipping
// the test where there is none or it cannot be written.
func devicesRoot(t *testing.T) string {
	t.Helper()
	l, err := hostLayout()
	if err != nil || l.v1 == nil || os.Geteuid() != 0 {
		t.Skip("skipping: needs root and a v1 devices hierarchy")
	}
	roots, err := l.v1Roots()
	if err != nil {
		t.Fatal(err)
	}
	root, ok := roots[cgroup1.Devices]
	if !ok {
		t.Skip("skipping: no v1 devices hierarchy")
	}
	return root
}

// TestRemoveIfEmpty: a parent with a child cgroup stays in every
// hierarchy, and goes from every hierarchy once the child is deleted.
func TestRemoveIfEmpty(t *testing.T) {
	l := layouts(t)[0].l
	parent := parentFor(t, l)
	child := mustNew(t, l, parent+"/c", Resources{})
	roots, err := l.roots()
	if err != nil {
		t.Fatal(err)
	}
	if err := RemoveIfEmpty(parent); err != nil {
		t.Fatal(err)
	}
	for _, r := range roots {
		if _, err := os.Stat(filepath.Join(r, parent)); err != nil {
			t.Errorf("%s went while it had a child: %v", filepath.Join(r, parent), err)
		}
	}
	if err := child.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := RemoveIfEmpty(parent); err != nil {
		t.Fatal(err)
	}
	for _, r := range roots {
		if _, err := os.Stat(filepath.Join(r, parent)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is left after its only child went (Stat: %v)", filepath.Join(r, parent), err)
		}
	}
}

func TestCpuSubset(t *testing.T) {
	for _, c := range []struct {
		cpus, of string
		want     bool
	}{
		{"0", "0-1", true},
		{"0-1", "0-1", true},
		{"1,3", "0-3", true},
		{"2", "0-1", false},
		{"0-2", "0,1", false},
		{"4", "0-3,5", false},
		{"5", "0-3,5", true},
	} {
		if got := cpuSubset(c.cpus, c.of); got != c.want {
			t.Errorf("cpuSubset(%q, %q) = %v, want %v", c.cpus, c.of, got, c.want)
		}
	}
	for _, bad := range []string{"one", "0-", "-1", "0,,1", "0 1", "5-2", "99999999999999999999", "0-9000"} {
		if (Resources{CpusetCpus: bad}).Validate() == nil {
			t.Errorf("Validate took cpuset cpus %q", bad)
		}
	}
}

// TestV1Hierarchies: controllers mounted together (cpu,cpuacct, as
// Debian and Ubuntu mount them, with links named after each) make one
// mount naming both, with the links; the named systemd hierarchy mounts
// by name; a lone controller is itself.
func TestV1Hierarchies(t *testing.T) {
	roots := map[cgroup1.Name]string{
		cgroup1.Cpu: "/sys/fs/cgroup/cpu", cgroup1.Cpuacct: "/sys/fs/cgroup/cpuacct",
		cgroup1.Memory: "/sys/fs/cgroup/memory", cgroup1.SystemdDbus: "/sys/fs/cgroup/systemd",
	}
	links := map[string]string{"/sys/fs/cgroup/cpu": "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
	got := v1Hierarchies(roots, func(p string) string {
		if l, ok := links[p]; ok {
			return l
		}
		return p
	})
	want := []Hierarchy{
		{Dir: "cpu,cpuacct", Options: "cpu,cpuacct", Links: []string{"cpu", "cpuacct"}},
		{Dir: "memory", Options: "memory"},
		{Dir: "systemd", Options: "none,name=systemd"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("v1Hierarchies = %+v\nwant %+v", got, want)
	}
}
