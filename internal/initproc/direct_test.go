package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/caps"
	"golang.org/x/sys/unix"
)

// needDirect skips tests of the direct start where it cannot run: it needs
// what needRoot needs, plus the amd64 exec helper and procfs's pidns=
// option.
func needDirect(t *testing.T) {
	t.Helper()
	needRoot(t)
	needHelper(t)
	if !procPidnsOption() {
		t.Skip("skipping: the kernel's procfs lacks the pidns= mount option (Linux 6.18), which the direct start mounts the container's /proc with")
	}
}

// needHelper returns the sealed exec helper's fd, skipping the test where
// there is no helper for the architecture. On amd64 there is one, so a
// helper that cannot be made fails the test: it would silently send every
// container to the child stage.
func needHelper(t *testing.T) int {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("skipping: the direct start's exec helper exists for amd64 only, not %s", runtime.GOARCH)
	}
	fd := helperFD()
	if fd < 0 {
		t.Fatal("the exec helper could not be written to a sealed memfd")
	}
	return fd
}

// newDirectSpec is newSpec for a direct start, which needs no_new_privs.
func newDirectSpec(t *testing.T, lower string, args ...string) *Spec {
	t.Helper()
	spec := newSpec(t, lower, args...)
	spec.NoNewPrivileges = true
	if !DirectSupported(spec) {
		t.Fatal("DirectSupported is false for a spec with no_new_privs and no rlimits")
	}
	return spec
}

// directProc is a container started with PrepareDirect and Start: its
// stdin is a pipe the test writes, its stdout and stderr pipes it reads.
type directProc struct {
	p      *Process
	pid    int           // what afterFork was given
	stdin  *os.File      // write end
	outR   *os.File      // read end of stdout
	stdout *bufio.Reader // over outR
	stderr chan string   // all of stderr, once it reaches EOF
	timer  *time.Timer

	waited bool
	out    directResult
}

type directResult struct {
	stdout, stderr string
	code           int // exit code, -1 when killed by a signal or never started
}

func mustPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// startPrepared starts d (cgroupFD -1). It returns a non-nil directProc
// whenever a process exists, also with an error (the exec helper could not
// run the program): the caller must then wait for it.
func startPrepared(t *testing.T, d *Direct) (*directProc, error) {
	t.Helper()
	return startPlaced(t, d, nil)
}

// startPlaced is startPrepared with a Placement for the thread.
func startPlaced(t *testing.T, d *Direct, place Placement) (*directProc, error) {
	t.Helper()
	inR, inW := mustPipe(t)
	outR, outW := mustPipe(t)
	errR, errW := mustPipe(t)
	dp := &directProc{pid: -1, stdin: inW, outR: outR, stdout: bufio.NewReader(outR), stderr: make(chan string, 1)}
	p, err := d.Start([3]*os.File{inR, outW, errW}, -1, place, func(pid int) error { dp.pid = pid; return nil })
	// The container has its own copies; ours would keep the pipes from
	// reporting EOF.
	inR.Close()
	outW.Close()
	errW.Close()
	go func() {
		b, _ := io.ReadAll(errR)
		errR.Close()
		dp.stderr <- string(b)
	}()
	if p == nil {
		if err == nil {
			t.Fatal("Start returned neither a process nor an error")
		}
		inW.Close()
		outR.Close()
		<-dp.stderr
		return nil, err
	}
	dp.p = p
	// A container that hangs fails its test rather than the whole run:
	// killing its PID 1 ends its pid namespace.
	dp.timer = time.AfterFunc(5*time.Second, func() { p.Cmd.Process.Kill() })
	t.Cleanup(func() {
		if !dp.waited {
			p.Cmd.Process.Kill()
			dp.wait()
		}
	})
	return dp, err
}

// wait closes the container's stdin, reads its output to EOF and waits for
// it.
func (dp *directProc) wait() directResult {
	if dp.waited {
		return dp.out
	}
	dp.waited = true
	dp.stdin.Close()
	b, _ := io.ReadAll(dp.stdout)
	dp.outR.Close()
	dp.out = directResult{stdout: string(b), stderr: <-dp.stderr}
	dp.p.Wait()
	dp.timer.Stop()
	dp.out.code = dp.p.Cmd.ProcessState.ExitCode()
	return dp.out
}

// runDirect runs spec to completion with PrepareDirect and Start and
// returns the first error either gave.
func runDirect(t *testing.T, spec *Spec) (directResult, error) {
	t.Helper()
	d, err := PrepareDirect(spec, nil, nil, nil)
	if err != nil {
		return directResult{code: -1}, err
	}
	dp, err := startPrepared(t, d)
	if dp == nil {
		return directResult{code: -1}, err
	}
	return dp.wait(), err
}

// mustRunDirect runs spec directly and fails unless it started and exited 0.
func mustRunDirect(t *testing.T, spec *Spec) string {
	t.Helper()
	r, err := runDirect(t, spec)
	if err != nil {
		t.Fatalf("direct start of %q: %v (stderr %q)", spec.Args, err, r.stderr)
	}
	if r.code != 0 {
		t.Fatalf("%q exited %d; stdout %q stderr %q", spec.Args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// allowAllFilter is the smallest seccomp filter: allow everything.
func allowAllFilter() []unix.SockFilter {
	return []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
}

// denyUnameFilter fails uname(2) with EPERM and allows the rest.
func denyUnameFilter() []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_UNAME, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
}

func TestDirectSupported(t *testing.T) {
	needDirect(t)
	img := makeImage(t, nil)
	spec := newSpec(t, img, "true")
	if DirectSupported(spec) {
		t.Error("DirectSupported without no_new_privs")
	}
	spec.NoNewPrivileges = true
	if !DirectSupported(spec) {
		t.Error("not DirectSupported with no_new_privs and no rlimits")
	}
	spec.Rlimits = []Rlimit{{Type: unix.RLIMIT_NOFILE, Soft: 512, Hard: 1024}}
	if DirectSupported(spec) {
		t.Error("DirectSupported with rlimits")
	}
}

// TestDirectPID1AndProc: the program is PID 1 of a pid namespace of its
// own, and the /proc it sees is that namespace's, masked.
func TestDirectPID1AndProc(t *testing.T) {
	needDirect(t)
	img := makeImage(t, nil)
	// ash execs the last command of -c in place of itself: reading
	// /proc/1/cmdline comes first, while PID 1 is still the shell.
	script := "cat /proc/1/cmdline; echo --; echo $$; echo --; ls /proc; echo --; wc -c < /proc/keys"
	spec := newDirectSpec(t, img, "sh", "-c", script)
	out := mustRunDirect(t, spec)
	parts := strings.Split(out, "--\n")
	if len(parts) != 4 {
		t.Fatalf("output %q", out)
	}
	if got := strings.Split(strings.TrimSuffix(parts[0], "\x00"), "\x00"); !slices.Equal(got, spec.Args) {
		t.Errorf("/proc/1/cmdline = %q, want %q", got, spec.Args)
	}
	if parts[1] != "1\n" {
		t.Errorf("$$ = %q, want 1", parts[1])
	}
	// Only the shell (1) and ls itself, a few pids on: no host process,
	// the test's own among them, shows in the container's /proc.
	var pids []int
	for _, name := range strings.Fields(parts[2]) {
		if pid, err := strconv.Atoi(name); err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 2 || pids[0] != 1 || pids[1] > 5 {
		t.Errorf("pids in the container's /proc: %v, want 1 and ls's own (the test runs as %d)", pids, os.Getpid())
	}
	if _, err := os.Stat("/proc/keys"); err == nil && strings.TrimSpace(parts[3]) != "0" {
		t.Errorf("/proc/keys is not masked: %q bytes", strings.TrimSpace(parts[3]))
	}
}

// recordingPlacement notes which thread Join and LeaveSelf ran on, and
// what existed then.
type recordingPlacement struct {
	joinErr             error
	kids                *os.File // the starting thread's children file, opened beforehand
	joinTid, leaveTid   int
	joinKids, leaveKids string // the thread's children then
	afterFork           bool   // afterFork had run when LeaveSelf did
	sawAfterFork        *bool
}

func newRecordingPlacement(t *testing.T, d *Direct, sawAfterFork *bool) *recordingPlacement {
	// Opened here: on the thread, /proc is the container's empty
	// directory.
	f, err := os.Open("/proc/self/task/" + strconv.Itoa(d.Tid()) + "/children")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &recordingPlacement{kids: f, sawAfterFork: sawAfterFork}
}

func (p *recordingPlacement) children() string {
	buf := make([]byte, 256)
	n, err := p.kids.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(string(buf[:n]))
}

func (p *recordingPlacement) Join() error {
	p.joinTid = unix.Gettid()
	p.joinKids = p.children()
	return p.joinErr
}

func (p *recordingPlacement) LeaveSelf() {
	p.leaveTid = unix.Gettid()
	p.leaveKids = p.children()
	p.afterFork = *p.sawAfterFork
}

// Start has the thread that forks move itself: Join runs on it before the
// fork, LeaveSelf right after, both before afterFork; a Join that fails
// starts nothing and still lets the thread leave.
func TestDirectPlacementOnThread(t *testing.T) {
	needDirect(t)
	img := makeImage(t, nil)
	d, err := PrepareDirect(newDirectSpec(t, img, "true"), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sawAfterFork bool
	place := newRecordingPlacement(t, d, &sawAfterFork)
	inR, inW := mustPipe(t)
	defer inW.Close()
	p, err := d.Start([3]*os.File{inR, os.Stdout, os.Stderr}, -1, place, func(pid int) error { sawAfterFork = true; return nil })
	inR.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if place.joinTid != d.Tid() || place.leaveTid != d.Tid() {
		t.Errorf("Join ran on thread %d, LeaveSelf on %d, want both on the starting thread %d", place.joinTid, place.leaveTid, d.Tid())
	}
	if place.joinKids != "" {
		t.Errorf("Join ran after the fork: the thread had children %q", place.joinKids)
	}
	if place.leaveKids != strconv.Itoa(p.Cmd.Process.Pid) {
		t.Errorf("LeaveSelf ran with the thread's children %q, want the container's process %d", place.leaveKids, p.Cmd.Process.Pid)
	}
	if place.afterFork {
		t.Error("afterFork ran before the thread left")
	}

	d, err = PrepareDirect(newDirectSpec(t, img, "true"), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sawAfterFork = false
	refused := newRecordingPlacement(t, d, &sawAfterFork)
	refused.joinErr = errors.New("refused")
	dp, err := startPlaced(t, d, refused)
	if dp != nil {
		dp.wait()
		t.Fatal("a process started although Join failed")
	}
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Start with a failing Join: %v, want its error", err)
	}
	if refused.leaveTid != d.Tid() {
		t.Errorf("after a failed Join, LeaveSelf ran on thread %d, want %d", refused.leaveTid, d.Tid())
	}
}

// TestDirectSecurityStatus checks what the exec helper and the locked
// thread leave the program with: no_new_privs, the filter, the spec's
// capabilities as bounding (and, for root, effective and permitted) set,
// and empty inheritable and ambient sets.
func TestDirectSecurityStatus(t *testing.T) {
	needDirect(t)
	img := makeImage(t, nil)
	tests := []struct {
		name        string
		filter      []unix.SockFilter
		caps        []string // nil: caps.Default
		seccomp     string
		unameDenied bool
	}{
		{"allow-all filter", allowAllFilter(), nil, "2", false},
		{"uname denied", denyUnameFilter(), []string{"CAP_CHOWN", "CAP_KILL"}, "2", true},
		{"no filter", nil, nil, "0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := newDirectSpec(t, img, "sh", "-c", "cat /proc/self/status; uname -s; echo uname-rc=$?")
			spec.SeccompFilter = tt.filter
			spec.Capabilities = tt.caps
			names := tt.caps
			if names == nil {
				names = caps.Default()
			}
			set, err := caps.ParseSet(names)
			if err != nil {
				t.Fatal(err)
			}
			r, err := runDirect(t, spec)
			if err != nil || r.code != 0 {
				t.Fatalf("start: %v, exit %d, stderr %q", err, r.code, r.stderr)
			}
			want := map[string]string{
				"NoNewPrivs": "1",
				"Seccomp":    tt.seccomp,
				"CapBnd":     set.String(),
				"CapEff":     set.String(),
				"CapPrm":     set.String(),
				"CapInh":     "0000000000000000",
				"CapAmb":     "0000000000000000",
			}
			for k, v := range want {
				if got := statusField(r.stdout, k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			// busybox uname prints an empty name when uname(2) fails.
			denied := !strings.Contains(r.stdout, "Linux\n")
			allowed := strings.Contains(r.stdout, "Linux\nuname-rc=0")
			if tt.unameDenied && !denied || !tt.unameDenied && !allowed {
				t.Errorf("uname denied = %v, want %v; stdout ends %q, stderr %q", denied, tt.unameDenied, r.stdout[max(0, len(r.stdout)-40):], r.stderr)
			}
		})
	}
}

// TestDirectLeakedFds: fds of the program without O_CLOEXEC reach neither
// the container's stdio-only fd table nor, as its working directory, the
// host (CVE-2024-21626); and the program keeps them as they were.
func TestDirectLeakedFds(t *testing.T) {
	needDirect(t)
	img := makeImage(t, nil)
	hostDir := t.TempDir()
	secret := filepath.Join(hostDir, "berth-direct-secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Deliberately without O_CLOEXEC: every fork of the program copies them.
	fd, err := syscall.Open(secret, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	dfd, err := syscall.Open(hostDir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(dfd)

	t.Run("fd table", func(t *testing.T) {
		out := mustRunDirect(t, newDirectSpec(t, img, "ls", "-l", "/proc/self/fd"))
		var fds []string
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if !strings.HasPrefix(l, "l") || len(f) == 0 {
				continue // "total 0"
			}
			// "... 0 -> pipe:[N]"; ls's own fd is closed when ls reads
			// its link, and shows with no target.
			if i := slices.Index(f, "->"); i > 0 {
				fds = append(fds, f[i-1])
			} else {
				fds = append(fds, f[len(f)-1])
			}
		}
		sort.Strings(fds)
		if !slices.Equal(fds, []string{"0", "1", "2", "3"}) { // 3 is ls's own listing
			t.Errorf("fds in the container: %v, want only stdio (+ls's own); leaked %d and %d?\n%s", fds, fd, dfd, out)
		}
		if strings.Contains(out, hostDir) {
			t.Errorf("a host fd reached the container:\n%s", out)
		}
	})

	// The thread closes its copy of the fd table, not the program's.
	for _, n := range []int{fd, dfd} {
		flags, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			t.Errorf("the test's fd %d after a direct start: flags %#x, %v; want open without FD_CLOEXEC", n, flags, err)
		}
	}

	var host unix.Stat_t
	if err := unix.Stat(hostDir, &host); err != nil {
		t.Fatal(err)
	}
	// Magic links to the leaked fds and to host cwds, and procfs itself:
	// were any procfs of the host's pid namespace in the container's tree
	// at prepare time, even /proc/self (a plain symlink) would be the test
	// process's directory, with its root and cwd links to the host.
	self := strconv.Itoa(os.Getpid())
	for _, dir := range []string{
		fmt.Sprintf("/proc/self/fd/%d", dfd),
		fmt.Sprintf("/proc/self/fd/%d", fd),
		fmt.Sprintf("/proc/thread-self/fd/%d", dfd),
		"/proc/self/cwd",
		"/proc/1/cwd",
		"/proc/self",
		"/proc",
	} {
		t.Run("Dir "+dir, func(t *testing.T) {
			spec := newDirectSpec(t, img, "sh", "-c", "pwd; stat -c '%d %i' .; ls; cat cmdline 2>/dev/null")
			spec.Dir = dir
			r, err := runDirect(t, spec)
			if err != nil {
				// Refused, as a setup step (not some other failure).
				var se *SetupError
				if !errors.As(err, &se) {
					t.Fatalf("Dir %s: %v, want a *SetupError or a start", dir, err)
				}
				t.Logf("refused: %v", err)
				return
			}
			lines := strings.Split(r.stdout, "\n")
			if len(lines) < 2 || !strings.HasPrefix(lines[0], "/") {
				t.Errorf("Dir %s: cwd %q, want a directory inside the container (stderr %q)", dir, lines[0], r.stderr)
			}
			if len(lines) >= 2 && lines[1] == fmt.Sprintf("%d %d", host.Dev, host.Ino) {
				t.Errorf("Dir %s: the working directory is the host's %s", dir, hostDir)
			}
			if strings.Contains(r.stdout, filepath.Base(secret)) {
				t.Errorf("Dir %s lists the host directory: %q", dir, r.stdout)
			}
			if slices.Contains(strings.Fields(r.stdout), self) || strings.Contains(r.stdout, filepath.Base(os.Args[0])) {
				t.Errorf("Dir %s is in the host's procfs (the test's pid %s or command line shows): %q", dir, self, r.stdout)
			}
		})
	}
}

// taskNamespaces maps each thread of the test process to its namespace of
// type ns (the link /proc/self/task/TID/ns/NS reads).
func taskNamespaces(t *testing.T, ns string) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[int]string{}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/task/" + e.Name() + "/ns/" + ns); err == nil {
			m[tid] = l // a thread that exited meanwhile is skipped
		}
	}
	return m
}

// foreignThreads lists the threads of the test process whose mount
// namespace is not the process's own.
func foreignThreads(t *testing.T, own string) map[int]string {
	t.Helper()
	m := taskNamespaces(t, "mnt")
	for tid, ns := range m {
		if ns == own {
			delete(m, tid)
		}
	}
	return m
}

// awaitNoForeignThreads waits up to two seconds for foreignThreads to be
// empty and returns what is left.
func awaitNoForeignThreads(t *testing.T, own string) map[int]string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		f := foreignThreads(t, own)
		if len(f) == 0 || time.Now().After(deadline) {
			return f
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readlink(t *testing.T, p string) string {
	t.Helper()
	l, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestDirectHostUnchanged: the container's namespaces live on its locked
// thread (and its process) only, the host's mount table never sees its
// mounts, and the thread is gone once the container has been waited for.
func TestDirectHostUnchanged(t *testing.T) {
	needDirect(t)
	img := makeImage(t, nil)
	ownMnt := readlink(t, "/proc/self/ns/mnt")
	// The threads of earlier tests' containers end shortly after their Wait.
	if f := awaitNoForeignThreads(t, ownMnt); len(f) != 0 {
		t.Fatalf("threads in another mount namespace before the test: %v", f)
	}
	threadsBefore := len(taskNamespaces(t, "mnt"))
	mountsBefore, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}

	spec := newDirectSpec(t, img, "sh", "-c", "echo hi > /tmp/f; echo ready; read x; echo got=$x; cat /tmp/f")
	d, err := PrepareDirect(spec, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tid := d.Tid()
	threadNet := readlink(t, fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
	if f := foreignThreads(t, ownMnt); len(f) != 1 || f[tid] == "" {
		t.Errorf("threads in another mount namespace after PrepareDirect: %v, want only Tid %d", f, tid)
	}
	if threadNet == readlink(t, "/proc/self/ns/net") {
		t.Errorf("Tid %d is in the host's network namespace", tid)
	}

	dp, err := startPrepared(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if dp.pid != dp.p.Cmd.Process.Pid {
		t.Errorf("afterFork got pid %d, the process is %d", dp.pid, dp.p.Cmd.Process.Pid)
	}
	if l, err := dp.stdout.ReadString('\n'); l != "ready\n" {
		t.Fatalf("first line %q, %v", l, err)
	}
	// The container is running: its process is PID 1 of its own pid
	// namespace and shares the thread's mount and network namespaces.
	proc := fmt.Sprintf("/proc/%d/", dp.pid)
	st, err := os.ReadFile(proc + "status")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(statusField(string(st), "NSpid")); !slices.Equal(got, []string{strconv.Itoa(dp.pid), "1"}) {
		t.Errorf("NSpid %q, want %d then 1", got, dp.pid)
	}
	f := foreignThreads(t, ownMnt)
	if len(f) != 1 || f[tid] != readlink(t, proc+"ns/mnt") {
		t.Errorf("threads in another mount namespace: %v, want only Tid %d in the container's %s", f, tid, readlink(t, proc+"ns/mnt"))
	}
	if n := readlink(t, proc+"ns/net"); n != threadNet {
		t.Errorf("the container's network namespace %s is not Tid's %s", n, threadNet)
	}
	for _, ns := range []string{"pid", "cgroup", "uts", "ipc"} {
		if readlink(t, proc+"ns/"+ns) == readlink(t, "/proc/self/ns/"+ns) {
			t.Errorf("the container shares the host's %s namespace", ns)
		}
	}

	dp.stdin.WriteString("bye\n")
	r := dp.wait()
	if r.code != 0 || r.stdout != "got=bye\nhi\n" {
		t.Fatalf("exit %d, rest of stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// The thread ends once its goroutine sees the wait: give it a moment
	// (an exiting thread drops its namespaces before it leaves /proc).
	if f := awaitNoForeignThreads(t, ownMnt); len(f) != 0 {
		t.Fatalf("after Wait: threads in another mount namespace: %v (Tid %d)", f, tid)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Tid %d still exists two seconds after Wait: %v", tid, err)
		}
	}
	t.Logf("threads: %d before, %d after", threadsBefore, len(taskNamespaces(t, "mnt")))

	mountsAfter, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if string(mountsAfter) != string(mountsBefore) {
		// Other processes on the host may mount meanwhile: a change fails
		// the test when it is the container's.
		added, removed := lineDiff(string(mountsBefore), string(mountsAfter))
		base := filepath.Dir(spec.Rootfs)
		for _, l := range added {
			if strings.Contains(l, base) || strings.Contains(l, img) || mountPoint(l) == "/" {
				t.Errorf("host mount table gained a container mount: %s", l)
			}
		}
		for _, l := range removed {
			if mountPoint(l) == "/" {
				t.Errorf("host mount table lost its root: %s", l)
			}
		}
		t.Logf("host mount table changed, though not by this container: +%q -%q", added, removed)
	}
	if ents, err := os.ReadDir(spec.Rootfs); err != nil || len(ents) != 0 {
		t.Errorf("the rootfs mountpoint on the host: %v, %v; want an empty directory", ents, err)
	}
	if b, err := os.ReadFile(filepath.Join(spec.Upper, "tmp/f")); err != nil || string(b) != "hi\n" {
		t.Errorf("upper layer tmp/f = %q, %v", b, err)
	}
}

// mountPoint is the mount point field of a mountinfo line.
func mountPoint(line string) string {
	if f := strings.Fields(line); len(f) > 4 {
		return f[4]
	}
	return ""
}

// lineDiff returns the lines only in b and those only in a.
func lineDiff(a, b string) (added, removed []string) {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		if count[l] > 0 {
			count[l]--
		} else if l != "" {
			added = append(added, l)
		}
	}
	for l, n := range count {
		for ; n > 0 && l != ""; n-- {
			removed = append(removed, l)
		}
	}
	return added, removed
}

func TestDirectExitCodes(t *testing.T) {
	needDirect(t)
	img := makeImage(t, func(dir string) {
		// Executable by mode, refused by execve in the exec helper.
		for name, content := range map[string]string{"nointerp": "#!/nonexistent/interp\n", "noformat": "neither ELF nor script\n"} {
			if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte(content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	})
	tests := append(slices.Clone(exitCodeCases),
		exitCodeCase{"missing interpreter", []string{"/bin/nointerp"}, ExitNotFound},
		exitCodeCase{"bad format", []string{"noformat"}, ExitNotExecutable})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := runDirect(t, newDirectSpec(t, img, tt.args...))
			var se *SetupError
			if !errors.As(err, &se) {
				t.Fatalf("error %v, want a *SetupError (exit %d, stderr %q)", err, r.code, r.stderr)
			}
			if se.ExitCode != tt.code || se.Step != "exec" {
				t.Errorf("got %+v (%v), want step exec, exit code %d", se, se, tt.code)
			}
			// -1: refused before the fork; otherwise the helper's status.
			if r.code != -1 && r.code != ExitNotFound {
				t.Errorf("the exec helper exited %d, want 127", r.code)
			}
		})
	}
	// A program that runs and fails keeps its own exit status.
	if r, err := runDirect(t, newDirectSpec(t, img, "sh", "-c", "exit 3")); err != nil || r.code != 3 {
		t.Errorf("exit 3: %v, code %d", err, r.code)
	}
}

// TestDirectUser: numeric ids (Spec.UID and GID, User empty) are the
// program's, with the caller's groups, and leave it no capabilities.
func TestDirectUser(t *testing.T) {
	needDirect(t)
	img := makeImage(t, nil)
	tests := []struct {
		uid, gid uint32
		groups   []uint32
		id       string
	}{
		{1000, 1000, []uint32{5}, "uid=1000(user) gid=1000(user) groups=5(tty)"},
		{65534, 65534, nil, "uid=65534(nobody) gid=65534(nogroup)"},
		{4321, 4321, []uint32{4321}, "uid=4321 gid=4321 groups=4321"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d:%d", tt.uid, tt.gid), func(t *testing.T) {
			spec := newDirectSpec(t, img, "sh", "-c", "id; cat /proc/self/status")
			spec.UID, spec.GID, spec.AdditionalGIDs = tt.uid, tt.gid, tt.groups
			out := mustRunDirect(t, spec)
			if !strings.HasPrefix(out, tt.id) {
				t.Errorf("id: %q, want %q", strings.SplitN(out, "\n", 2)[0], tt.id)
			}
			want := map[string]string{
				"CapEff":     "0000000000000000",
				"CapPrm":     "0000000000000000",
				"CapInh":     "0000000000000000",
				"CapAmb":     "0000000000000000",
				"CapBnd":     "00000000a80425fb",
				"NoNewPrivs": "1",
			}
			for k, v := range want {
				if got := statusField(out, k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for k, id := range map[string]uint32{"Uid": tt.uid, "Gid": tt.gid} {
				s := fmt.Sprint(id)
				if got := strings.Fields(statusField(out, k)); !slices.Equal(got, []string{s, s, s, s}) {
					t.Errorf("%s = %q, want %s four times", k, got, s)
				}
			}
		})
	}
}

// TestWarmNetNS has a network namespace made ahead: it is not the
// program's, its loopback is up, it is handed out once, and the thread
// that made it ends (no thread is left in it; the main thread never was).
func TestWarmNetNS(t *testing.T) {
	needRoot(t)
	if f := takeNetNS(); f != nil {
		f.Close() // another test's
	}
	WarmNetNS()
	var ns *os.File
	for deadline := time.Now().Add(10 * time.Second); ns == nil && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		ns = takeNetNS()
	}
	if ns == nil {
		t.Fatal("no namespace made within 10 s")
	}
	defer ns.Close()
	if again := takeNetNS(); again != nil {
		again.Close()
		t.Fatal("the namespace was handed out twice")
	}
	var made, home unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &made); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/proc/self/ns/net", &home); err != nil {
		t.Fatal(err)
	}
	if made.Ino == home.Ino {
		t.Fatal("the namespace made is the program's")
	}
	// The thread that made it ends: soon every thread of the program is in
	// its namespace again.
	var strays []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		strays = strays[:0]
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			var st unix.Stat_t
			if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) == nil && st.Ino != home.Ino {
				strays = append(strays, task.Name())
			}
		}
		if len(strays) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(strays) > 0 {
		t.Errorf("threads %v are left in another network namespace", strays)
	}
	flags := make(chan uint16, 1)
	go OnOwnThread(func() { // the thread ends with it, never the main one
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			flags <- 0
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Error(err)
			flags <- 0
			return
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("lo")
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			t.Error(err)
		}
		flags <- ifr.Uint16()
	})
	if f := <-flags; f&unix.IFF_UP == 0 {
		t.Errorf("lo flags in the namespace made = %#x, want IFF_UP", f)
	}
}
