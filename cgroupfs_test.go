package berth_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
)

// hostCgroupDirs lists the directories under /sys/fs/cgroup that hold a
// cgroup v1 hierarchy on this host (none on a v2 host).
func hostCgroupDirs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, l := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup" && strings.HasPrefix(f[4], "/sys/fs/cgroup/") {
			dirs = append(dirs, strings.TrimPrefix(f[4], "/sys/fs/cgroup/"))
		}
	}
	slices.Sort(dirs)
	return dirs
}

// TestCgroupFS: a container's /sys/fs/cgroup holds the host's cgroup
// hierarchies as docker mounts them, each rooted at the container's own
// cgroup, read-only (read-write when privileged): what the JVM and Go's
// runtime read their memory and CPU limits from. The same whether the
// container starts directly or through the child stage (rlimits), and for
// a process Exec starts.
func TestCgroupFS(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	dirs := hostCgroupDirs(t)
	v2 := len(dirs) == 0
	limits := "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max"
	want := "67108864\n50000\n50\n"
	if v2 {
		limits = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max"
		want = "67108864\n50000 100000\n50\n"
	}
	res := berth.WithResources(berth.Resources{Memory: 64 << 20, NanoCPUs: 500_000_000, PidsLimit: 50})
	script := `grep ' cgroup' /proc/self/mountinfo; echo ---; cat /proc/self/cgroup; echo ---; ` + limits + `; echo ---
touch /sys/fs/cgroup/x 2>&1; (echo 1 > /sys/fs/cgroup/` + map[bool]string{false: "memory/", true: ""}[v2] + `cgroup.procs) 2>&1; true`
	check := func(t *testing.T, out, mode string) {
		t.Helper()
		parts := strings.Split(out, "---\n")
		if len(parts) != 4 {
			t.Fatalf("output in %d parts, want 4:\n%s", len(parts), out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(parts[0]), "\n") {
			f := strings.Fields(l)
			if len(f) < 6 {
				continue
			}
			if f[3] != "/" || !strings.HasPrefix(f[5], mode+",") {
				t.Errorf("mount %s: root %s, options %s; want root / (the container's cgroup), %s", f[4], f[3], f[5], mode)
			}
			got = append(got, strings.TrimPrefix(strings.TrimPrefix(f[4], "/sys/fs/cgroup"), "/"))
		}
		slices.Sort(got)
		wantDirs := dirs
		if v2 {
			wantDirs = []string{""}
		}
		if !slices.Equal(got, wantDirs) {
			t.Errorf("cgroup mounts under /sys/fs/cgroup: %q, want the host's %q", got, wantDirs)
		}
		for _, l := range strings.Split(strings.TrimSpace(parts[1]), "\n") {
			if !strings.HasSuffix(l, ":/") {
				t.Errorf("/proc/self/cgroup line %q: want the namespace's root", l)
			}
		}
		if parts[2] != want {
			t.Errorf("limits read inside: %q, want %q", parts[2], want)
		}
		refused := strings.Count(parts[3], "Read-only file system")
		if mode == "ro" && refused != 2 {
			t.Errorf("writes under /sys/fs/cgroup: %q, want both refused as read-only", parts[3])
		}
	}
	t.Run("direct", func(t *testing.T) { check(t, containerOut(t, rt, script, res), "ro") })
	t.Run("child stage", func(t *testing.T) {
		check(t, containerOut(t, rt, script, res, berth.WithRlimits(berth.Rlimit{Name: "nofile", Soft: 1000, Hard: 1000})), "ro")
	})
	t.Run("exec", func(t *testing.T) {
		c, err := rt.Run(ctx, "busybox", sh("sleep 60"), berth.WithDetach(), res)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
		check(t, execOut(t, c, sh(script)), "ro")
	})
	t.Run("privileged", func(t *testing.T) {
		out := containerOut(t, rt, script, res, berth.WithPrivileged())
		check(t, out, "rw")
		if strings.Contains(out, "Read-only file system") {
			t.Errorf("a privileged container's /sys/fs/cgroup refused a write:\n%s", out)
		}
	})
	// The user's mounts go on last, as docker's: one at /sys/fs/cgroup
	// is what the container sees there.
	t.Run("user mount over it", func(t *testing.T) {
		out := containerOut(t, rt, "touch /sys/fs/cgroup/mine && ls /sys/fs/cgroup", berth.WithMounts(berth.Mount{Type: berth.MountTmpfs, Target: "/sys/fs/cgroup"}))
		if out != "mine\n" {
			t.Errorf("/sys/fs/cgroup under the user's tmpfs holds %q, want only the file written", out)
		}
	})
}
