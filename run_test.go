package berth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// busyboxRuntime is a fresh runtime holding the busybox test image as
// "busybox". It skips the test when not root.
func busyboxRuntime(t *testing.T) *berth.Runtime {
	t.Helper()
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	return rt
}

// sh is a Process running script with busybox sh.
func sh(script string) *berth.Process {
	return &berth.Process{Args: []string{"sh", "-c", script}}
}

// mustRun runs p attached and fails the test unless Run succeeds.
func mustRun(t *testing.T, rt *berth.Runtime, img string, p *berth.Process, opts ...berth.RunOption) *berth.Container {
	t.Helper()
	c, err := rt.Run(context.Background(), img, p, opts...)
	if err != nil {
		t.Fatalf("Run %q: %v", p.Args, err)
	}
	return c
}

// diffLines reports the lines of want missing from got (-) and the lines
// of got that want lacks (+), in order; "" when they are equal.
func diffLines(want, got string) string {
	if want == got {
		return ""
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "-%s\n", l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+%s\n", l)
		}
	}
	if b.Len() == 0 {
		fmt.Fprintf(&b, "-%q\n+%q\n", want, got)
	}
	return b.String()
}

// configImage pushes the busybox root filesystem with cfg as its image
// config to an in-process registry and pulls it into rt, the only way to
// give an image an ENTRYPOINT, ENV, USER or WORKDIR until Build exists.
func configImage(t *testing.T, rt *berth.Runtime, repo string, cfg v1.Config) string {
	t.Helper()
	reg := startFake(t)
	img := imageOf(t, true, layerOf(t, compression.GZip, berthtest.BusyboxTar(t)))
	img, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.push(t, repo, img)
	if _, err := rt.Pull(context.Background(), ref); err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	return ref
}

// TestRunEntrypointCmd checks docker's rules for what runs: ENTRYPOINT
// then CMD; Process.Args replace CMD; WithEntrypoint replaces ENTRYPOINT
// and drops CMD.
func TestRunEntrypointCmd(t *testing.T) {
	rt := busyboxRuntime(t)
	both := configImage(t, rt, "ep/both:1", v1.Config{Entrypoint: []string{"echo", "ep"}, Cmd: []string{"cmd"}})
	cmdOnly := configImage(t, rt, "ep/cmd:1", v1.Config{Cmd: []string{"echo", "cmd-only"}})
	for _, tc := range []struct {
		name           string
		image          string
		args           []string
		opts           []berth.RunOption
		want           string
		wantEntrypoint []string
		wantCmd        []string
	}{
		{"image entrypoint and cmd", both, nil, nil, "ep cmd\n", []string{"echo", "ep"}, []string{"cmd"}},
		{"args replace cmd", both, []string{"a", "b"}, nil, "ep a b\n", []string{"echo", "ep"}, []string{"a", "b"}},
		{"entrypoint drops cmd", both, nil, []berth.RunOption{berth.WithEntrypoint("echo", "new")}, "new\n", []string{"echo", "new"}, nil},
		{"entrypoint and args", both, []string{"x"}, []berth.RunOption{berth.WithEntrypoint("echo")}, "x\n", []string{"echo"}, []string{"x"}},
		{"cleared entrypoint", both, []string{"echo", "y"}, []berth.RunOption{berth.WithEntrypoint()}, "y\n", nil, []string{"echo", "y"}},
		{"cmd only", cmdOnly, nil, nil, "cmd-only\n", nil, []string{"echo", "cmd-only"}},
		{"args replace cmd only", cmdOnly, []string{"echo", "z"}, nil, "z\n", nil, []string{"echo", "z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c := mustRun(t, rt, tc.image, &berth.Process{Args: tc.args, Stdout: &out, Stderr: &out}, tc.opts...)
			defer c.Remove(context.Background(), berth.WithForce())
			if err := c.Wait(context.Background()); err != nil {
				t.Fatalf("Wait: %v (output %q)", err, out.String())
			}
			if d := diffLines(tc.want, out.String()); d != "" {
				t.Errorf("output (-want +got):\n%s", d)
			}
			info, err := c.Inspect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("entrypoint %q cmd %q", info.Entrypoint, info.Cmd)
			want := fmt.Sprintf("entrypoint %q cmd %q", tc.wantEntrypoint, tc.wantCmd)
			if d := diffLines(want, got); d != "" {
				t.Errorf("Inspect (-want +got):\n%s", d)
			}
		})
	}
	t.Run("nothing to run", func(t *testing.T) {
		_, err := rt.Run(context.Background(), both, nil, berth.WithEntrypoint())
		if !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("Run with no entrypoint, cmd or args: %v, want ErrInvalid", err)
		}
	})
}

// TestRunFollowsTag checks that Run resolves its reference each time: a
// tag moved to another image runs the other image from then on (Run keeps
// parsed images by manifest digest, never by name).
func TestRunFollowsTag(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	var imgs []*berth.Image
	for _, word := range []string{"first", "second"} {
		ref := configImage(t, rt, "moving/"+word+":1", v1.Config{Cmd: []string{"echo", word}})
		img, err := rt.Image(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	for i, want := range []string{"first", "second", "first"} {
		if err := rt.Tag(ctx, imgs[i%2], "moving:latest"); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := runOut(t, rt, "moving:latest", &berth.Process{})
		if err != nil {
			t.Fatalf("run %d: %v (%s)", i, err, errOut)
		}
		if out != want+"\n" {
			t.Errorf("run %d of moving:latest printed %q, want %q", i, out, want+"\n")
		}
	}
}

// envOf returns the values of keys in a container's environment as
// "KEY=value" lines, in the order of keys.
func envOf(t *testing.T, rt *berth.Runtime, image string, p *berth.Process, keys []string, opts ...berth.RunOption) string {
	t.Helper()
	p.Args = []string{"env"}
	out, errOut, err := runOut(t, rt, image, p, opts...)
	if err != nil {
		t.Fatalf("env: %v (%s)", err, errOut)
	}
	env := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	var lines []string
	for _, k := range keys {
		lines = append(lines, k+"="+env[k])
	}
	return strings.Join(lines, "\n")
}

// TestRunEnvironment checks docker's default PATH, HOME from the
// container's passwd and HOSTNAME, and how the image's and the Process's
// variables combine.
func TestRunEnvironment(t *testing.T) {
	rt := busyboxRuntime(t)
	custom := configImage(t, rt, "env/custom:1", v1.Config{
		Env: []string{"PATH=/custom/bin:/bin", "FROM_IMAGE=image", "OVERRIDE=image"},
		Cmd: []string{"sh"},
	})
	keys := []string{"PATH", "HOME", "HOSTNAME", "FROM_IMAGE", "OVERRIDE"}
	defPath := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, tc := range []struct {
		name  string
		image string
		p     berth.Process
		opts  []berth.RunOption
		want  []string
	}{
		{"defaults", "busybox", berth.Process{}, []berth.RunOption{berth.WithHostname("box")},
			[]string{"PATH=" + defPath, "HOME=/root", "HOSTNAME=box", "FROM_IMAGE=", "OVERRIDE="}},
		{"user with passwd entry", "busybox", berth.Process{User: "user"}, []berth.RunOption{berth.WithHostname("box")},
			[]string{"PATH=" + defPath, "HOME=/home/user", "HOSTNAME=box", "FROM_IMAGE=", "OVERRIDE="}},
		{"uid without passwd entry", "busybox", berth.Process{User: "4242"}, []berth.RunOption{berth.WithHostname("box")},
			[]string{"PATH=" + defPath, "HOME=/", "HOSTNAME=box", "FROM_IMAGE=", "OVERRIDE="}},
		{"image env", custom, berth.Process{}, []berth.RunOption{berth.WithHostname("box")},
			[]string{"PATH=/custom/bin:/bin", "HOME=/root", "HOSTNAME=box", "FROM_IMAGE=image", "OVERRIDE=image"}},
		{"process env wins", custom, berth.Process{Env: []string{"OVERRIDE=process", "HOME=/elsewhere", "HOSTNAME=mine"}}, []berth.RunOption{berth.WithHostname("box")},
			[]string{"PATH=/custom/bin:/bin", "HOME=/elsewhere", "HOSTNAME=mine", "FROM_IMAGE=image", "OVERRIDE=process"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := envOf(t, rt, tc.image, &tc.p, keys, append(tc.opts, berth.WithAutoRemove())...)
			if d := diffLines(strings.Join(tc.want, "\n"), got); d != "" {
				t.Errorf("environment (-want +got):\n%s", d)
			}
		})
	}
	t.Run("hostname defaults to the short ID", func(t *testing.T) {
		var out bytes.Buffer
		c := mustRun(t, rt, "busybox", &berth.Process{Args: []string{"sh", "-c", "echo $HOSTNAME; hostname"}, Stdout: &out})
		defer c.Remove(context.Background())
		if err := c.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := c.ID[:12] + "\n" + c.ID[:12] + "\n"
		if d := diffLines(want, out.String()); d != "" {
			t.Errorf("HOSTNAME and hostname (-want +got):\n%s", d)
		}
	})
}

// TestRunUser checks that every form of Process.User resolves against the
// container's own /etc/passwd and /etc/group (the test image has
// user:x:1000:1000 and staff:x:50:user), as docker run -u does.
func TestRunUser(t *testing.T) {
	rt := busyboxRuntime(t)
	imageUser := configImage(t, rt, "user/image:1", v1.Config{User: "user", Cmd: []string{"sh"}})
	// cat is exec'd: the user must be able to reach and run programs.
	const script = `echo "$(id -u) $(id -g) [$(id -G)] $HOME" | cat`
	for _, tc := range []struct {
		name, image, user, want string
	}{
		{"default root", "busybox", "", "0 0 [0] /root"},
		{"name", "busybox", "user", "1000 1000 [1000 50] /home/user"},
		{"uid", "busybox", "1000", "1000 1000 [1000 50] /home/user"},
		{"uid:gid", "busybox", "1000:50", "1000 50 [50] /home/user"},
		// docker run: a group given explicitly is the only one, even the
		// user's own (no /etc/group memberships then).
		{"uid:own gid", "busybox", "1000:1000", "1000 1000 [1000] /home/user"},
		{"name:group", "busybox", "user:staff", "1000 50 [50] /home/user"},
		{"uid:group", "busybox", "1000:staff", "1000 50 [50] /home/user"},
		{"uid without entry", "busybox", "4242", "4242 0 [0] /"},
		{"uid:gid without entries", "busybox", "4242:4343", "4242 4343 [4343] /"},
		{"image USER", imageUser, "", "1000 1000 [1000 50] /home/user"},
		{"process overrides image USER", imageUser, "root", "0 0 [0] /root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sh(script)
			p.User = tc.user
			out, errOut, err := runOut(t, rt, tc.image, p, berth.WithAutoRemove())
			if err != nil {
				t.Fatalf("Run: %v (%s)", err, errOut)
			}
			if d := diffLines(tc.want+"\n", out); d != "" {
				t.Errorf("uid gid [groups] HOME (-want +got):\n%s", d)
			}
		})
	}
	// Past 2^31-1, as runc refuses: 4294967295 is -1 to setresuid ("leave
	// unchanged"), which kept the child stage's process root.
	for _, user := range []string{"4294967295", "2147483648", "0:4294967295"} {
		for _, stage := range []struct {
			name string
			opts []berth.RunOption
		}{{"direct", nil}, {"child stage", []berth.RunOption{berth.WithRlimits(berth.Rlimit{Name: "nofile", Soft: 1024, Hard: 1024})}}} {
			t.Run("out of range "+user+" "+stage.name, func(t *testing.T) {
				p := sh("id -u")
				p.User = user
				out, _, err := runOut(t, rt, "busybox", p, append(stage.opts, berth.WithAutoRemove())...)
				if err == nil || !strings.Contains(err.Error(), "out of range") {
					t.Errorf("Run as %q: %v (printed %q), want an out-of-range error", user, err, out)
				}
			})
		}
	}
	for _, user := range []string{"nosuchuser", "user:nosuchgroup"} {
		t.Run("unknown "+user, func(t *testing.T) {
			p := sh("true")
			p.User = user
			_, _, err := runOut(t, rt, "busybox", p, berth.WithAutoRemove())
			if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(user, "user:")) {
				t.Errorf("Run as %q: %v, want an error naming it", user, err)
			}
		})
	}
}

// TestRunWorkdir checks that the working directory, from the image or the
// Process, is created when missing.
func TestRunWorkdir(t *testing.T) {
	rt := busyboxRuntime(t)
	withDir := configImage(t, rt, "workdir/image:1", v1.Config{WorkingDir: "/srv/app/data", Cmd: []string{"sh"}})
	for _, tc := range []struct {
		name, image, dir, user, want string
	}{
		{"default", "busybox", "", "", "/"},
		{"image WORKDIR created", withDir, "", "", "/srv/app/data"},
		{"process dir created", "busybox", "/a/b/c", "", "/a/b/c"},
		{"process overrides image", withDir, "/tmp", "", "/tmp"},
		{"created for a user", "busybox", "/new/dir", "user", "/new/dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &berth.Process{Args: []string{"pwd"}, Dir: tc.dir, User: tc.user}
			out, errOut, err := runOut(t, rt, tc.image, p, berth.WithAutoRemove())
			if err != nil {
				t.Fatalf("Run: %v (%s)", err, errOut)
			}
			if d := diffLines(tc.want+"\n", out); d != "" {
				t.Errorf("pwd (-want +got):\n%s", d)
			}
		})
	}
	t.Run("relative dir", func(t *testing.T) {
		_, err := rt.Run(context.Background(), "busybox", &berth.Process{Args: []string{"pwd"}, Dir: "rel"})
		if !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("Run with a relative Dir: %v, want ErrInvalid", err)
		}
	})
}

// TestRunExitCodes checks the exit status of a program that runs, and
// docker's 126 and 127 for one that cannot: Run fails with an *ExitError
// and the container records the code.
func TestRunExitCodes(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		args     []string
		startErr bool // Run itself fails: the command could not be run
		kill     bool // SIGKILL it from the host (as PID 1 it cannot kill itself)
		code     int
	}{
		{"success", []string{"true"}, false, false, 0},
		{"exit 3", []string{"sh", "-c", "exit 3"}, false, false, 3},
		{"killed by a signal", []string{"sleep", "300"}, false, true, 137},
		{"missing command", []string{"nosuchcommand"}, true, false, 127},
		{"missing path", []string{"/no/such/file"}, true, false, 127},
		{"not executable", []string{"/etc/passwd"}, true, false, 126},
		{"a directory", []string{"/tmp"}, true, false, 126},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "exit-" + strings.ReplaceAll(tc.name, " ", "-")
			c, err := rt.Run(ctx, "busybox", &berth.Process{Args: tc.args}, berth.WithName(name))
			if !tc.startErr {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if tc.kill {
					if err := c.Signal(ctx, syscall.SIGKILL); err != nil {
						t.Fatalf("Signal: %v", err)
					}
				}
				err = c.Wait(ctx)
			}
			var ee *berth.ExitError
			switch {
			case tc.code == 0 && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tc.code != 0 && (!errors.As(err, &ee) || ee.Code != tc.code):
				t.Fatalf("err = %v, want an *ExitError with code %d", err, tc.code)
			case tc.kill && ee.Signal != 9:
				t.Errorf("ExitError.Signal = %d, want 9", ee.Signal)
			}
			c, err = rt.Container(ctx, name)
			if err != nil {
				t.Fatalf("Container(%q) after the exit: %v", name, err)
			}
			defer c.Remove(ctx)
			st, err := c.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.ExitCode != tc.code || st.Running || st.Status != "exited" {
				t.Errorf("State = %+v, want exited with code %d", st, tc.code)
			}
		})
	}
}

// TestRunUniqueNames checks that a name is taken as long as its container
// exists, and free again once it is removed.
func TestRunUniqueNames(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithName("twin"))
	_, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithName("twin"))
	if !errors.Is(err, berth.ErrExists) {
		t.Errorf("second Run named twin while it runs: %v, want ErrExists", err)
	}
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	_, err = rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithName("twin"))
	if !errors.Is(err, berth.ErrExists) {
		t.Errorf("second Run named twin after it exited: %v, want ErrExists", err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	c2 := mustRun(t, rt, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithName("twin"))
	if err := c2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if c2.ID == c.ID {
		t.Error("the new container has the removed one's ID")
	}
	c2.Remove(ctx)
	for _, bad := range []string{"-lead", "sp ace", "sl/ash"} {
		if _, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithName(bad)); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("name %q: %v, want ErrInvalid", bad, err)
		}
	}
	// A hostname is written into the container's /etc/hosts: a newline
	// would add a line of the caller's choosing.
	for _, bad := range []string{"a\n10.0.0.1 evil", "tab\there", strings.Repeat("h", 65)} {
		if _, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithHostname(bad)); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("hostname %q: %v, want ErrInvalid", bad, err)
		}
	}
}

// TestRunLogs checks docker logs' options on a container's output: all,
// Tail, Timestamps, Since and Follow.
func TestRunLogs(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	start := time.Now()
	// stdout and stderr are copied by two goroutines: the sleeps order
	// the log.
	c := mustRun(t, rt, "busybox", sh("echo a; sleep 0.05; echo b >&2; sleep 0.5; echo c; echo d"))
	defer c.Remove(ctx)

	// Follow from the start: it must see "a" while the container still
	// runs and return after the exit with everything.
	pr, pw := io.Pipe()
	var followErr bytes.Buffer
	followed := make(chan error, 1)
	go func() {
		err := c.Logs(ctx, pw, &followErr, berth.WithFollow())
		pw.CloseWithError(err)
		followed <- err
	}()
	first := make([]byte, 2)
	if _, err := io.ReadFull(pr, first); err != nil || string(first) != "a\n" {
		t.Fatalf("first followed bytes %q, %v", first, err)
	}
	if st, _ := c.State(ctx); !st.Running {
		t.Errorf("container exited before Follow delivered its first line; want streaming")
	}
	rest, _ := io.ReadAll(pr)
	select {
	case err := <-followed:
		if err != nil {
			t.Errorf("Logs(Follow): %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs(Follow) did not return after the container exited")
	}
	if d := diffLines("a\nc\nd\n", string(first)+string(rest)); d != "" {
		t.Errorf("followed stdout (-want +got):\n%s", d)
	}
	if d := diffLines("b\n", followErr.String()); d != "" {
		t.Errorf("followed stderr (-want +got):\n%s", d)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	end := time.Now()

	logs := func(opts ...berth.LogOption) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if err := c.Logs(ctx, &out, &errb, opts...); err != nil {
			t.Fatalf("Logs: %v", err)
		}
		return out.String(), errb.String()
	}
	for _, tc := range []struct {
		name             string
		opts             []berth.LogOption
		wantOut, wantErr string
	}{
		{"all", nil, "a\nc\nd\n", "b\n"},
		{"tail 2", []berth.LogOption{berth.WithTail(2)}, "c\nd\n", ""},
		{"tail 3", []berth.LogOption{berth.WithTail(3)}, "c\nd\n", "b\n"},
		{"tail more than logged", []berth.LogOption{berth.WithTail(100)}, "a\nc\nd\n", "b\n"},
		{"tail 0: none, as docker's", []berth.LogOption{berth.WithTail(0)}, "", ""},
		{"negative tail: all", []berth.LogOption{berth.WithTail(-1)}, "a\nc\nd\n", "b\n"},
		{"since the start", []berth.LogOption{berth.WithSince(start)}, "a\nc\nd\n", "b\n"},
		{"since the end", []berth.LogOption{berth.WithSince(end)}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut := logs(tc.opts...)
			if d := diffLines(tc.wantOut, out); d != "" {
				t.Errorf("stdout (-want +got):\n%s", d)
			}
			if d := diffLines(tc.wantErr, errOut); d != "" {
				t.Errorf("stderr (-want +got):\n%s", d)
			}
		})
	}
	t.Run("timestamps and since", func(t *testing.T) {
		out, errOut := logs(berth.WithTimestamps())
		stamps := map[string]time.Time{}
		for _, l := range strings.Split(strings.TrimSpace(out+errOut), "\n") {
			ts, text, ok := strings.Cut(l, " ")
			tm, err := time.Parse(time.RFC3339Nano, ts)
			if !ok || err != nil {
				t.Fatalf("line %q does not start with an RFC 3339 timestamp: %v", l, err)
			}
			if len(ts) != len("2006-01-02T15:04:05.000000000Z") {
				t.Errorf("line %q: the timestamp has not nine digits of fraction, as docker's", l)
			}
			if tm.Before(start.Add(-time.Second)) || tm.After(end.Add(time.Second)) {
				t.Errorf("line %q: timestamp outside the container's life [%v, %v]", l, start, end)
			}
			stamps[text] = tm
		}
		if len(stamps) != 4 {
			t.Fatalf("timestamped lines %q %q, want a, b, c and d", out, errOut)
		}
		// The shell slept half a second between b and c.
		mid := stamps["b"].Add(stamps["c"].Sub(stamps["b"]) / 2)
		gotOut, gotErr := logs(berth.WithSince(mid))
		if d := diffLines("c\nd\n", gotOut); d != "" || gotErr != "" {
			t.Errorf("since between b and c: stdout (-want +got):\n%s stderr %q", d, gotErr)
		}
		gotOut, _ = logs(berth.WithSince(mid), berth.WithTimestamps(), berth.WithTail(1))
		if !strings.HasSuffix(gotOut, " d\n") || strings.Count(gotOut, "\n") != 1 {
			t.Errorf("since+timestamps+tail 1 = %q, want one timestamped d", gotOut)
		}
	})
}

// TestWaitLog: WaitLog returns once a line of stdout or stderr holds the
// text, counts lines logged before the call, and fails with ErrNotRunning
// when the container exits without it, or with ctx's error.
func TestWaitLog(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("echo starting; sleep 0.3; echo 'db: ready to accept connections' >&2; exec sleep 300"), berth.WithDetach())
	t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitLog(wctx, "ready to accept"); err != nil {
		t.Fatalf("WaitLog: %v", err)
	}
	var logged bytes.Buffer
	if err := c.Logs(ctx, &logged, &logged); err != nil || !strings.Contains(logged.String(), "ready to accept") {
		t.Errorf("WaitLog returned with the log %q (%v), before the line was logged", logged.String(), err)
	}
	if err := c.WaitLog(wctx, "starting"); err != nil {
		t.Errorf("WaitLog for a line logged before the call: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if err := c.WaitLog(short, "never said"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitLog for a line never logged: %v, want the context's deadline", err)
	}
	gone := mustRun(t, rt, "busybox", sh("echo bye"))
	if err := gone.WaitLog(wctx, "hello"); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("WaitLog on a container that exited without the line: %v, want ErrNotRunning", err)
	}
	if err := gone.WaitLog(wctx, "bye"); err != nil {
		t.Errorf("WaitLog for the last line of an exited container: %v", err)
	}
}

// TestRunWaitConcurrent checks that Wait returns the same result from
// many goroutines, before and after the exit, through the owning handle,
// a handle found by name, and another Runtime on the same root.
func TestRunWaitConcurrent(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("sleep 0.3; exit 7"), berth.WithName("waited"))
	defer c.Remove(ctx)
	byName, err := rt.Container(ctx, "waited")
	if err != nil {
		t.Fatal(err)
	}
	other, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	fromOther, err := other.Container(ctx, "waited")
	if err != nil {
		t.Fatal(err)
	}
	handles := []*berth.Container{c, byName, fromOther}
	results := make(chan string, 64)
	wait := func(h *berth.Container) {
		err := h.Wait(ctx)
		var ee *berth.ExitError
		if errors.As(err, &ee) {
			results <- fmt.Sprintf("code %d signal %d oom %v", ee.Code, ee.Signal, ee.OOMKilled)
			return
		}
		results <- fmt.Sprintf("error %v", err)
	}
	var wg sync.WaitGroup
	n := 0
	for i := 0; i < 8; i++ {
		for _, h := range handles {
			n++
			wg.Add(1)
			go func() { defer wg.Done(); wait(h) }()
		}
	}
	wg.Wait()
	for i := 0; i < 4; i++ {
		for _, h := range handles {
			n++
			wg.Add(1)
			go func() { defer wg.Done(); wait(h) }()
		}
	}
	wg.Wait()
	close(results)
	const want = "code 7 signal 0 oom false"
	got := 0
	for r := range results {
		got++
		if r != want {
			t.Errorf("Wait = %s, want %s", r, want)
		}
	}
	if got != n {
		t.Errorf("%d of %d Waits returned", got, n)
	}
}

// TestRunNoECHILD runs unrelated child processes of the host program while
// containers start and exit: berth must never reap a child it did not
// start (exec.Cmd.Wait would then fail with ECHILD).
func TestRunNoECHILD(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 8)
	var containers, hosts sync.WaitGroup
	started := 0
	var mu sync.Mutex
	for w := 0; w < 2; w++ {
		containers.Add(1)
		go func() {
			defer containers.Done()
			for ctx.Err() == nil {
				c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithAutoRemove())
				if err == nil {
					err = c.Wait(ctx)
				}
				if err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("container: %w", err)
					}
					return
				}
				mu.Lock()
				started++
				mu.Unlock()
			}
		}()
	}
	for w := 0; w < 2; w++ {
		hosts.Add(1)
		go func() {
			defer hosts.Done()
			for i := 0; i < 150 && ctx.Err() == nil; i++ {
				if err := exec.Command("/bin/true").Run(); err != nil {
					errs <- fmt.Errorf("host /bin/true, run %d: %w", i, err)
					return
				}
			}
		}()
	}
	hosts.Wait()
	cancel()
	containers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if started == 0 {
		t.Error("no container ran alongside the host processes")
	}
	t.Logf("%d containers ran alongside 300 host processes", started)
}
