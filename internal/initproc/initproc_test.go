package initproc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/caps"
	"github.com/berth-dev/berth/internal/seccomp"
	"golang.org/x/sys/unix"
)

// needRoot skips tests that need what the child stage needs: root in the
// initial user namespace (mounts, mknod, pivot_root) and overlayfs.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root in the initial user namespace (overlay, proc and sysfs mounts, mknod, pivot_root)")
	}
	if b, err := os.ReadFile("/proc/filesystems"); err != nil || !bytes.Contains(b, []byte("overlay")) {
		t.Skip("skipping: the kernel has no overlayfs (/proc/filesystems)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("skipping: /bin/busybox (Debian busybox-static) is needed to build a test image")
	}
}

var applets = []string{
	"sh", "cat", "ls", "id", "hostname", "sleep", "true", "false", "echo", "pwd",
	"unshare", "mount", "touch", "stat", "readlink", "grep", "wc", "env", "head", "test",
}

// makeImage builds a one-layer image: busybox plus its applets, a minimal
// /etc/passwd and /etc/group, and whatever extra adds.
func makeImage(t testing.TB, extra func(dir string)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lower")
	for _, d := range []string{"bin", "etc", "proc", "dev", "sys", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd":  "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":   "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n",
		"etc/notexec": "just data\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if extra != nil {
		extra(dir)
	}
	return dir
}

// newSpec returns a spec over a fresh upper layer on lower.
func newSpec(t testing.TB, lower string, args ...string) *Spec {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{"upper", "work", "rootfs", "state"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &Spec{
		Lower:    []string{lower},
		Upper:    filepath.Join(base, "upper"),
		Work:     filepath.Join(base, "work"),
		Rootfs:   filepath.Join(base, "rootfs"),
		StateDir: filepath.Join(base, "state"),
		Args:     args,
		Env:      []string{"PATH=/bin", "HOME=/root"},

		SeccompFilter: testFilter(t, nil),
	}
}

// testFilter compiles Docker's default profile for capNames (nil: the
// default capabilities), as the berth package does before Command.
func testFilter(t testing.TB, capNames []string) []unix.SockFilter {
	t.Helper()
	if capNames == nil {
		capNames = caps.Default()
	}
	f, err := seccomp.DefaultFilter(capNames)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type result struct {
	stdout, stderr string
	setup          error // from Release
	code           int   // exit code, -1 when killed by a signal
}

func run(t testing.TB, spec *Spec) result {
	t.Helper()
	p, err := Command(spec)
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	var out, errb bytes.Buffer
	p.Cmd.Stdout, p.Cmd.Stderr = &out, &errb
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	r := result{setup: p.Release()}
	werr := p.Wait()
	r.stdout, r.stderr = out.String(), errb.String()
	r.code = p.Cmd.ProcessState.ExitCode()
	if werr != nil && r.setup == nil {
		var ee interface{ ExitCode() int }
		if !errors.As(werr, &ee) {
			t.Fatalf("Wait: %v", werr)
		}
	}
	return r
}

// mustRun runs spec and fails unless setup succeeded and the command exited 0.
func mustRun(t testing.TB, spec *Spec) string {
	t.Helper()
	r := run(t, spec)
	if r.setup != nil {
		t.Fatalf("Release: %v (stderr %q)", r.setup, r.stderr)
	}
	if r.code != 0 {
		t.Fatalf("%v exited %d; stdout %q stderr %q", spec.Args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func statusField(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestSecurityStatus(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	for _, nnp := range []bool{true, false} {
		t.Run(fmt.Sprintf("no_new_privs=%v", nnp), func(t *testing.T) {
			spec := newSpec(t, img, "cat", "/proc/self/status")
			spec.NoNewPrivileges = nnp
			st := mustRun(t, spec)
			want := map[string]string{
				"CapBnd":  "00000000a80425fb",
				"CapEff":  "00000000a80425fb",
				"CapPrm":  "00000000a80425fb",
				"CapInh":  "0000000000000000",
				"CapAmb":  "0000000000000000",
				"Seccomp": "2",
			}
			if nnp {
				want["NoNewPrivs"] = "1"
			} else {
				want["NoNewPrivs"] = "0"
			}
			for k, v := range want {
				if got := statusField(st, k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestSeccomp tells the filter's denials from missing capabilities:
// unshare(CLONE_NEWUSER) needs no capability on this kernel, so only the
// profile (which allows unshare with CAP_SYS_ADMIN alone) can refuse it.
func TestSeccomp(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	tests := []struct {
		name    string
		seccomp bool
		caps    []string
		cmd     string
		want    string
	}{
		{"userns denied by the filter", true, nil, "unshare -U true 2>&1; echo rc=$?", "Operation not permitted\nrc=1"},
		{"userns allowed without the filter", false, nil, "unshare -U true; echo rc=$?", "rc=0"},
		{"caps-conditional rule with CAP_SYS_ADMIN", true, append(defaultCapsForTest(), "CAP_SYS_ADMIN"), "unshare -u true; echo rc=$?", "rc=0"},
		{"mount denied", true, nil, "mount -t tmpfs x /tmp 2>&1; echo rc=$?", "permission denied (are you root?)\nrc=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := newSpec(t, img, "sh", "-c", tt.cmd)
			spec.SeccompFilter = nil
			if tt.seccomp {
				spec.SeccompFilter = testFilter(t, tt.caps)
			}
			spec.Capabilities = tt.caps
			if out := mustRun(t, spec); !strings.Contains(out, tt.want) {
				t.Errorf("output %q, want it to contain %q", out, tt.want)
			}
		})
	}
}

func defaultCapsForTest() []string {
	return []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
}

func TestPID1AndHostname(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	spec := newSpec(t, img, "sh", "-c", "echo $$; hostname; cat /sys/class/net/lo/flags; pwd")
	spec.Hostname = "berth-test"
	spec.Dir = "/work/sub"
	got := strings.Fields(mustRun(t, spec))
	want := []string{"1", "berth-test", "0x9", "/work/sub"} // 0x9 = IFF_UP|IFF_LOOPBACK
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMasksAndReadonlyPaths(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	mounts := mustRun(t, newSpec(t, img, "cat", "/proc/mounts"))
	byTarget := map[string]string{}
	for _, l := range strings.Split(mounts, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 {
			byTarget[f[1]] = f[2] + " " + f[3]
		}
	}
	check := func(target, fstype string, ro bool) {
		t.Helper()
		m, ok := byTarget[target]
		if !ok {
			t.Errorf("%s is not a mount point; mounts:\n%s", target, mounts)
			return
		}
		if fstype != "" && !strings.HasPrefix(m, fstype+" ") {
			t.Errorf("%s: %s, want type %s", target, m, fstype)
		}
		if ro && !strings.Contains(m, " ro") {
			t.Errorf("%s: %s, want ro", target, m)
		}
	}
	check("/", "overlay", false)
	check("/proc", "proc", false)
	check("/dev", "tmpfs", false)
	check("/dev/pts", "devpts", false)
	check("/dev/shm", "tmpfs", false)
	check("/dev/mqueue", "mqueue", false)
	check("/sys", "sysfs", true)
	for _, p := range maskedPaths {
		if _, err := os.Stat(p); err == nil {
			check(p, "", strings.HasPrefix(byTarget[p], "tmpfs ") && !strings.Contains(byTarget[p], "size=65536k"))
		}
	}
	for _, p := range readonlyPaths {
		if _, err := os.Stat(p); err == nil {
			check(p, "", true)
		}
	}
	out := mustRun(t, newSpec(t, img, "sh", "-c", "wc -c < /proc/keys; ls -l /dev/null /dev/ptmx /dev/fd; echo x > /proc/sysrq-trigger; echo rc=$?"))
	if !strings.HasPrefix(out, "0\n") {
		t.Errorf("/proc/keys readable through the mask: %q", out)
	}
	if !strings.Contains(out, "rc=1") || !strings.Contains(out, "/dev/ptmx -> pts/ptmx") {
		t.Errorf("unexpected output %q", out)
	}
}

// exitCodeCase is a command that cannot run, with docker's exit code.
type exitCodeCase struct {
	name string
	args []string
	code int
}

// exitCodeCases are commands of makeImage's image that cannot run.
var exitCodeCases = []exitCodeCase{
	{"missing in PATH", []string{"nosuchcommand"}, ExitNotFound},
	{"missing path", []string{"/bin/nosuch"}, ExitNotFound},
	{"not executable", []string{"/etc/notexec"}, ExitNotExecutable},
	{"directory", []string{"/bin"}, ExitNotExecutable},
}

func TestExitCodes(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	for _, tt := range exitCodeCases {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, newSpec(t, img, tt.args...))
			var se *SetupError
			if !errors.As(r.setup, &se) {
				t.Fatalf("Release = %v, want a *SetupError", r.setup)
			}
			if se.ExitCode != tt.code || se.Step != "exec" {
				t.Errorf("got %+v (%v), want step exec, exit code %d", se, se, tt.code)
			}
		})
	}
	// A command that runs and fails keeps its own exit status.
	if r := run(t, newSpec(t, img, "sh", "-c", "exit 3")); r.setup != nil || r.code != 3 {
		t.Errorf("exit 3: setup %v code %d", r.setup, r.code)
	}
}

func TestLeakedFdsAreClosed(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)
	// Deliberately without O_CLOEXEC: the fd survives into the child stage.
	fd, err := syscall.Open(secret, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	dfd, err := syscall.Open(filepath.Dir(secret), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(dfd)

	out := mustRun(t, newSpec(t, img, "ls", "/proc/self/fd"))
	fds := strings.Fields(out)
	sort.Strings(fds)
	if !slices.Equal(fds, []string{"0", "1", "2", "3"}) { // 3 is ls's own listing
		t.Errorf("fds in the container: %v, want only stdio (+ls's own); leaked %d and %d", fds, fd, dfd)
	}

	// CVE-2024-21626: a working directory through a leaked host fd.
	for _, n := range []int{fd, dfd, 7} {
		spec := newSpec(t, img, "sh", "-c", "pwd; ls")
		spec.Dir = fmt.Sprintf("/proc/self/fd/%d", n)
		r := run(t, spec)
		if r.setup == nil {
			if strings.Contains(r.stdout, "secret") {
				t.Fatalf("Dir %s reached the host: %q", spec.Dir, r.stdout)
			}
			if !strings.HasPrefix(r.stdout, "/") {
				t.Errorf("Dir %s: cwd %q not inside the container", spec.Dir, r.stdout)
			}
		}
	}
}

func sha256File(t testing.TB, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestHostBinaryCannotBeOverwritten(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	before := sha256File(t, exe)

	spec := newSpec(t, img, "sh", "-c", "echo pwned > /proc/1/exe; echo pwned >> /proc/self/exe; : > /proc/1/exe; true")
	p, err := Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	// While the child stage runs from the sealed copy, even host root cannot
	// change what its /proc/PID/exe names.
	exeLink := fmt.Sprintf("/proc/%d/exe", p.Pid())
	if f, err := os.OpenFile(exeLink, os.O_WRONLY, 0); err == nil {
		if _, werr := f.Write([]byte("pwned")); werr == nil {
			t.Errorf("wrote to the child stage's executable")
		}
		if terr := f.Truncate(0); terr == nil {
			t.Errorf("truncated the child stage's executable")
		}
		f.Close()
	} else {
		t.Logf("opening %s for writing: %v (refused, as it should be)", exeLink, err)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	p.Wait()

	// The file the child is exec'd from refuses writes: a read-only mount
	// (bindSeal) or a sealed memfd (sealCopy, the fallback).
	if w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", sealedExe.f.Fd()), os.O_WRONLY, 0); err == nil {
		w.Close()
		t.Errorf("the sealed binary opens for writing")
	}
	if seals, err := unix.FcntlInt(sealedExe.f.Fd(), unix.F_GET_SEALS, 0); err == nil {
		want := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
		if seals&want != want {
			t.Errorf("seals = %#x, want %#x", seals, want)
		}
	}
	if after := sha256File(t, exe); after != before {
		t.Fatalf("the host binary %s changed", exe)
	}
}

func TestImageSymlinksStayInside(t *testing.T) {
	needRoot(t)
	// Directly in /tmp, so that the same path exists inside the image (which
	// has /tmp) and a confined symlink lands there instead of on the host.
	hf, err := os.CreateTemp("", "berth-hosts-*")
	if err != nil {
		t.Fatal(err)
	}
	hf.WriteString("host content\n")
	hf.Close()
	hostFile := hf.Name()
	t.Cleanup(func() { os.Remove(hostFile) })
	hostBefore := sha256File(t, hostFile)
	passwdBefore := sha256File(t, "/etc/passwd")

	t.Run("proc symlink refused", func(t *testing.T) {
		img := makeImage(t, func(dir string) {
			os.Remove(filepath.Join(dir, "proc"))
			os.Symlink("/", filepath.Join(dir, "proc"))
		})
		r := run(t, newSpec(t, img, "true"))
		var se *SetupError
		if !errors.As(r.setup, &se) || se.Path != "/proc" || se.Errno != unix.ELOOP {
			t.Fatalf("Release = %v, want a refusal to mount proc on a symlink", r.setup)
		}
	})
	t.Run("dev and file targets", func(t *testing.T) {
		img := makeImage(t, func(dir string) {
			os.Symlink("/etc/passwd", filepath.Join(dir, "dev/null"))
			os.Symlink("../../../../../../../.."+hostFile, filepath.Join(dir, "etc/hosts"))
		})
		imgPasswd := sha256File(t, filepath.Join(img, "etc/passwd"))
		spec := newSpec(t, img, "sh", "-c", "echo pwned > /dev/null; cat /etc/hosts; echo pwned >> /etc/hosts; ls -l /dev/null")
		spec.Files = map[string][]byte{"/etc/hosts": []byte("127.0.0.1 localhost\n")}
		out := mustRun(t, spec)
		if !strings.HasPrefix(out, "127.0.0.1 localhost\n") || !strings.Contains(out, "crw-rw-rw-") {
			t.Errorf("output %q", out)
		}
		if sha256File(t, filepath.Join(img, "etc/passwd")) != imgPasswd {
			t.Error("the image's /etc/passwd changed")
		}
		// The symlink target inside the root got the bind; the parent's file
		// holds the container's writes, as Docker's hosts file does.
		b, _ := os.ReadFile(filepath.Join(spec.StateDir, "etc_hosts"))
		if string(b) != "127.0.0.1 localhost\npwned\n" {
			t.Errorf("state file = %q", b)
		}
	})
	if sha256File(t, hostFile) != hostBefore {
		t.Error("a host file outside the container changed")
	}
	if sha256File(t, "/etc/passwd") != passwdBefore {
		t.Error("the host's /etc/passwd changed")
	}
}

func TestHostMountTableUnchanged(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	before, _ := os.ReadFile("/proc/self/mountinfo")
	spec := newSpec(t, img, "sh", "-c", "echo hi > /tmp/f; cat /tmp/f")
	if out := mustRun(t, spec); out != "hi\n" {
		t.Errorf("output %q", out)
	}
	after, _ := os.ReadFile("/proc/self/mountinfo")
	base := filepath.Dir(spec.Rootfs)
	for _, l := range strings.Split(string(after), "\n") {
		if strings.Contains(l, base) || strings.Contains(l, img) {
			t.Errorf("host mount table has a container mount: %s", l)
		}
	}
	if !bytes.Equal(before, after) {
		t.Logf("host mount table changed, though not by this test (other processes mount too)")
	}
	if ents, _ := os.ReadDir(spec.Rootfs); len(ents) != 0 {
		t.Errorf("the rootfs mountpoint is not empty on the host: %v", ents)
	}
	if b, err := os.ReadFile(filepath.Join(spec.Upper, "tmp/f")); err != nil || string(b) != "hi\n" {
		t.Errorf("upper layer tmp/f = %q, %v", b, err)
	}
}

func TestUserReadonlyRlimitsMounts(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "data"), []byte("volume data\n"), 0o644)
	spec := newSpec(t, img, "sh", "-c", "id; grep Cap /proc/self/status; ulimit -n; ulimit -Hn; cat /data/data; touch /data/x 2>&1; touch /x 2>&1; touch /dev/shm/ok && echo shm-ok")
	spec.UID, spec.GID, spec.AdditionalGIDs = 1000, 1000, []uint32{5}
	spec.ReadonlyRootfs = true
	spec.Rlimits = []Rlimit{{Type: unix.RLIMIT_NOFILE, Soft: 512, Hard: 1024}}
	spec.Mounts = []Mount{{Source: vol, Destination: "/data", Type: "bind", Options: []string{"rbind", "ro"}}}
	out := mustRun(t, spec)
	for _, want := range []string{
		"uid=1000(user) gid=1000(user) groups=5(tty)\n",
		"CapEff:\t0000000000000000", "CapBnd:\t00000000a80425fb",
		"\n512\n1024\n", "volume data\n", "touch: /data/x: Read-only file system", "touch: /x: Read-only file system", "shm-ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}

	var cur unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &cur)
	spec = newSpec(t, img, "true")
	spec.Rlimits = []Rlimit{{Type: unix.RLIMIT_NOFILE, Soft: cur.Max + 1, Hard: cur.Max + 1}}
	p, err := Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) == 0 || p.config == nil {
		t.Errorf("no warning for an rlimit above the hard limit")
	}
}

func TestTTY(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	master, slave := openPTY(t)
	defer master.Close()
	spec := newSpec(t, img, "sh", "-c", "test -t 0 && echo tty-yes; cat /proc/self/stat")
	spec.TTY = true
	p, err := Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Stdin, p.Cmd.Stdout, p.Cmd.Stderr = slave, slave, slave
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, master); close(done) }()
	p.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no EOF on the pty master")
	}
	s := out.String()
	if !strings.Contains(s, "tty-yes") {
		t.Fatalf("stdin is not a terminal: %q", s)
	}
	// Field 7 of /proc/self/stat is the controlling terminal: non-zero.
	i := strings.Index(s, ") ")
	if i < 0 {
		t.Fatalf("stat: %q", s)
	}
	if f := strings.Fields(s[i+2:]); len(f) < 5 || f[4] == "0" {
		t.Errorf("no controlling terminal: %q", s)
	}
}

func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("skipping: no /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

func TestSealedCopyCost(t *testing.T) {
	if _, err := exePath(); err != nil {
		t.Fatal(err)
	}
	st, _ := sealedExe.f.Stat()
	t.Logf("sealed copy of %.1f MB took %v", float64(st.Size())/1e6, sealedExe.cost)
	if _, err := sealedExe.f.Write([]byte("x")); err == nil {
		t.Error("writing to the sealed binary succeeded")
	}
}

// BenchmarkStartTrue measures Command+Start+Release+Wait of `true`, the child
// stage's share of a container start.
func BenchmarkStartTrue(b *testing.B) {
	needRoot(b)
	img := makeImage(b, nil)
	base := b.TempDir()
	var times, cpu []time.Duration
	for i := 0; b.Loop(); i++ {
		spec := &Spec{
			Lower: []string{img}, Args: []string{"true"}, SeccompFilter: testFilter(b, nil), NoNewPrivileges: true,
			Upper: filepath.Join(base, fmt.Sprint("u", i)), Work: filepath.Join(base, fmt.Sprint("w", i)),
			Rootfs: filepath.Join(base, fmt.Sprint("r", i)),
		}
		for _, d := range []string{spec.Upper, spec.Work, spec.Rootfs} {
			os.Mkdir(d, 0o755)
		}
		start := time.Now()
		p, err := Command(spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Start(); err != nil {
			b.Fatal(err)
		}
		if err := p.Release(); err != nil {
			b.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		cpu = append(cpu, p.Cmd.ProcessState.UserTime()+p.Cmd.ProcessState.SystemTime())
	}
	slices.Sort(times)
	slices.Sort(cpu)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	// CPU time of the child (stage plus `true`): a load-independent figure on
	// a shared machine where wall time varies with what else runs.
	b.ReportMetric(float64(cpu[len(cpu)/2].Microseconds())/1000, "child-cpu-ms")
}

// BenchmarkSealedCopy measures the memfd copy the first container start pays.
func BenchmarkSealedCopy(b *testing.B) {
	for b.Loop() {
		f, err := sealCopy("/proc/self/exe")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkROBind measures the cheaper alternative seal: a read-only bind
// mount of the binary, opened O_PATH and detached.
func BenchmarkROBind(b *testing.B) {
	needRoot(b)
	for b.Loop() {
		f, err := bindSeal()
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// TestTraceSteps prints where a container start spends its time (go test -v
// -run TraceSteps); it checks nothing beyond success.
func TestTraceSteps(t *testing.T) {
	needRoot(t)
	img := makeImage(t, nil)
	traceSteps = true
	defer func() { traceSteps = false }()
	for i := 0; i < 3; i++ {
		spec := newSpec(t, img, "true")
		spec.NoNewPrivileges = true
		mono := func() int64 {
			var ts unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
			return ts.Nano() / 1000
		}
		t0 := mono()
		p, err := Command(spec)
		if err != nil {
			t.Fatal(err)
		}
		var errb bytes.Buffer
		p.Cmd.Stderr = &errb
		t1 := mono()
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t2 := mono()
		time.Sleep(40 * time.Millisecond) // let the child reach its read so start-up is not counted below
		t3 := mono()
		if err := p.Release(); err != nil {
			t.Fatal(err)
		}
		t4 := mono()
		p.Wait()
		t5 := mono()
		line := fmt.Sprintf("command %dus start %dus | release→exec %dus wait %dus |", t1-t0, t2-t1, t4-t3, t5-t4)
		prev := t2
		for _, l := range strings.Split(errb.String(), "\n") {
			f := strings.Fields(l)
			if len(f) == 4 && f[0] == "berth-trace" {
				var ts, cpu int64
				fmt.Sscan(f[2], &ts)
				fmt.Sscan(f[3], &cpu)
				line += fmt.Sprintf(" %s +%dus (cpu total %dus)", f[1], ts-prev, cpu)
				prev = ts
			}
		}
		t.Logf("%s; child cpu at exit %v", line, p.Cmd.ProcessState.UserTime()+p.Cmd.ProcessState.SystemTime())
		if testing.Verbose() && i == 0 {
			for _, l := range strings.Split(errb.String(), "\n") {
				if strings.HasPrefix(l, "init ") && !strings.Contains(l, " 0 ms clock") {
					t.Log(l)
				}
			}
		}
	}
}

// BenchmarkSealedCopy20MB is BenchmarkSealedCopy for a binary of DESIGN.md's
// reference size.
func BenchmarkSealedCopy20MB(b *testing.B) {
	p := filepath.Join(b.TempDir(), "big")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0x90}, 20<<20), 0o755); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f, err := sealCopy(p)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
