package berth_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/internal/caps"
	"github.com/berth-dev/berth/internal/seccomp"
)

// TestSeccompProgramCache: the first container on a root compiles docker's
// profile and keeps the program in cache/seccomp; a program of the next
// Runtime on the root comes from that file, and enforces; a file that does
// not decode is compiled again and replaced, never loaded.
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
	path := filepath.Join(dir, files[0].Name())
	cached := func() seccomp.Filter {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := seccomp.Decode(b)
		if err != nil {
			t.Fatalf("the cached program: %v", err)
		}
		return f
	}
	want, err := seccomp.DefaultFilter(caps.Default())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cached(), want) {
		t.Fatal("the cached program is not the one docker's profile compiles to")
	}

	// The next program on the root loads the file.
	again := sameRoot(t, rt)
	if got := strings.TrimSpace(containerOut(t, again, probe)); got != "denied" {
		t.Fatalf("with the cached filter, unshare -U: %s", got)
	}

	// A corrupt file: the profile is compiled again and the file replaced.
	good, _ := os.ReadFile(path)
	bad := slices.Clone(good)
	bad[0] ^= 0xff
	for name, b := range map[string][]byte{"altered": bad, "torn": good[:len(good)/2], "empty": nil} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		rt := sameRoot(t, rt)
		if got := strings.TrimSpace(containerOut(t, rt, probe)); got != "denied" {
			t.Fatalf("%s cache file: unshare -U: %s", name, got)
		}
		if !slices.Equal(cached(), want) {
			t.Fatalf("%s cache file was not replaced by the compiled program", name)
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
