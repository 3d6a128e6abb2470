package berth_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// runOut runs args in img attached and returns stdout, stderr and Wait's
// error.
func runOut(t *testing.T, rt *berth.Runtime, img string, p *berth.Process, opts ...berth.RunOption) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	p.Stdout, p.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := rt.Run(ctx, img, p, opts...)
	if err != nil {
		return "", "", err
	}
	err = c.Wait(ctx)
	return out.String(), errb.String(), err
}

func TestRunBasics(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	out, _, err := runOut(t, rt, "busybox", &berth.Process{Args: []string{"echo", "hello"}}, berth.WithAutoRemove())
	if err != nil || out != "hello\n" {
		t.Fatalf("echo hello: %q, %v", out, err)
	}
	_, _, err = runOut(t, rt, "busybox", &berth.Process{Args: []string{"sh", "-c", "exit 3"}})
	var ee *berth.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("exit 3: %v", err)
	}
	_, _, err = runOut(t, rt, "busybox", &berth.Process{Args: []string{"nosuchcommand"}})
	if !errors.As(err, &ee) || ee.Code != 127 {
		t.Errorf("missing command: %v, want exit 127", err)
	}
	out, _, err = runOut(t, rt, "busybox", &berth.Process{Args: []string{"sh", "-c", "echo $$; hostname; id -u; grep -E 'CapBnd|Seccomp:|NoNewPrivs' /proc/self/status"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1\n", "CapBnd:\t00000000a80425fb", "Seccomp:\t2", "NoNewPrivs:\t1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}

// TestShmSize: /dev/shm is docker's 64 MiB unless WithShmSize sets its
// size (docker run --shm-size); a negative size is refused.
func TestShmSize(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	shm := func(opts ...berth.RunOption) string {
		t.Helper()
		out, _, err := runOut(t, rt, "busybox", sh("grep ' /dev/shm ' /proc/mounts"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := shm(); !strings.Contains(got, "size=65536k") {
		t.Errorf("default /dev/shm: %q, want size=65536k", got)
	}
	if got := shm(berth.WithShmSize(200 << 20)); !strings.Contains(got, "size=204800k") || !strings.Contains(got, "nosuid,nodev,noexec") {
		t.Errorf("/dev/shm with WithShmSize(200 MiB): %q, want size=204800k, nosuid, nodev, noexec", got)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithShmSize(-1)); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("WithShmSize(-1): %v, want ErrInvalid", err)
	}
}

// TestCpusetCpus: WithResources' CpusetCpus pins the container to those
// CPUs (docker run --cpuset-cpus), Update moves it, and CPUs the host
// lacks or a malformed list are refused.
func TestCpusetCpus(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if self, _ := os.ReadFile("/proc/self/cgroup"); !regexp.MustCompile(`(?m)^\d+:([^:]*,)?cpuset(,[^:]*)?:`).Match(self) {
		t.Skip("no cgroup v1 cpuset hierarchy: CpusetCpus is refused on cgroup v2")
	}
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Fatal(err)
	}
	cpus := regexp.MustCompile(`\d+`).FindAllString(string(online), -1)
	first, last := cpus[0], cpus[len(cpus)-1]
	if first == last {
		t.Skip("one CPU: nothing to pin to and move from")
	}
	allowed := func(c *berth.Container) string {
		t.Helper()
		out := execOut(t, c, sh("grep Cpus_allowed_list /proc/1/status"))
		return strings.TrimSpace(strings.TrimPrefix(out, "Cpus_allowed_list:"))
	}
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach(), berth.WithResources(berth.Resources{CpusetCpus: last}))
	defer c.Remove(ctx, berth.WithForce())
	if got := allowed(c); got != last {
		t.Errorf("Cpus_allowed_list = %q, want %s", got, last)
	}
	err = c.Update(ctx, func(u *berth.ContainerUpdate) error {
		u.Resources.CpusetCpus = first
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := allowed(c); got != first {
		t.Errorf("Cpus_allowed_list after Update = %q, want %s", got, first)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithResources(berth.Resources{CpusetCpus: "0-4095"})); !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), "Requested CPUs are not available") {
		t.Errorf("CPUs the host lacks: %v, want ErrInvalid with docker's message", err)
	}
	err = c.Update(ctx, func(u *berth.ContainerUpdate) error {
		u.Resources.CpusetCpus = "4095"
		return nil
	})
	if !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Update to CPUs the host lacks: %v, want ErrInvalid", err)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithResources(berth.Resources{CpusetCpus: "one"})); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("a malformed CPU list: %v, want ErrInvalid", err)
	}
}
