package berth_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/internal/initproc"
)

// TestInit: with WithInit the command runs as a child of berth's init,
// PID 1 of the container, which exits as the command does, passes Stop's
// SIGTERM to a shell that PID 1 would have ignored, and reaps orphans that
// a command which never waits leaves as zombies without it. Both ways of
// starting (directly, and through the child stage with rlimits).
func TestInit(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("skipping: the init exists for amd64 only (GOARCH %s)", runtime.GOARCH)
	}
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []berth.RunOption
	}{
		{"direct", []berth.RunOption{berth.WithInit()}},
		{"child stage", []berth.RunOption{berth.WithInit(), berth.WithRlimits(berth.Rlimit{Name: "nofile", Soft: 1000, Hard: 1000})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "direct" && !initproc.DirectAvailable() {
				t.Skip("skipping: containers do not start directly here: this would test the child stage")
			}
			out, _, err := runOut(t, rt, "busybox", sh(`echo $$; tr '\0' ' ' < /proc/1/cmdline; echo; exit 7`), append(tc.opts, berth.WithAutoRemove())...)
			var ee *berth.ExitError
			if !errors.As(err, &ee) || ee.Code != 7 {
				t.Errorf("exit: %v, want code 7", err)
			}
			lines := strings.Split(out, "\n")
			if len(lines) < 2 || lines[0] == "1" || !strings.HasPrefix(lines[1], "/dev/.berth-init /bin/sh sh -c ") {
				t.Errorf("the command's pid and PID 1's command line: %q; want the init as PID 1, the command its child", out)
			}
			_, _, err = runOut(t, rt, "busybox", sh("kill -9 $$"), append(tc.opts, berth.WithAutoRemove())...)
			if !errors.As(err, &ee) || ee.Code != 137 {
				t.Errorf("a command killed by SIGKILL: %v, want code 137", err)
			}

			// A shell as PID 1 ignores SIGTERM; its child does not.
			c, err := rt.Run(ctx, "busybox", sh("sleep 300; :"), append(tc.opts, berth.WithDetach())...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
			start := time.Now()
			if err := c.Stop(ctx, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Stop took %v: the SIGTERM did not reach the shell", d)
			}
			if st, _ := c.State(ctx); st.ExitCode != 143 {
				t.Errorf("exit code after Stop %d, want 143 (SIGTERM)", st.ExitCode)
			}
			// A signal sent as soon as Run returns waits for the init
			// (which starts with every signal blocked): a PID 1 without
			// a handler would drop it.
			for range 5 {
				c, err := rt.Run(ctx, "busybox", sh("sleep 300; :"), append(tc.opts, berth.WithDetach())...)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Remove(ctx, berth.WithForce())
				if err := c.Signal(ctx, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err = c.Wait(wctx)
				cancel()
				if !errors.As(err, &ee) || ee.Code != 143 {
					t.Fatalf("SIGTERM right after Run: %v, want exit code 143", err)
				}
			}
		})
	}

	// The command execs a sleep, which never waits: an orphan's zombie
	// stays under it as PID 1, and the init reaps it.
	zombies := func(t *testing.T, want string, opts ...berth.RunOption) string {
		t.Helper()
		c, err := rt.Run(ctx, "busybox", sh(`sh -c "sleep 0.1 &"; exec sleep 30`), append(opts, berth.WithDetach())...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Remove(ctx, berth.WithForce())
		// The orphan ends 0.1 s in: from 0.3 s, what the zombie count
		// settles at, read until it is what is wanted or 3 s passed.
		time.Sleep(300 * time.Millisecond)
		var got string
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if got = strings.TrimSpace(execOut(t, c, sh("ps -o stat,comm | grep -c '^Z' || true"))); got == want {
				break
			}
		}
		return got
	}
	if got := zombies(t, "1"); got != "1" {
		t.Errorf("without the init: %s zombies, want 1 (else this test shows nothing)", got)
	}
	if got := zombies(t, "0", berth.WithInit()); got != "0" {
		t.Errorf("with the init: %s zombies, want 0", got)
	}

	// A mount at /dev would hide the init.
	for _, target := range []string{"/dev", "/dev/.berth-init"} {
		_, err := rt.Run(ctx, "busybox", sh("true"), berth.WithInit(), berth.WithMounts(berth.Mount{Type: berth.MountTmpfs, Target: target}))
		if !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), "would hide the init") {
			t.Errorf("WithInit with a tmpfs at %s: %v, want ErrInvalid", target, err)
		}
	}

	c, err := rt.Create(ctx, "busybox", sh("true"), berth.WithInit())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, berth.WithForce())
	if info, err := c.Inspect(ctx); err != nil || !info.Init {
		t.Errorf("Inspect: Init %v (%v), want true", info != nil && info.Init, err)
	}
}
