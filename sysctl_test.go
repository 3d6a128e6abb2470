package berth_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
)

// TestSysctls: WithSysctls sets parameters of the container's network and
// IPC namespaces, which the container reads back while the host's values
// stay; a container sharing another's network namespace changes that
// one's. Parameters outside the container's namespaces, names that are
// not plain dotted names, and net.* with the host's network are refused
// before anything is made; a parameter the kernel lacks fails the start
// naming it.
func TestSysctls(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	files := []string{"/proc/sys/net/ipv4/ip_default_ttl", "/proc/sys/kernel/shmmax", "/proc/sys/fs/mqueue/msg_max"}
	host := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		host[f] = strings.TrimSpace(string(b))
	}
	// Should a write reach the host, it does not stay.
	t.Cleanup(func() {
		for f, v := range host {
			if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) != v {
				os.WriteFile(f, []byte(v), 0)
			}
		}
	})
	// Values unlike the host's.
	ttl, shmmax, msgMax := "99", "123456789", "17"
	if host[files[0]] == ttl || host[files[1]] == shmmax || host[files[2]] == msgMax {
		t.Fatalf("the host already has a value this test sets: %v", host)
	}
	out := containerOut(t, rt, "cat "+strings.Join(files, " "), berth.WithSysctls(map[string]string{
		"net.ipv4.ip_default_ttl": ttl, "kernel.shmmax": shmmax, "fs.mqueue.msg_max": msgMax,
	}))
	if want := ttl + "\n" + shmmax + "\n" + msgMax + "\n"; out != want {
		t.Errorf("inside: %q, want %q", out, want)
	}
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) != host[f] {
			t.Errorf("the host's %s changed from %s to %s", f, host[f], b)
		}
	}

	t.Run("shared network namespace", func(t *testing.T) {
		srv, err := rt.Run(ctx, "busybox", sh("sleep 60"), berth.WithDetach(), berth.WithNetworkMode("none"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Remove(ctx, berth.WithForce()) })
		containerOut(t, rt, "true", berth.WithNetworkMode("container:"+srv.Name),
			berth.WithSysctls(map[string]string{"net.ipv4.ip_default_ttl": "42"}))
		if got := execOut(t, srv, sh("cat /proc/sys/net/ipv4/ip_default_ttl")); got != "42\n" {
			t.Errorf("the container whose namespace was shared reads %q, want 42", got)
		}
	})

	// A container sharing the network of one on the host's network
	// reaches the host's namespace: docker (runc) refuses net.* there.
	t.Run("shared with the host's network", func(t *testing.T) {
		hostNet, err := rt.Run(ctx, "busybox", sh("sleep 60"), berth.WithDetach(), berth.WithNetworkMode("host"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hostNet.Remove(ctx, berth.WithForce()) })
		_, _, err = runOut(t, rt, "busybox", sh("true"), berth.WithAutoRemove(), berth.WithNetworkMode("container:"+hostNet.Name),
			berth.WithSysctls(map[string]string{"net.ipv4.ip_default_ttl": "43"}))
		if err == nil || !strings.Contains(err.Error(), "host's network namespace") {
			t.Errorf("got %v, want a refusal naming the host's network namespace", err)
		}
		if b, _ := os.ReadFile(files[0]); strings.TrimSpace(string(b)) != host[files[0]] {
			t.Errorf("the host's %s is now %s", files[0], b)
		}
	})

	t.Run("refused", func(t *testing.T) {
		before, err := rt.Containers(ctx, berth.WithAll())
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			sysctls map[string]string
			opts    []berth.RunOption
			want    string
		}{
			{map[string]string{"kernel.core_pattern": "|/tmp/x"}, nil, `sysctl "kernel.core_pattern" is not allowed`},
			{map[string]string{"vm.overcommit_memory": "1"}, nil, `sysctl "vm.overcommit_memory" is not allowed`},
			{map[string]string{"net/../kernel/core_pattern": "x"}, nil, "not a kernel parameter name"},
			{map[string]string{"net..ipv4": "x"}, nil, "not a kernel parameter name"},
			{map[string]string{"net.ipv4.ip_default_ttl": "9"}, []berth.RunOption{berth.WithNetworkMode("host")}, "not allowed with network mode host"},
		} {
			_, err := rt.Run(ctx, "busybox", sh("true"), append(tc.opts, berth.WithSysctls(tc.sysctls))...)
			if !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: %v, want ErrInvalid saying %q", tc.sysctls, err, tc.want)
			}
		}
		after, err := rt.Containers(ctx, berth.WithAll())
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("refused runs left containers: %d before, %d after", len(before), len(after))
		}
	})

	t.Run("unknown to the kernel", func(t *testing.T) {
		_, _, err := runOut(t, rt, "busybox", sh("true"), berth.WithAutoRemove(),
			berth.WithSysctls(map[string]string{"net.ipv4.no_such_parameter": "1"}))
		if err == nil || !strings.Contains(err.Error(), "net.ipv4.no_such_parameter") {
			t.Errorf("got %v, want an error naming net.ipv4.no_such_parameter", err)
		}
	})
}
