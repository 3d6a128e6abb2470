package berth_test

import (
	"context"
	"fmt"
	"os"
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

	// Device nodes of the host to find inside: the first that exists of
	// each kind, and /dev/kmsg (1:11), outside docker's allow-list, to open.
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
	_, kmsgErr := os.Stat("/dev/kmsg")

	script := `cat /proc/self/status; echo ---; cat /proc/mounts; echo ---
stat -c '%F' /proc/timer_list /proc/keys; echo ---
echo ` + newTTL + ` > ` + sysctl + ` && cat ` + sysctl + `; echo ---
for d in ` + strings.Join(firstFields(hostDevs), " ") + `; do stat -c '%n %t:%T %a %u:%g' $d; done; echo ---
mknod /tmp/kmsg c 1 11 && dd if=/tmp/kmsg of=/dev/null bs=8192 count=1 2>/dev/null && echo opened`
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
	if kmsgErr == nil && strings.TrimSpace(parts[5]) != "opened" {
		t.Errorf("a node for /dev/kmsg (1:11) did not open: the devices cgroup must allow every device; got %q", parts[5])
	}
	if after, _ := os.ReadFile(sysctl); string(after) != string(hostTTL) {
		t.Errorf("the host's %s changed from %q to %q", sysctl, hostTTL, after)
	}

	t.Run("not privileged", func(t *testing.T) {
		out := containerOut(t, rt, `grep -E '^(CapBnd|Seccomp):' /proc/self/status; grep ' /sys ' /proc/mounts
stat -c '%F' /proc/timer_list; ls /dev/kmsg 2>&1 | grep -c 'No such'
echo 1 > `+sysctl+` 2>/dev/null || echo refused
mknod /tmp/kmsg c 1 11 && dd if=/tmp/kmsg of=/dev/null bs=8192 count=1 2>/dev/null || echo denied`)
		for _, w := range []string{"CapBnd:\t00000000a80425fb", "Seccomp:\t2", "sysfs /sys sysfs ro,", "character special file\n1\nrefused\ndenied\n"} {
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
		out := execOut(t, c, sh("cat /proc/self/status; ls /dev/kmsg"))
		want := "CapBnd: " + capBnd + "\nSeccomp: 0\nNoNewPrivs: 0"
		if d := diffLines(want, statusFields(out, "CapBnd", "Seccomp", "NoNewPrivs")); d != "" {
			t.Errorf("an exec'd process's status (-want +got), WithCapDrop(\"ALL\") ignored as docker does:\n%s", d)
		}
		if kmsgErr == nil && !strings.Contains(out, "/dev/kmsg\n") {
			t.Errorf("an exec'd process sees no /dev/kmsg:\n%s", out)
		}
		info, err := c.Inspect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !info.Privileged || info.Seccomp || info.NoNewPrivileges {
			t.Errorf("Inspect: Privileged %v, Seccomp %v, NoNewPrivileges %v; want true, false, false", info.Privileged, info.Seccomp, info.NoNewPrivileges)
		}
	})
}

// firstFields returns the first word of each line.
func firstFields(lines []string) []string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.Fields(l)[0])
	}
	return out
}
