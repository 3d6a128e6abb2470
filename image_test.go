package berth_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

func TestImportPushPull(t *testing.T) {
	ctx := context.Background()
	reg := berthtest.StartRegistry(t)
	rt := berthtest.NewRuntime(t)
	img := berthtest.Busybox(t, rt, "busybox:latest")
	if len(img.Layers) != 1 || img.RepoTags[0] != "busybox:latest" {
		t.Fatalf("imported image = %+v", img)
	}
	ref := reg.Host + "/test/busybox:1"
	var mu sync.Mutex
	var reports []berth.Progress
	if err := rt.Push(ctx, img, ref, berth.WithProgress(func(p berth.Progress) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	})); err != nil {
		t.Fatal(err)
	}
	// Every report came before Push returned, and the last says done.
	mu.Lock()
	n := len(reports)
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if len(reports) != n || n == 0 {
		t.Errorf("Push progress: %d reports at its return, %d after", n, len(reports))
	} else if last := reports[n-1]; !last.Done || last.Current != last.Total || last.Total == 0 {
		t.Errorf("Push's last progress report %+v, want done with all bytes", last)
	}
	mu.Unlock()
	rt2 := berthtest.NewRuntime(t)
	pulled, err := rt2.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Digest != img.Digest || pulled.ID != img.ID {
		t.Errorf("pulled %s/%s, pushed %s/%s", pulled.Digest, pulled.ID, img.Digest, img.ID)
	}
	if err := rt2.Check(ctx); err != nil {
		t.Errorf("Check after pull: %v", err)
	}
	var buf bytes.Buffer
	if err := rt2.Save(ctx, &buf, ref); err != nil {
		t.Fatal(err)
	}
	rt3 := berthtest.NewRuntime(t)
	loaded, err := rt3.Load(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].Digest != img.Digest {
		t.Fatalf("loaded %+v", loaded)
	}
	if _, err := rt3.RemoveImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := rt3.Image(ctx, ref); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("after rmi: %v, want ErrNotFound", err)
	}
}

// TestPruneSweepsCacheTemps: a program killed while writing a cache entry
// leaves its temporary file; Prune deletes such files once they are old
// enough to have no live writer, and keeps the entries and fresh ones.
func TestPruneSweepsCacheTemps(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, berth.WithNetworkMode("none"), berth.WithAutoRemove())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	seccompDir := filepath.Join(rt.Root(), "cache", "seccomp")
	entries, err := os.ReadDir(seccompDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("no compiled seccomp filter cached in %s: %v", seccompDir, err)
	}
	// A RUN --mount=type=cache directory, named like a temp file, holding
	// an old temp-named file of the user's: neither is a cache entry's.
	mountDir := filepath.Join(rt.Root(), "cache", "mounts", ".tmp-a-cache-mount")
	old := time.Now().Add(-time.Hour)
	write := func(dir, name string, mtime time.Time) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("torn"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := []string{
		write(seccompDir, ".tmp-"+entries[0].Name()+"-123", old),
		write(filepath.Join(rt.Root(), "cache", "build"), ".tmp-0123abcd-456", old),
	}
	kept := []string{
		write(seccompDir, ".tmp-"+entries[0].Name()+"-789", time.Now()), // a writer may be live
		write(filepath.Join(rt.Root(), "cache", "build"), "0123abcd", old),
		filepath.Join(seccompDir, entries[0].Name()),
		mountDir,
		write(mountDir, ".tmp-users-file", old),
	}
	if _, err := rt.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range stale {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: still there after Prune (%v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: gone after Prune (%v)", p, err)
		}
	}
}

// TestPruneDropsRootWithoutManifest: a build's root whose manifest is gone
// (left by an older berth, whose RUN wrote its image outside the gc lock
// while a Prune ran) keeps nothing: Prune removes it instead of failing on
// it, this time and every time after.
func TestPruneDropsRootWithoutManifest(t *testing.T) {
	ctx := context.Background()
	rt := busyboxRuntime(t)
	missing := strings.Repeat("ab", 32) // sha256 of nothing in the store
	root := filepath.Join(rt.Root(), "roots", missing)
	if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Prune(ctx); err != nil {
		t.Fatalf("Prune with a root whose manifest is gone: %v", err)
	}
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the root is still there: %v", err)
	}
	if _, err := rt.Image(ctx, "busybox"); err != nil {
		t.Errorf("the tagged image after Prune: %v", err)
	}
}

// TestRemoveImageInUse: an image a container was run from, running or
// not, keeps its content: removing its last tag is refused (docker rmi's
// conflict) unless forced, which untags it; neither that removal nor a
// Prune deletes the layers the container's overlay is made of, until the
// container goes.
func TestRemoveImageInUse(t *testing.T) {
	ctx := context.Background()
	rt := busyboxRuntime(t)
	commitImage(t, rt, "keep", "echo kept > /kept")
	stopped := mustRun(t, rt, "keep", sh("true"))
	stopped.Wait(ctx)
	running := mustRun(t, rt, "keep", sh("exec sleep 300"))
	t.Cleanup(func() { running.Remove(ctx, berth.WithForce()) })

	if _, err := rt.RemoveImage(ctx, "keep"); !errors.Is(err, berth.ErrInUse) {
		t.Fatalf("RemoveImage of an image containers use: %v, want ErrInUse", err)
	}
	img, err := rt.Image(ctx, "keep")
	if err != nil {
		t.Fatalf("the image after a refused removal: %v", err)
	}
	if _, err := rt.RemoveImage(ctx, img.ID); !errors.Is(err, berth.ErrInUse) {
		t.Fatalf("RemoveImage by ID of an image containers use: %v, want ErrInUse", err)
	}
	if _, err := rt.RemoveImage(ctx, "keep", berth.WithForceRemove()); err != nil {
		t.Fatalf("forced RemoveImage: %v", err)
	}
	if _, err := rt.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if out := execOut(t, running, sh("cat /kept")); out != "kept\n" {
		t.Errorf("the running container's image file after the image went: %q", out)
	}
	if _, err := stopped.Commit(ctx, berth.WithCommitTag("again")); err != nil {
		t.Errorf("commit of the stopped container after its image went: %v", err)
	}
	out, err := output(t, rt, "again", sh("cat /kept"))
	if err != nil || out != "kept\n" {
		t.Errorf("a container of the commit: %q, %v", out, err)
	}
	// Once its containers are gone, the content goes with the next Prune.
	stopped.Remove(ctx)
	running.Remove(ctx, berth.WithForce())
	rep, err := rt.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs == 0 && rep.Snapshots == 0 {
		t.Errorf("Prune after the containers went deleted nothing: %+v", rep)
	}
}
