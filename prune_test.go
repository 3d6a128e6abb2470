package berth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// TestPruneContainers: created and exited containers go with their
// writable layers; running and paused ones stay, and so do volumes.
func TestPruneContainers(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	exited := mustRun(t, rt, "busybox", sh("head -c 300000 /dev/urandom > /blob"), berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "kept", Target: "/data"}))
	if err := exited.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	created, err := rt.Create(ctx, "busybox", sh("true"))
	if err != nil {
		t.Fatal(err)
	}
	running := sleeper(t, rt, "running")
	paused := sleeper(t, rt, "paused")
	if err := paused.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	defer paused.Unpause(ctx)

	removed, reclaimed, err := rt.PruneContainers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{exited.ID, created.ID}
	slices.Sort(want)
	if !slices.Equal(removed, want) || reclaimed < 300000 {
		t.Errorf("PruneContainers removed %v (%d bytes), want %v and at least 300000 bytes", removed, reclaimed, want)
	}
	infos, err := rt.Containers(ctx, berth.WithAll())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, info := range infos {
		left = append(left, info.Name)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"paused", "running"}) {
		t.Errorf("left after PruneContainers: %v, want paused and running", left)
	}
	if _, err := rt.Volume(ctx, "kept"); err != nil {
		t.Errorf("the pruned container's volume: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rt.Root(), "containers", exited.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exited container's directory: %v", err)
	}
	if err := running.Signal(ctx, 0); err != nil {
		t.Errorf("the running container after PruneContainers: %v", err)
	}
}

// TestPruneImages: dangling images no container uses go, with their
// content; a dangling image a stopped container uses and tagged images
// stay, until WithPruneAllImages, which takes every image no container
// uses and leaves a consistent store.
func TestPruneImages(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	commit := func(script string, opts ...berth.CommitOption) *berth.Image {
		t.Helper()
		c := mustRun(t, rt, "busybox", sh(script))
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		img, err := c.Commit(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		return img
	}
	dangling := commit("head -c 500000 /dev/urandom > /blob")
	used := commit("echo used > /f")
	user, err := rt.Create(ctx, used.ID, sh("true"))
	if err != nil {
		t.Fatal(err)
	}
	tagged := commit("echo tagged > /f", berth.WithCommitTag("mine:1"))
	if _, err := rt.Create(ctx, "busybox", sh("true")); err != nil {
		t.Fatal(err)
	}

	removed, reclaimed, err := rt.PruneImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{dangling.ID}) || reclaimed < 100000 {
		t.Errorf("PruneImages removed %v (%d bytes), want [%s] and its layer's bytes", removed, reclaimed, dangling.ID)
	}
	if _, err := rt.Image(ctx, dangling.ID); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("the pruned image: %v, want ErrNotFound", err)
	}
	for _, img := range []*berth.Image{used, tagged} {
		if _, err := rt.Image(ctx, img.ID); err != nil {
			t.Errorf("image %s after PruneImages: %v", img.ID, err)
		}
	}

	removed, _, err = rt.PruneImages(ctx, berth.WithPruneAllImages())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{tagged.ID}) {
		t.Errorf("PruneImages(WithPruneAllImages) removed %v, want only %s (busybox and the other are a container's)", removed, tagged.ID)
	}
	for _, ref := range []string{"busybox", used.ID} {
		if _, err := rt.Image(ctx, ref); err != nil {
			t.Errorf("image %s after PruneImages(WithPruneAllImages): %v", ref, err)
		}
	}
	if err := user.Start(ctx); err != nil {
		t.Errorf("starting the container of a kept image: %v", err)
	} else if err := user.Wait(ctx); err != nil {
		t.Errorf("the container of a kept image: %v", err)
	}
	if err := rt.Check(ctx); err != nil {
		t.Errorf("Check after the prunes: %v", err)
	}
}

// TestPruneNetworks: a network no container joins goes; one a stopped
// container is configured for stays, as does the default network.
func TestPruneNetworks(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, name := range []string{"unused", "configured"} {
		if _, err := rt.CreateNetwork(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rt.Create(ctx, "busybox", sh("true"), berth.WithNetwork("configured")); err != nil {
		t.Fatal(err)
	}
	removed, err := rt.PruneNetworks(ctx)
	if err != nil || !slices.Equal(removed, []string{"unused"}) {
		t.Errorf("PruneNetworks: %v, %v; want [unused]", removed, err)
	}
	nets, err := rt.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, n := range nets {
		left = append(left, n.Name)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{berth.DefaultNetwork, "configured"}) {
		t.Errorf("networks after PruneNetworks: %v", left)
	}
}

// TestPruneBuildCache: after PruneBuildCache a build runs its steps again
// (nothing cached, the cache mount empty), the image built before still
// runs, the store is consistent, and a prune started during a build
// returns only after the build.
func TestPruneBuildCache(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --mount=type=cache,target=/c sh -c 'ls /c; head -c 200000 /dev/urandom > /c/f; echo made > /made'\n"})
	if _, err := rt.Build(ctx, dir, berth.WithBuildTags("cached:1")); err != nil {
		t.Fatal(err)
	}
	freed, err := rt.PruneBuildCache(ctx)
	if err != nil || freed < 200000 {
		t.Errorf("PruneBuildCache: %d bytes, %v; want the cache mount's 200000 at least", freed, err)
	}
	if got := runOutput(t, rt, "cached:1", "cat", "/made"); got != "made\n" {
		t.Errorf("the image built before: %q", got)
	}
	var rec buildRecorder
	if _, err := rt.Build(ctx, dir, berth.WithBuildTags("cached:1"), berth.WithBuildProgress(rec.record)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range rec.events {
		if ev.Output != "" {
			out = append(out, ev.Output)
		}
	}
	if rec.cached("RUN") || len(out) != 0 {
		t.Errorf("the build after PruneBuildCache: cached %v, output %q; want the step run again with an empty cache mount", rec.cached("RUN"), out)
	}
	if err := rt.Check(ctx); err != nil {
		t.Errorf("Check after PruneBuildCache: %v", err)
	}

	started := make(chan struct{}, 1)
	type result struct {
		at  time.Time // the build's last progress event, before its end
		err error
	}
	built := make(chan result, 1)
	slow := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo started; sleep 1\n"})
	go func() {
		var last time.Time
		_, err := rt.Build(ctx, slow, berth.WithNoCache(), berth.WithBuildProgress(func(ev berth.BuildEvent) {
			last = time.Now()
			if ev.Output == "started" {
				started <- struct{}{}
			}
		}))
		built <- result{last, err}
	}()
	select {
	case <-started:
	case res := <-built:
		t.Fatalf("the slow build ended before its RUN printed: %v", res.err)
	}
	if _, err := rt.PruneBuildCache(ctx); err != nil {
		t.Fatal(err)
	}
	pruned := time.Now()
	if res := <-built; res.err != nil || res.at.After(pruned) {
		t.Errorf("the build PruneBuildCache started during: %v, its last event %v after the prune returned", res.err, res.at.Sub(pruned))
	}
}

// TestDiskUsage: DiskUsage counts and measures images, containers (their
// writable layers; the stopped ones' reclaimable), volumes (the unused
// ones' reclaimable) and the build cache (layers only it keeps, until
// PruneBuildCache).
func TestDiskUsage(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	stopped := mustRun(t, rt, "busybox", sh("head -c 100000 /dev/urandom > /f && ln /f /f2"))
	if err := stopped.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// The layer's file, counted once for its two names.
	if n, err := stopped.Size(ctx); err != nil || n < 100000 || n > 110000 {
		t.Errorf("Size: %d, %v; want the 100000 bytes written, once", n, err)
	}
	running := mustRun(t, rt, "busybox", sh("head -c 50000 /dev/urandom > /data/x && echo written && exec sleep 300"),
		berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "used", Target: "/data"}))
	defer running.Remove(ctx, berth.WithForce())
	if err := running.WaitLog(ctx, "written"); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CreateVolume(ctx, "idle"); err != nil {
		t.Fatal(err)
	}
	dir := berthtest.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 30000 /dev/urandom > /built\n"})
	if _, err := rt.Build(ctx, dir, berth.WithBuildTags("du:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemoveImage(ctx, "du:1"); err != nil {
		t.Fatal(err)
	}

	du, err := rt.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if du.Containers != 2 || du.ContainersRunning != 1 || du.ContainersReclaimable < 100000 || du.ContainersReclaimable > 110000 || du.ContainersSize < du.ContainersReclaimable {
		t.Errorf("containers: %d, %d running, %d bytes, %d reclaimable", du.Containers, du.ContainersRunning, du.ContainersSize, du.ContainersReclaimable)
	}
	img, err := rt.Image(ctx, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if du.Images != 1 || du.ImagesActive != 1 || du.ImagesSize != img.Size || du.ImagesReclaimable != 0 {
		t.Errorf("images: %d, %d active, %d bytes (busybox has %d), %d reclaimable", du.Images, du.ImagesActive, du.ImagesSize, img.Size, du.ImagesReclaimable)
	}
	if du.Volumes != 2 || du.VolumesActive != 1 || du.VolumesSize < 50000 || du.VolumesReclaimable != 0 {
		t.Errorf("volumes: %d, %d active, %d bytes, %d reclaimable", du.Volumes, du.VolumesActive, du.VolumesSize, du.VolumesReclaimable)
	}
	if du.BuildCache < 1 || du.BuildCacheSize < 30000 {
		t.Errorf("build cache: %d steps, %d bytes; want the RUN's layer", du.BuildCache, du.BuildCacheSize)
	}
	if _, err := rt.PruneBuildCache(ctx); err != nil {
		t.Fatal(err)
	}
	if du, err := rt.DiskUsage(ctx); err != nil || du.BuildCache != 0 || du.BuildCacheSize != 0 {
		t.Errorf("build cache after PruneBuildCache: %d steps, %d bytes, %v", du.BuildCache, du.BuildCacheSize, err)
	}
}
