package berth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// deviceNodes makes character device nodes of major under a new
// directory, by relative name to minor, mode 0640 and owner 1000:1001,
// and returns the directory.
func deviceNodes(t *testing.T, major int, minors map[string]int) string {
	t.Helper()
	dir := t.TempDir()
	for name, minor := range minors {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o640, int(unix.Mkdev(uint32(major), uint32(minor)))); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, 1000, 1001); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDevices checks from inside a container what WithDevices and
// WithDeviceCgroupRules give, as docker run --device and
// --device-cgroup-rule do: the host's node at the container path with its
// numbers, mode and owner, a directory's nodes below the path, a symlink
// followed, a default node (/dev/zero) replaced, and the container's
// cgroup allowing exactly the given access.
// The nodes are of a major no driver has: opening one the cgroup allows
// fails with ENXIO ("No such device or address"), one it refuses with
// EPERM. A process Exec starts has the same devices cgroup; removing the
// container leaves no devices cgroup behind.
func TestDevices(t *testing.T) {
	rt := busyboxRuntime(t)
	major := unusedMajor(t)
	m, _ := strconv.Atoi(major)
	host := deviceNodes(t, m, map[string]int{"one": 1, "dir/a": 2, "dir/sub/b": 3, "ro": 4, "six": 6, "unmapped": 7})
	if err := os.Symlink("ro", filepath.Join(host, "link")); err != nil {
		t.Fatal(err)
	}
	opts := []berth.RunOption{
		berth.WithDevices(host+"/one:/dev/one:rw", host+"/dir:/dev/mapped", host+"/link:/dev/ro:r", host+"/six:/dev/zero"),
		berth.WithDeviceCgroupRules(fmt.Sprintf("c %s:5 rw", major)),
	}
	script := `stat -c '%n %F %t:%T %a %u:%g' /dev/one /dev/mapped/a /dev/mapped/sub/b /dev/ro /dev/zero; echo ---
try() { if "$@" 2>/tmp/err; then echo "$2: opened"; else echo "$2: $(sed 's/.*: //' /tmp/err)"; fi; }
try cat /dev/one; try cat /dev/mapped/sub/b; try cat /dev/ro; try tee /dev/ro </dev/null
mknod /tmp/five c ` + major + ` 5 && try cat /tmp/five
mknod /tmp/seven c ` + major + ` 7 && try cat /tmp/seven`
	out := containerOut(t, rt, script, opts...)
	hex := strconv.FormatInt(int64(m), 16)
	want := fmt.Sprintf(`/dev/one character special file %[1]s:1 640 1000:1001
/dev/mapped/a character special file %[1]s:2 640 1000:1001
/dev/mapped/sub/b character special file %[1]s:3 640 1000:1001
/dev/ro character special file %[1]s:4 640 1000:1001
/dev/zero character special file %[1]s:6 640 1000:1001
---
/dev/one: No such device or address
/dev/mapped/sub/b: No such device or address
/dev/ro: No such device or address
/dev/ro: Operation not permitted
/tmp/five: No such device or address
/tmp/seven: Operation not permitted
`, hex)
	if d := diffLines(want, out); d != "" {
		t.Errorf("inside a container with devices (-want +got):\n%s", d)
	}

	// A running one: Exec's process is in the same devices cgroup, in
	// the open parent beside the root's (see internal/cgroup).
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), append(opts, berth.WithDetach())...)
	got := execOut(t, c, sh("cat /dev/one 2>&1; cat /dev/seven 2>&1; mknod /tmp/seven c "+major+" 7 && cat /tmp/seven 2>&1; true"))
	if want := "cat: can't open '/dev/one': No such device or address\ncat: can't open '/dev/seven': No such file or directory\ncat: can't open '/tmp/seven': Operation not permitted\n"; got != want {
		t.Errorf("in an exec'd process:\n%s\nwant:\n%s", got, want)
	}
	open := "/sys/fs/cgroup/devices/berth/" + rootTag(rt.Root()) + ".devices"
	_, err := os.Stat("/sys/fs/cgroup/devices/berth")
	v1 := err == nil
	if _, err := os.Stat(filepath.Join(open, c.ID)); v1 && err != nil {
		t.Errorf("the container's devices cgroup is not in the open parent: %v", err)
	}
	if err := c.Remove(context.Background(), berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(open); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after the container's removal (%v)", open, err)
	}
}

// TestDevicesRefused: device options docker refuses, or that berth cannot
// honour (a node outside /dev or over one of its own /dev entries), fail
// Run with ErrInvalid naming what was wrong, before anything is made; a
// host path that is missing or no device fails the start, naming it, and
// leaves no cgroup.
func TestDevicesRefused(t *testing.T) {
	rt := busyboxRuntime(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := t.TempDir()
	for _, tc := range []struct {
		opt  berth.RunOption
		want string
	}{
		{berth.WithDevices("dev/fuse"), `"dev/fuse" is not an absolute path`},
		{berth.WithDevices("/dev/fuse:fuse"), `"fuse" is not an absolute path`},
		{berth.WithDevices("/dev/fuse:/dev/fuse:rwx"), `bad mode "rwx"`},
		{berth.WithDevices("/dev/fuse:/dev/fuse:rr"), `bad mode "rr"`},
		{berth.WithDevices("/a:/b:r:w"), "invalid device specification"},
		{berth.WithDevices("/dev/fuse:/etc/fuse"), "/etc/fuse is not under /dev"},
		{berth.WithDevices("/dev/fuse:/dev/pts/9"), "/dev/pts/9 is in or at one of the container's own /dev directories"},
		{berth.WithDevices("/dev/fuse:/dev/shm"), "/dev/shm is in or at one of the container's own /dev directories"},
		{berth.WithDevices("/dev/fuse:/dev/../etc/x"), "/etc/x is not under /dev"},
		{berth.WithDevices("/dev/snd:/dev"), "/dev is the container's /dev itself"},
		{berth.WithDeviceCgroupRules("c 1:3"), `invalid device cgroup rule "c 1:3"`},
		{berth.WithDeviceCgroupRules("x 1:3 r"), `invalid device cgroup rule "x 1:3 r"`},
		{berth.WithDeviceCgroupRules("c 1:3 rwmr"), `invalid device cgroup rule "c 1:3 rwmr"`},
		{berth.WithDeviceCgroupRules("c 99999999999:3 r"), "out of range"},
	} {
		_, _, err := runOut(t, rt, "busybox", sh("true"), tc.opt, berth.WithAutoRemove())
		if !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v; want ErrInvalid saying %q", err, tc.want)
		}
	}
	for _, tc := range []struct{ device, want string }{
		{"/dev/no-such-device", "/dev/no-such-device: no such file or directory"},
		{file + ":/dev/file", file + " is not a device node"},
		{nodes + ":/dev/nodes:rw", "no device node in " + nodes},
	} {
		_, _, err := runOut(t, rt, "busybox", sh("true"), berth.WithDevices(tc.device), berth.WithAutoRemove())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WithDevices(%q): %v; want an error saying %q", tc.device, err, tc.want)
		}
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/berth/" + rootTag(rt.Root()) + ".devices"); len(left) > 0 {
		t.Errorf("open devices parent left: %v", left)
	}
	list, err := rt.Containers(context.Background(), berth.WithAll())
	if err != nil || len(list) != 0 {
		t.Errorf("containers left: %v, %v", list, err)
	}
}
