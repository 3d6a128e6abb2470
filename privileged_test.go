package berth_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// hostCapBnd is this program's capability bounding set as
// /proc/self/status shows it: what WithPrivileged gives.
func hostCapBnd(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(statusFields(string(b), "CapBnd"), "CapBnd: ")
}

// TestPrivileged checks from inside a privileged container what
// WithPrivileged lifts, as docker run --privileged does: every capability
// this program has, no seccomp filter and no no_new_privs (unless asked
// for), nothing masked, /sys and /proc/sys writable, the host's device
// nodes with their numbers, modes and owners, and no refusal by the
// devices cgroup; the same for a process Exec starts in it. The sysctl
// written inside belongs to the container's network namespace: the
// host's value stays.
func TestPrivileged(t *testing.T) {
	rt := busyboxRuntime(t)
	const sysctl = "/proc/sys/net/ipv4/ip_default_ttl"
	hostTTL, err := os.ReadFile(sysctl)
	if err != nil {
		t.Fatal(err)
	}
	newTTL := "77"
	if strings.TrimSpace(string(hostTTL)) == newTTL {
		newTTL = "78"
	}
	capBnd := hostCapBnd(t)

	// Device nodes of the host to find inside: those of the list that
	// exist.
	var hostDevs []string
	for _, p := range []string{"/dev/kmsg", "/dev/loop-control", "/dev/fuse", "/dev/net/tun", "/dev/tty0", "/dev/vda", "/dev/sda", "/dev/loop0"} {
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
			hostDevs = append(hostDevs, fmt.Sprintf("%s %x:%x %o %d:%d", p, unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Mode&0o7777, st.Uid, st.Gid))
		}
	}
	if len(hostDevs) == 0 {
		t.Fatal("the host has none of the device nodes this test looks for")
	}
	major := unusedMajor(t)

	script := `cat /proc/self/status; echo ---; cat /proc/mounts; echo ---
stat -c '%F' /proc/timer_list /proc/keys; echo ---
echo ` + newTTL + ` > ` + sysctl + ` && cat ` + sysctl + `; echo ---
for d in ` + strings.Join(firstFields(hostDevs), " ") + `; do stat -c '%n %t:%T %a %u:%g' $d; done; echo ---
mknod /tmp/dev c ` + major + ` 0 && dd if=/tmp/dev of=/dev/null count=1 2>&1; true`
	out := containerOut(t, rt, script, berth.WithPrivileged())
	parts := strings.Split(out, "---\n")
	if len(parts) != 6 {
		t.Fatalf("output in %d parts, want 6:\n%s", len(parts), out)
	}
	want := "CapBnd: " + capBnd + "\nCapEff: " + capBnd + "\nSeccomp: 0\nNoNewPrivs: 0"
	if d := diffLines(want, statusFields(parts[0], "CapBnd", "CapEff", "Seccomp", "NoNewPrivs")); d != "" {
		t.Errorf("/proc/self/status (-want +got):\n%s", d)
	}
	table := mountTable(parts[1])
	if got := table["/sys"]; !strings.HasPrefix(got, "sysfs rw,") {
		t.Errorf("/sys mounted %q, want sysfs read-write", got)
	}
	for _, p := range []string{"/proc/sys", "/proc/bus", "/sys/firmware", "/proc/timer_list", "/proc/keys"} {
		if got, ok := table[p]; ok {
			t.Errorf("%s has a mount of its own (%s): nothing is masked or read-only in a privileged container", p, got)
		}
	}
	if got := parts[2]; got != "regular empty file\nregular empty file\n" {
		t.Errorf("/proc/timer_list and /proc/keys are %q, want the kernel's files, unmasked", got)
	}
	if got := strings.TrimSpace(parts[3]); got != newTTL {
		t.Errorf("%s inside reads %q after writing %s", sysctl, got, newTTL)
	}
	if d := diffLines(strings.Join(hostDevs, "\n")+"\n", parts[4]); d != "" {
		t.Errorf("host device nodes inside: path major:minor mode uid:gid (-host +container):\n%s", d)
	}
	if !strings.Contains(parts[5], "No such device or address") {
		t.Errorf("opening a node of unregistered major %s: %q, want the kernel's ENXIO: the devices cgroup must allow every device", major, parts[5])
	}
	if after, _ := os.ReadFile(sysctl); string(after) != string(hostTTL) {
		t.Errorf("the host's %s changed from %q to %q", sysctl, hostTTL, after)
	}

	t.Run("not privileged", func(t *testing.T) {
		out := containerOut(t, rt, `grep -E '^(CapBnd|Seccomp):' /proc/self/status; grep ' /sys ' /proc/mounts
stat -c '%F' /proc/timer_list; ls /dev/kmsg 2>&1 | grep -c 'No such'
echo 1 > `+sysctl+` 2>/dev/null || echo refused
mknod /tmp/dev c `+major+` 0 && dd if=/tmp/dev of=/dev/null count=1 2>&1 | grep -c 'Operation not permitted'`)
		for _, w := range []string{"CapBnd:\t00000000a80425fb", "Seccomp:\t2", "sysfs /sys sysfs ro,", "character special file\n1\nrefused\n1\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("a plain container's output lacks %q:\n%s", w, out)
			}
		}
	})

	// With no_new_privs the container starts directly (its /proc mounted
	// from outside, after the fork), without it through the child stage:
	// both ways leave nothing masked.
	t.Run("no_new_privs asked for", func(t *testing.T) {
		out := containerOut(t, rt, "cat /proc/self/status; stat -c '%F' /proc/timer_list; grep ' /sys ' /proc/mounts",
			berth.WithPrivileged(), berth.WithNoNewPrivileges(true))
		if got := statusFields(out, "NoNewPrivs", "Seccomp"); got != "NoNewPrivs: 1\nSeccomp: 0" {
			t.Errorf("with WithNoNewPrivileges(true): %s", got)
		}
		if !strings.Contains(out, "regular empty file\nsysfs /sys sysfs rw,") {
			t.Errorf("with WithNoNewPrivileges(true), /proc/timer_list is masked or /sys read-only:\n%s", out)
		}
	})

	t.Run("exec", func(t *testing.T) {
		ctx := context.Background()
		c, err := rt.Run(ctx, "busybox", sh("sleep 60"), berth.WithPrivileged(), berth.WithDetach(), berth.WithCapDrop("ALL"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
		out := execOut(t, c, sh("cat /proc/self/status; ls "+firstFields(hostDevs)[0]))
		want := "CapBnd: " + capBnd + "\nSeccomp: 0\nNoNewPrivs: 0"
		if d := diffLines(want, statusFields(out, "CapBnd", "Seccomp", "NoNewPrivs")); d != "" {
			t.Errorf("an exec'd process's status (-want +got), WithCapDrop(\"ALL\") ignored as docker does:\n%s", d)
		}
		if !strings.Contains(out, firstFields(hostDevs)[0]+"\n") {
			t.Errorf("an exec'd process sees no %s:\n%s", firstFields(hostDevs)[0], out)
		}
		info, err := c.Inspect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !info.Privileged || info.Seccomp || info.NoNewPrivileges {
			t.Errorf("Inspect: Privileged %v, Seccomp %v, NoNewPrivileges %v; want true, false, false", info.Privileged, info.Seccomp, info.NoNewPrivileges)
		}
	})

	// A plain container whose devices directory someone removed (its
	// process moved out first) takes no Exec: the process would keep this
	// program's devices cgroup, with CAP_MKNOD.
	t.Run("exec where the device policy is gone", func(t *testing.T) {
		const devRoot = "/sys/fs/cgroup/devices"
		if _, err := os.Stat(filepath.Join(devRoot, "devices.list")); err != nil {
			t.Skipf("skipping: no v1 devices hierarchy at %s (%v)", devRoot, err)
		}
		ctx := context.Background()
		c, err := rt.Run(ctx, "busybox", sh("sleep 60"), berth.WithDetach())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
		st, err := c.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var dir string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[1] == "devices" {
				dir = filepath.Join(devRoot, f[2])
			}
		}
		if !strings.HasSuffix(dir, c.ID) {
			t.Fatalf("the container's devices cgroup is %q", dir)
		}
		if err := os.WriteFile(filepath.Join(devRoot, "cgroup.procs"), []byte(fmt.Sprint(st.Pid)), 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Rmdir(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, sh("true")); err == nil || !strings.Contains(err.Error(), "has no devices directory") {
			t.Errorf("Exec = %v, want a refusal naming the missing devices directory", err)
		}
	})
}

// unusedMajor is a character device major in the ranges kept for local
// use (60-63, 120-127) that no driver registered here: opening a node of
// it fails with ENXIO once the devices cgroup lets it through, and with
// EPERM where the cgroup refuses it.
func unusedMajor(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/devices")
	if err != nil {
		t.Fatal(err)
	}
	chars, _, _ := strings.Cut(string(b), "Block devices:")
	used := map[string]bool{}
	for _, l := range strings.Split(chars, "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			used[f[0]] = true
		}
	}
	for _, m := range []int{60, 61, 62, 63, 120, 121, 122, 123, 124, 125, 126, 127} {
		if s := fmt.Sprint(m); !used[s] {
			return s
		}
	}
	t.Fatal("every character major kept for local use is registered here")
	return ""
}

// firstFields returns the first word of each line.
func firstFields(lines []string) []string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.Fields(l)[0])
	}
	return out
}
