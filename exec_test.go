package berth_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"golang.org/x/sys/unix"
)

// execRuntime is a runtime with the busybox image, or a skip saying why
// there is none.
func execRuntime(t testing.TB) *berth.Runtime {
	t.Helper()
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	return rt
}

// execContainer runs p in busybox, removed when the test ends.
func execContainer(t testing.TB, rt *berth.Runtime, p *berth.Process, opts ...berth.RunOption) *berth.Container {
	t.Helper()
	c, err := rt.Run(context.Background(), "busybox", p, opts...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	return c
}

// execBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type execBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *execBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *execBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// execOut execs args and returns stdout, failing on stderr output or a
// failed exit.
func execOut(t *testing.T, c *berth.Container, p *berth.Process, opts ...berth.ExecOption) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	p.Stdout, p.Stderr = &stdout, &stderr
	e, err := c.Exec(context.Background(), p, opts...)
	if err != nil {
		t.Fatalf("Exec %q: %v", p.Args, err)
	}
	if err := e.Wait(context.Background()); err != nil {
		t.Fatalf("Exec %q: %v; stderr: %s", p.Args, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("Exec %q: stderr: %s", p.Args, stderr.String())
	}
	return stdout.String()
}

// TestRunResizeTTY: an attached container's terminal takes the size
// ResizeTTY gives it (docker run -t on SIGWINCH); a container without a
// terminal has none to resize.
func TestRunResizeTTY(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	inR, inW := io.Pipe()
	defer inW.Close()
	var out syncBuffer
	c := mustRun(t, rt, "busybox", &berth.Process{Args: []string{"sh", "-c", "read x; stty size"}, TTY: true, Stdin: inR, Stdout: &out})
	if err := c.ResizeTTY(ctx, 40, 100); err != nil {
		t.Fatal(err)
	}
	inW.Write([]byte("go\n"))
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "40 100\r\n") {
		t.Errorf("output %q, want the size 40 100", out.String())
	}
	plain := mustRun(t, rt, "busybox", sh("exec sleep 300"))
	defer plain.Remove(ctx, berth.WithForce())
	if err := plain.ResizeTTY(ctx, 1, 1); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("ResizeTTY without a terminal = %v, want ErrInvalid", err)
	}
}

// TestExecPasswdFIFO: a container that puts a FIFO at /etc/passwd does
// not make Exec (a health check) block: the file is not a regular one and
// reads as missing.
func TestExecPasswdFIFO(t *testing.T) {
	rt := busyboxRuntime(t)
	c := mustRun(t, rt, "busybox", sh("rm /etc/passwd /etc/group && mkfifo /etc/passwd /etc/group && touch /fifo-ready && exec sleep 300"))
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	execEventually(t, "the FIFOs", func() bool {
		return c.CopyFrom(context.Background(), "/fifo-ready", io.Discard) == nil
	})
	// Exec did not heed its context there: its thread blocked in open(2).
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e, err := c.Exec(ctx, &berth.Process{Args: []string{"true"}})
		if err == nil {
			err = e.Wait(ctx)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Exec with FIFOs at /etc/passwd and /etc/group: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exec with FIFOs at /etc/passwd and /etc/group still blocks after 10 s")
	}
}

func execEventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// identityScript prints what must be the same for every process of a
// container: its namespaces, cgroups, capabilities, seccomp and
// no_new_privs state, and rlimits.
const identityScript = `for n in pid net uts ipc cgroup mnt; do echo "ns $n $(readlink /proc/self/ns/$n)"; done
cat /proc/self/cgroup
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status
cat /proc/self/limits
echo END`

// TestExecJoinsContainer compares an exec'd process with the container's
// first process: every namespace, every cgroup, the capability sets,
// seccomp, no_new_privs and rlimits must be the same, as the first
// process printed them itself and as the exec'd process reads them from
// /proc/1.
func TestExecJoinsContainer(t *testing.T) {
	rt := execRuntime(t)
	var pid1Out execBuffer
	c := execContainer(t, rt, &berth.Process{Args: []string{"sh", "-c", identityScript + "\nexec sleep 300"}, Stdout: &pid1Out},
		berth.WithCapDrop("NET_RAW", "CHOWN"), berth.WithRlimits(berth.Rlimit{Name: "nofile", Soft: 1000, Hard: 2000}))
	execEventually(t, "the first process's report", func() bool { return strings.Contains(pid1Out.String(), "END\n") })

	got := execOut(t, c, &berth.Process{Args: []string{"sh", "-c", identityScript}})
	if d := execDiff(pid1Out.String(), got); d != "" {
		t.Errorf("exec'd process differs from the container's first process (-first +exec):\n%s", d)
	}
	if !strings.Contains(got, "CapBnd:\t00000000a80405fa") {
		t.Errorf("exec'd process's capabilities are not the container's (default set minus NET_RAW and CHOWN):\n%s", got)
	}
	if !strings.Contains(got, "Max open files            1000                 2000") {
		t.Errorf("exec'd process's nofile limit is not the container's 1000:2000:\n%s", got)
	}
	if !strings.Contains(got, "Seccomp:\t2") || !strings.Contains(got, "NoNewPrivs:\t1") {
		t.Errorf("exec'd process lacks the container's seccomp filter or no_new_privs:\n%s", got)
	}

	// /proc/1 as the exec'd process sees it: the first process is now sleep.
	fromOne := strings.ReplaceAll(identityScript, "/proc/self/", "/proc/1/")
	if d := execDiff(execOut(t, c, &berth.Process{Args: []string{"sh", "-c", fromOne}}), got); d != "" {
		t.Errorf("/proc/1 differs from the exec'd process's own (-pid1 +exec):\n%s", d)
	}

	// From the host: the namespace links of both processes.
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Exec(context.Background(), &berth.Process{Args: []string{"sleep", "300"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"pid", "net", "uts", "ipc", "cgroup", "mnt"} {
		a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", st.Pid, n))
		b, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", e.Pid(), n))
		host, _ := os.Readlink("/proc/self/ns/" + n)
		if a == "" || a != b || a == host {
			t.Errorf("namespace %s: first process %q, exec'd %q, host %q", n, a, b, host)
		}
	}
	e.Signal(context.Background(), syscall.SIGKILL)
	var ee *berth.ExitError
	if err := e.Wait(context.Background()); !errors.As(err, &ee) || ee.Signal != int(syscall.SIGKILL) || ee.Code != 137 {
		t.Errorf("killed exec: Wait = %v, want exit 137 by SIGKILL", err)
	}
}

// execDiff reports the lines only in want (-) and only in got (+).
func execDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		for ; n > 0; n-- {
			out = append(out, "-"+l)
		}
		for ; n < 0; n++ {
			out = append(out, "+"+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestExecDefaults checks what an exec'd process takes from the container
// and what Process overrides: environment, working directory, user.
func TestExecDefaults(t *testing.T) {
	rt := execRuntime(t)
	c := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}, Env: []string{"A=container", "B=container"}, Dir: "/tmp", User: "user"})
	tests := []struct {
		name string
		p    berth.Process
		want string
	}{
		{"container's", berth.Process{}, "A=container B=container dir=/tmp uid=1000 gid=1000 home=/home/user"},
		{"overridden", berth.Process{Env: []string{"B=exec"}, Dir: "/etc", User: "0"}, "A=container B=exec dir=/etc uid=0 gid=0 home=/root"},
		{"user:group", berth.Process{User: "nobody:staff"}, "A=container B=container dir=/tmp uid=65534 gid=50 home=/nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			p.Args = []string{"sh", "-c", `echo A=$A B=$B dir=$(pwd) uid=$(id -u) gid=$(id -g) home=$HOME`}
			if got := strings.TrimSpace(execOut(t, c, &p)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	var stderr bytes.Buffer
	_, err := c.Exec(context.Background(), &berth.Process{Args: []string{"pwd"}, Dir: "/nonexistent", Stderr: &stderr})
	if err == nil {
		t.Errorf("Exec in a missing directory succeeded")
	}
}

// TestExecSharesFiles writes from an exec'd process and from the
// container's first process, each reading what the other wrote.
func TestExecSharesFiles(t *testing.T) {
	rt := execRuntime(t)
	var out execBuffer
	c := execContainer(t, rt, &berth.Process{Args: []string{"sh", "-c",
		`until grep -q exec /tmp/from-exec 2>/dev/null; do usleep 10000; done; cat /tmp/from-exec; echo pid1 > /tmp/from-pid1; exec sleep 300`}, Stdout: &out})
	execOut(t, c, &berth.Process{Args: []string{"sh", "-c", "echo exec > /tmp/from-exec"}})
	execEventually(t, "the first process to read the exec's file", func() bool { return out.String() == "exec\n" })
	execEventually(t, "the first process's file", func() bool {
		var stdout bytes.Buffer
		e, err := c.Exec(context.Background(), &berth.Process{Args: []string{"cat", "/tmp/from-pid1"}, Stdout: &stdout})
		return err == nil && e.Wait(context.Background()) == nil && stdout.String() == "pid1\n"
	})
	// And the host does not see either file.
	if _, err := os.Stat("/tmp/from-exec"); err == nil {
		t.Errorf("/tmp/from-exec appeared on the host")
	}
}

// TestExecTTY execs with a terminal: it must come from the container's own
// devpts instance, as docker gives it, and follow ResizeTTY.
func TestExecTTY(t *testing.T) {
	rt := execRuntime(t)
	c := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	var out execBuffer
	e, err := c.Exec(context.Background(), &berth.Process{TTY: true, Stdin: inR, Stdout: &out, Args: []string{"sh", "-c",
		`busybox tty; grep ' /dev/pts ' /proc/self/mountinfo; read x; busybox stty size; echo term=$TERM; exit 3`}})
	if err != nil {
		t.Fatal(err)
	}
	execEventually(t, "the tty's name", func() bool { return strings.Contains(out.String(), "devpts") })
	lines := strings.Split(out.String(), "\r\n")
	if !strings.HasPrefix(lines[0], "/dev/pts/") {
		t.Fatalf("tty printed %q, want /dev/pts/N", lines[0])
	}
	// mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..."
	f := strings.Fields(lines[1])
	if len(f) < 5 || f[4] != "/dev/pts" {
		t.Fatalf("mountinfo line %q", lines[1])
	}
	var stdin, ctrPtmx, hostPtmx unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/0", e.Pid()), &stdin); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/root/dev/pts/ptmx", st.Pid), &ctrPtmx); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/dev/pts/ptmx", &hostPtmx); err != nil {
		t.Fatal(err)
	}
	mountDev := f[2]
	if got := fmt.Sprintf("%d:%d", unix.Major(stdin.Dev), unix.Minor(stdin.Dev)); got != mountDev {
		t.Errorf("the exec'd process's stdin is on device %s, the container's /dev/pts is %s", got, mountDev)
	}
	if stdin.Dev != ctrPtmx.Dev || stdin.Dev == hostPtmx.Dev {
		t.Errorf("stdin device %d, container's devpts %d, host's devpts %d: want the container's", stdin.Dev, ctrPtmx.Dev, hostPtmx.Dev)
	}
	if err := e.ResizeTTY(context.Background(), 40, 100); err != nil {
		t.Fatal(err)
	}
	inW.Write([]byte("go\n"))
	var ee *berth.ExitError
	if err := e.Wait(context.Background()); !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("Wait = %v, want exit 3", err)
	}
	if !strings.Contains(out.String(), "40 100\r\n") || !strings.Contains(out.String(), "term=xterm\r\n") {
		t.Errorf("output %q, want the size 40 100 and TERM=xterm", out.String())
	}
	if err := e.ResizeTTY(context.Background(), 1, 1); err == nil {
		t.Errorf("ResizeTTY after the exit succeeded")
	}
	plain, err := c.Exec(context.Background(), &berth.Process{Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.ResizeTTY(context.Background(), 1, 1); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("ResizeTTY without a tty = %v, want ErrInvalid", err)
	}
	plain.Wait(context.Background())
}

func execAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// TestExecDetach: a detached exec returns at once, keeps running, and dies
// with the container.
func TestExecDetach(t *testing.T) {
	rt := execRuntime(t)
	c := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	start := time.Now()
	e, err := c.Exec(context.Background(), &berth.Process{Args: []string{"sh", "-c", "echo lost; exec sleep 1000"}}, berth.WithExecDetach())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("detached Exec took %v", d)
	}
	pid := e.Pid()
	time.Sleep(100 * time.Millisecond)
	if !execAlive(pid) {
		t.Fatalf("detached exec %d is not running after Exec returned", pid)
	}
	if _, err := c.Exec(context.Background(), &berth.Process{Args: []string{"true"}, Stdout: os.Stdout}, berth.WithExecDetach()); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("detached Exec with Stdout = %v, want ErrInvalid", err)
	}
	if err := c.Stop(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	execEventually(t, "the detached exec to die with the container", func() bool { return !execAlive(pid) })
	var ee *berth.ExitError
	if err := e.Wait(context.Background()); !errors.As(err, &ee) || ee.Signal != int(syscall.SIGKILL) {
		t.Errorf("Wait = %v, want killed", err)
	}
}

// TestExecExitCodes: Wait's result, any number of times from any
// goroutine, and docker's 126 and 127 from Exec itself.
func TestExecExitCodes(t *testing.T) {
	rt := execRuntime(t)
	c := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	tests := []struct {
		name      string
		args      []string
		startCode int // from Exec
		code, sig int // from Wait
	}{
		{"success", []string{"true"}, 0, 0, 0},
		{"exit 3", []string{"sh", "-c", "exit 3"}, 0, 3, 0},
		{"signal", []string{"sh", "-c", "kill -TERM $$"}, 0, 143, 15},
		{"not found", []string{"nosuch"}, 127, 0, 0},
		{"missing path", []string{"/no/such"}, 127, 0, 0},
		{"not executable", []string{"/etc/passwd"}, 126, 0, 0},
		{"directory", []string{"/tmp"}, 126, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := c.Exec(context.Background(), &berth.Process{Args: tt.args})
			var ee *berth.ExitError
			if tt.startCode != 0 {
				if !errors.As(err, &ee) || ee.Code != tt.startCode {
					t.Fatalf("Exec = %v, want an *ExitError with code %d", err, tt.startCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = e.Wait(context.Background()) }()
			}
			wg.Wait()
			for _, err := range append(errs, e.Wait(context.Background())) {
				switch {
				case tt.code == 0 && err != nil:
					t.Errorf("Wait = %v, want nil", err)
				case tt.code != 0 && (!errors.As(err, &ee) || ee.Code != tt.code || ee.Signal != tt.sig):
					t.Errorf("Wait = %v, want exit %d signal %d", err, tt.code, tt.sig)
				}
			}
			if err := e.Signal(context.Background(), syscall.SIGTERM); !errors.Is(err, berth.ErrNotRunning) {
				t.Errorf("Signal after the exit = %v, want ErrNotRunning", err)
			}
		})
	}
	if _, err := c.Exec(context.Background(), &berth.Process{}); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Exec with no Args = %v, want ErrInvalid", err)
	}
}

// TestExecWorkdirHostFd: a working directory through an fd the exec stage
// holds must not lead out of the container (CVE-2024-21626).
func TestExecWorkdirHostFd(t *testing.T) {
	rt := execRuntime(t)
	c := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	// A host directory this program holds open without CLOEXEC, the
	// accident the CVE needs.
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "host-secret"), []byte("x"), 0o644)
	fd, err := unix.Open(hostDir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for n := 3; n <= 12; n++ {
		var stdout bytes.Buffer
		dir := fmt.Sprintf("/proc/self/fd/%d", n)
		e, err := c.Exec(context.Background(), &berth.Process{Args: []string{"sh", "-c", "pwd; ls"}, Dir: dir, Stdout: &stdout})
		if err != nil {
			continue
		}
		e.Wait(context.Background())
		if strings.Contains(stdout.String(), "host-secret") || !strings.HasPrefix(stdout.String(), "/") {
			t.Errorf("exec with working directory %s reached %q", dir, stdout.String())
		}
	}
}

// execCounter counts bytes and keeps none.
type execCounter struct{ n atomic.Int64 }

func (w *execCounter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// execStatusKB reads a "VmRSS:"-style field of /proc/self/status in KiB.
func execStatusKB(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestExecStreamsOutput: 2 GiB of output go through in bounded buffers;
// the host program's memory stays flat.
func TestExecStreamsOutput(t *testing.T) {
	rt := execRuntime(t)
	c := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	execOut(t, c, &berth.Process{Args: []string{"true"}}) // first-use costs (sealing) outside the measure
	hwm, rss := execStatusKB(t, "VmHWM"), execStatusKB(t, "VmRSS")
	var w execCounter
	e, err := c.Exec(context.Background(), &berth.Process{Args: []string{"dd", "if=/dev/zero", "bs=1M", "count=2048"}, Stdout: &w})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.n.Load() != 2<<30 {
		t.Errorf("copied %d bytes, want %d", w.n.Load(), 2<<30)
	}
	hwm2, rss2 := execStatusKB(t, "VmHWM"), execStatusKB(t, "VmRSS")
	t.Logf("VmHWM %d → %d KiB, VmRSS %d → %d KiB", hwm, hwm2, rss, rss2)
	if hwm2-hwm > 64<<10 || rss2-rss > 64<<10 {
		t.Errorf("memory grew by VmHWM %d KiB, VmRSS %d KiB; want < 64 MiB", hwm2-hwm, rss2-rss)
	}
}

// TestExecNotRunning: Exec needs a running container.
func TestExecNotRunning(t *testing.T) {
	rt := execRuntime(t)
	c := execContainer(t, rt, &berth.Process{Args: []string{"true"}})
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), &berth.Process{Args: []string{"true"}}); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Exec on an exited container = %v, want ErrNotRunning", err)
	}
	c2 := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	if err := c2.Stop(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Exec(context.Background(), &berth.Process{Args: []string{"true"}}); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Exec on a stopped container = %v, want ErrNotRunning", err)
	}
}

// TestExecRacingPause: a Pause that comes while an Exec is starting waits
// for the start; the Exec neither hangs nor starts a process in a frozen
// container. Before, the Exec that had found the container running went
// on into the cgroups the Pause had frozen meanwhile, and its thread,
// frozen there, kept it from returning until an Unpause.
func TestExecRacingPause(t *testing.T) {
	rt := execRuntime(t)
	ctx := context.Background()
	c := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	paused := make(chan error, 1)
	var once sync.Once
	berth.SetExecStarting(t, func() {
		once.Do(func() {
			go func() { paused <- c.Pause(ctx) }()
			// The Pause's freeze, had it not waited for the Exec, is done
			// well within this.
			select {
			case err := <-paused:
				paused <- err
			case <-time.After(300 * time.Millisecond):
			}
		})
	})
	type result struct {
		e   *berth.Execution
		err error
	}
	execd := make(chan result, 1)
	go func() {
		e, err := c.Exec(ctx, &berth.Process{Args: []string{"true"}})
		execd <- result{e, err}
	}()
	var e *berth.Execution
	select {
	case res := <-execd:
		if res.err != nil {
			t.Fatalf("Exec with a Pause coming: %v", res.err)
		}
		e = res.e
	case <-time.After(10 * time.Second):
		c.Unpause(ctx)
		t.Fatal("Exec did not return while a Pause came: its process was frozen with the container")
	}
	if err := <-paused; err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if _, err := c.Exec(ctx, &berth.Process{Args: []string{"true"}}); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Exec in the paused container = %v, want ErrNotRunning", err)
	}
	if err := c.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(ctx); err != nil { // frozen with the container until now, perhaps
		t.Errorf("the exec'd process: %v", err)
	}
}

// shellLessTar is an image with nothing but a static busybox at /busybox:
// no shell, no applet links, no /etc.
func shellLessTar(t *testing.T) []byte {
	t.Helper()
	bin, err := os.ReadFile(berthtest.BusyboxPath)
	if err != nil {
		t.Skipf("needs %s from Debian's busybox-static package: %v", berthtest.BusyboxPath, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"proc", "sys", "dev", "tmp"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "busybox", Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExecShellLess execs a static binary directly in an image without a
// shell.
func TestExecShellLess(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	if _, err := rt.Import(context.Background(), bytes.NewReader(shellLessTar(t)), "bare"); err != nil {
		t.Fatal(err)
	}
	c, err := rt.Run(context.Background(), "bare", &berth.Process{Args: []string{"/busybox", "sleep", "300"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	got := execOut(t, c, &berth.Process{Args: []string{"/busybox", "cat", "/proc/1/cmdline"}})
	if got != "/busybox\x00sleep\x00300\x00" {
		t.Errorf("exec'd process sees PID 1 as %q, want the container's sleep", got)
	}
	if _, err := c.Exec(context.Background(), &berth.Process{Args: []string{"sh"}}); err == nil {
		t.Errorf("Exec of sh in an image without one succeeded")
	}
}

// helperExecDetached is the test binary acting as another program: it
// starts a detached `sleep 300` named BERTH_TEST_EXEC_NAME in
// BERTH_TEST_EXEC_ROOT (which has busybox), prints "started" and exits.
// With BERTH_TEST_EXEC_ATTACH set it execs `sleep 301` attached into that
// container instead, prints "started" and waits to be killed.
func helperExecDetached() {
	rt, err := berth.New(os.Getenv("BERTH_TEST_EXEC_ROOT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if os.Getenv("BERTH_TEST_EXEC_ATTACH") != "" {
		c, err := rt.Container(context.Background(), os.Getenv("BERTH_TEST_EXEC_NAME"))
		if err == nil {
			_, err = c.Exec(context.Background(), &berth.Process{Args: []string{"sleep", "301"}})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		fmt.Println("started")
		select {}
	}
	_, err = rt.Run(context.Background(), "busybox", &berth.Process{Args: []string{"sleep", "300"}},
		berth.WithDetach(), berth.WithName(os.Getenv("BERTH_TEST_EXEC_NAME")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	fmt.Println("started")
	rt.Close()
	os.Exit(0)
}

// TestExecOtherProgram execs into a detached container another program
// started and left: only the record on disk connects them.
func TestExecOtherProgram(t *testing.T) {
	rt := execRuntime(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BERTH_TEST_EXEC_ROOT="+rt.Root(), "BERTH_TEST_EXEC_NAME=other")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != "started\n" {
		t.Fatalf("helper program: %q, %v; stderr: %s", out, err, stderr.String())
	}
	c, err := rt.Container(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	e, err := c.Exec(context.Background(), &berth.Process{Args: []string{"sh", "-c", "readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid; cat /proc/1/cmdline"}, Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", st.Pid))
	pid, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", st.Pid))
	if want := mnt + "\n" + pid + "\nsleep\x00300\x00"; stdout.String() != want {
		t.Errorf("exec printed %q, want %q", stdout.String(), want)
	}
}

// TestExecDiesWithProgram: an attached exec into a container that
// outlives the program (detached) dies with the program, even a program
// SIGKILLed the moment Exec returned.
func TestExecDiesWithProgram(t *testing.T) {
	rt := execRuntime(t)
	ctx := context.Background()
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithDetach(), berth.WithName("host"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	execs := func() int {
		procs, err := c.Top(ctx)
		if err != nil {
			t.Fatalf("Top: %v", err)
		}
		n := 0
		for _, p := range procs {
			if p.Cmd == "sleep 301" {
				n++
			}
		}
		return n
	}
	for round := range 3 {
		cmd := startHelperProgram(t, "BERTH_TEST_EXEC_ROOT="+rt.Root(), "BERTH_TEST_EXEC_NAME=host", "BERTH_TEST_EXEC_ATTACH=1")
		if n := execs(); n != 1 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: %d exec'd processes running, want 1", round, n)
		}
		cmd.Process.Kill()
		cmd.Wait()
		eventually(5*time.Second, func() bool { return execs() == 0 })
		if n := execs(); n != 0 {
			t.Fatalf("round %d: %d exec'd processes outlived the program that started them", round, n)
		}
	}
	if st, err := c.State(ctx); err != nil || !st.Running {
		t.Errorf("the container did not outlive the exec'd processes: %+v, %v", st, err)
	}
}

// BenchmarkExec execs `true` into a running `sleep 300` container and
// waits for it. Target: ≤ 5 ms median (docker exec ~100 ms).
func BenchmarkExec(b *testing.B) {
	rt := execRuntime(b)
	c := execContainer(b, rt, &berth.Process{Args: []string{"sleep", "300"}})
	ctx := context.Background()
	run := func() {
		e, err := c.Exec(ctx, &berth.Process{Args: []string{"true"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	benchLoop(b, run) // its first, untimed run seals the binary and compiles the seccomp filter
}

// TestExecSparesOtherContainers: the threads Exec borrows to join a
// container's namespaces go back to the program; were they left to die
// with their goroutines, attached containers started from them earlier
// would get their parent-death signal.
func TestExecSparesOtherContainers(t *testing.T) {
	rt := execRuntime(t)
	a := execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}})
	var others []*berth.Container
	for i := 0; i < 4; i++ {
		others = append(others, execContainer(t, rt, &berth.Process{Args: []string{"sleep", "300"}}))
		for j := 0; j < 5; j++ {
			execOut(t, a, &berth.Process{Args: []string{"true"}})
		}
	}
	time.Sleep(50 * time.Millisecond)
	for _, c := range append(others, a) {
		if st, err := c.State(context.Background()); err != nil || !st.Running {
			t.Errorf("container %s: %+v, %v; want it still running", c.Name, st, err)
		}
	}
	host, _ := os.Readlink("/proc/self/ns/net")
	if ctr := execOut(t, a, &berth.Process{Args: []string{"readlink", "/proc/self/ns/net"}}); strings.TrimSpace(ctr) == host {
		t.Errorf("this program's /proc/self/ns/net is the container's %s", host)
	}
}
