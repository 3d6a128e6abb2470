package berth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/internal/caps"
	"github.com/berth-dev/berth/internal/seccomp"
)

// TestSeccompProgramCache: the first container on a root compiles docker's
// profile and keeps the program in cache/seccomp; the next Runtime on the
// root loads that file (shown by planting a different program under the
// key); a file that does not decode, or that someone other than root may
// have written, is compiled again and replaced, never loaded.
func TestSeccompProgramCache(t *testing.T) {
	rt := busyboxRuntime(t)
	// Docker's profile denies unshare without CAP_SYS_ADMIN; a user
	// namespace needs no capability, so only the filter stops this one.
	const probe = "busybox unshare -U true && echo allowed || echo denied"
	if got := strings.TrimSpace(containerOut(t, rt, probe, berth.WithSeccomp(false))); got != "allowed" {
		t.Fatalf("without seccomp, unshare -U: %s (the probe proves nothing here)", got)
	}
	if got := strings.TrimSpace(containerOut(t, rt, probe)); got != "denied" {
		t.Fatalf("with the compiled filter, unshare -U: %s", got)
	}
	dir := filepath.Join(rt.Root(), "cache", "seccomp")
	files, err := os.ReadDir(dir)
	if err != nil || len(files) != 1 {
		t.Fatalf("cache/seccomp after one container: %v, %v", files, err)
	}
	key := files[0].Name()
	path := filepath.Join(dir, key)
	p, err := seccomp.DefaultProfile(caps.Default())
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := seccomp.Key(p); k != key {
		t.Fatalf("the cache file is %s, the profile's key %s", key, k)
	}
	want, err := seccomp.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	cached := func() seccomp.Filter {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := seccomp.Decode(b, key)
		if err != nil {
			t.Fatalf("the cached program: %v", err)
		}
		return f
	}
	if !slices.Equal(cached(), want) {
		t.Fatal("the cached program is not the one docker's profile compiles to")
	}

	// The next program on the root loads the file: planted there, the
	// program of a CAP_SYS_ADMIN profile lets the probe through.
	adm, err := seccomp.DefaultFilter(append(caps.Default(), "CAP_SYS_ADMIN"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, adm.Encode(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(containerOut(t, sameRoot(t, rt), probe)); got != "allowed" {
		t.Fatalf("with the planted program in the cache, unshare -U: %s (the cache was not read)", got)
	}

	// Files that must not be loaded: compiled again, and replaced.
	good := want.Encode(key)
	altered := slices.Clone(good)
	altered[0] ^= 0xff
	for _, tc := range []struct {
		name  string
		b     []byte
		setup func() error
	}{
		{"altered", altered, nil},
		{"torn", good[:len(good)/2], nil},
		{"empty", nil, nil},
		{"another key's", adm.Encode(strings.Repeat("0", 64)), nil},
		{"group-writable", adm.Encode(key), func() error { return os.Chmod(path, 0o620) }},
		{"in a world-writable directory", adm.Encode(key), func() error { return os.Chmod(dir, 0o777) }},
		{"not root's", adm.Encode(key), func() error { return os.Chown(path, 1000, 1000) }},
	} {
		if err := os.WriteFile(path, tc.b, 0o600); err != nil {
			t.Fatal(err)
		}
		if tc.setup != nil {
			if err := tc.setup(); err != nil {
				t.Fatal(err)
			}
		}
		if got := strings.TrimSpace(containerOut(t, sameRoot(t, rt), probe)); got != "denied" {
			t.Fatalf("%s cache file: unshare -U: %s", tc.name, got)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cached(), want) {
			t.Fatalf("%s cache file was not replaced by the compiled program", tc.name)
		}
	}
}

// sameRoot opens another Runtime on rt's root, as the next program would.
func sameRoot(t *testing.T, rt *berth.Runtime) *berth.Runtime {
	t.Helper()
	next, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })
	return next
}

// TestSeccompProfile: WithSeccompProfile replaces docker's default with a
// profile in docker's JSON form, for the container's process and an
// exec'd one, in both starts: a profile that lets everything through but
// mkdir (EPERM) and chmod (its errnoRet, ENOSYS) makes exactly those
// fail; a profile that does not parse, or whose action berth does not
// compile, fails Run with ErrInvalid; one that refuses execve fails the
// start.
func TestSeccompProfile(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	profile := []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
		{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
		{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}`)
	script := `grep Seccomp: /proc/self/status; mkdir /tmp/d 2>&1; chmod 600 /etc/hostname 2>&1; touch /tmp/f && echo touched`
	want := "Seccomp:\t2\nmkdir: can't create directory '/tmp/d': Operation not permitted\nchmod: /etc/hostname: Function not implemented\ntouched\n"
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			if got := containerOut(t, rt, script, append(start.opts, berth.WithSeccompProfile(profile))...); got != want {
				t.Errorf("with the profile:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithSeccompProfile(profile), berth.WithDetach())
	defer c.Remove(ctx, berth.WithForce())
	if got := execOut(t, c, sh("mkdir /tmp/e 2>&1; true")); got != "mkdir: can't create directory '/tmp/e': Operation not permitted\n" {
		t.Errorf("in an exec'd process: %q", got)
	}
	for _, bad := range []string{`{`, `{}`, `{"defaultAction": "SCMP_ACT_NOTIFY"}`, `{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}`} {
		if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithSeccompProfile([]byte(bad))); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("profile %s: %v, want ErrInvalid", bad, err)
		}
	}
	noExec := []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_ERRNO"}]}`)
	for _, start := range starts {
		_, _, err := runOut(t, rt, "busybox", sh("true"), append(start.opts, berth.WithSeccompProfile(noExec), berth.WithAutoRemove())...)
		var ee *berth.ExitError
		if !errors.As(err, &ee) || ee.Code != 126 {
			t.Errorf("%s: a profile refusing execve: %v, want exit 126 (the command could not run)", start.name, err)
		}
	}
	// A default that logs lets every call it does not name through,
	// newer ones included (not ENOSYS, as under a refusing default).
	logging := []byte(`{"defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}`)
	if got := containerOut(t, rt, "touch /tmp/f && echo fine", berth.WithSeccompProfile(logging)); got != "fine\n" {
		t.Errorf("under a logging default: %q", got)
	}
	// The default profile afterwards, on this Runtime and a new one on
	// the root (the compiled programs are cached by profile): mkdir works.
	if got := containerOut(t, rt, "mkdir /tmp/d && echo made"); got != "made\n" {
		t.Errorf("the default profile after a custom one: %q", got)
	}
	again, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got := containerOut(t, again, "mkdir /tmp/d && echo made"); got != "made\n" {
		t.Errorf("the default profile on a new Runtime: %q", got)
	}
	// A profile that kills the thread of the child stage's setup (its
	// marker's write is the one call it makes after the filter loads, but
	// the execve) leaves the stage alive but silent: the start ends with
	// Run's context.
	killThread := []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["write"], "action": "SCMP_ACT_KILL_THREAD"}]}`)
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = rt.Run(short, "busybox", sh("true"), append(starts[1].opts, berth.WithSeccompProfile(killThread), berth.WithAutoRemove())...)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a child stage whose setup thread the profile kills: %v, want the context's end", err)
	}
}
