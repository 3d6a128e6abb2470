package berth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// output runs p attached, waits, and returns its stdout and the Wait error.
func output(t *testing.T, rt *berth.Runtime, img string, p *berth.Process, opts ...berth.RunOption) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	p.Stdout, p.Stderr = &out, &errOut
	c, err := rt.Run(context.Background(), img, p, opts...)
	if err != nil {
		return "", err
	}
	werr := c.Wait(context.Background())
	if werr != nil && errOut.Len() > 0 {
		werr = fmt.Errorf("%w: %s", werr, strings.TrimSpace(errOut.String()))
	}
	return out.String(), werr
}

// mustOutput is output failing the test on any error.
func mustOutput(t *testing.T, rt *berth.Runtime, img string, p *berth.Process, opts ...berth.RunOption) string {
	t.Helper()
	out, err := output(t, rt, img, p, opts...)
	if err != nil {
		t.Fatalf("%q: %v", p.Args, err)
	}
	return out
}

// commitImage runs script in busybox, commits the container with changes
// as ref, and removes the container.
func commitImage(t *testing.T, rt *berth.Runtime, ref, script string, changes ...string) {
	t.Helper()
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh(script))
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("building %s: %v", ref, err)
	}
	if _, err := c.Commit(ctx, berth.WithCommitTag(ref), berth.WithChanges(changes...)); err != nil {
		t.Fatalf("commit %s: %v", ref, err)
	}
	c.Remove(ctx)
}

// otherEngines are where other container engines on the machine mount
// things (docker's overlays and netns files, containerd, podman): their
// containers coming and going during a test are not berth's leaks.
var otherEngines = []string{"/var/lib/docker/", "/run/docker/", "/run/containerd/", "/var/lib/containers/", "/run/containers/", "/run/netns/"}

// hostMountinfo is the host's mount table, less other engines' mounts.
func hostMountinfo(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// go test ./... runs other packages' test binaries at the same time;
	// their tests mount below their own temporary directories.
	tmp := filepath.Clean(os.TempDir()) + "/"
	own := tmp + strings.SplitN(t.Name(), "/", 2)[0]
	var keep []string
lines:
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			for _, p := range otherEngines {
				if strings.HasPrefix(f[4], p) {
					continue lines
				}
			}
			if strings.HasPrefix(f[4], tmp+"Test") && !strings.HasPrefix(f[4], own) {
				continue lines
			}
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "")
}

// TestVolumePersists is the persistent-database scenario: a container
// writes into a named volume (and a bind mount), is removed, and a new
// container finds the data.
func TestVolumePersists(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := t.TempDir()
	mounts := berth.WithMounts(
		berth.Mount{Type: berth.MountVolume, Source: "db", Target: "/var/lib/db"},
		berth.Mount{Type: berth.MountBind, Source: host, Target: "/host"},
	)
	c := mustRun(t, rt, "busybox", sh("echo row1 > /var/lib/db/table && echo bound > /host/file"), mounts)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := rt.Volume(ctx, "db")
	if err != nil {
		t.Fatalf("the volume made on first use: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "table")); err != nil || string(b) != "row1\n" {
		t.Errorf("volume data on the host = %q, %v", b, err)
	}
	got := mustOutput(t, rt, "busybox", sh("cat /var/lib/db/table /host/file"), mounts, berth.WithAutoRemove())
	if got != "row1\nbound\n" {
		t.Errorf("a new container read %q, want row1 and bound", got)
	}
	// Another Runtime on the same root sees the volume too.
	rt2, err := berth.New(filepath.Dir(filepath.Dir(v.Mountpoint)) + "/..")
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	if _, err := rt2.Volume(ctx, "db"); err != nil {
		t.Errorf("a second Runtime: %v", err)
	}
}

// TestVolumeCopyUp checks that the first mount of an empty volume gets the
// image's content at the target with owners, modes and symlinks, and that
// a volume with data is not seeded again.
func TestVolumeCopyUp(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	commitImage(t, rt, "seeded", `mkdir -p /data/sub && echo hello > /data/a && chown 1234:5678 /data/a && chmod 0640 /data/a &&
		chown 42:43 /data/sub && chmod 0710 /data/sub && echo deep > /data/sub/f && ln -s /etc/passwd /data/link &&
		chown -h 7:8 /data/link && chmod 4755 /data/sub/f && chown 9:9 /data && chmod 0750 /data`)
	vol := berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "seed", Target: "/data"})
	got := mustOutput(t, rt, "seeded", sh("stat -c '%n %u:%g %a' /data /data/a /data/sub /data/sub/f && cat /data/a && readlink /data/link && stat -c '%u:%g' /data/link | head -1"), vol, berth.WithAutoRemove())
	want := "/data 9:9 750\n/data/a 1234:5678 640\n/data/sub 42:43 710\n/data/sub/f 0:0 4755\nhello\n/etc/passwd\n"
	if !strings.HasPrefix(got, want) {
		t.Errorf("seeded volume (-want +got):\n%s", diffLines(want, got))
	}
	v, err := rt.Volume(ctx, "seed")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(v.Mountpoint, "link")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was not copied as a symlink: %v %v", fi, err)
	}
	// Not empty any more: the next mount keeps what is there.
	mustOutput(t, rt, "seeded", sh("rm /data/a"), vol, berth.WithAutoRemove())
	if out := mustOutput(t, rt, "seeded", sh("ls /data"), vol, berth.WithAutoRemove()); strings.Contains(out, "a\n") && strings.HasPrefix(out, "a") {
		t.Errorf("a non-empty volume was seeded again: %q", out)
	}
	// NoCopy leaves a new volume empty.
	out := mustOutput(t, rt, "seeded", sh("ls -A /data | wc -l"), berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "nocopy", Target: "/data", NoCopy: true}), berth.WithAutoRemove())
	if strings.TrimSpace(out) != "0" {
		t.Errorf("NoCopy volume holds %s entries", out)
	}
}

// TestVolumeSeedConcurrent starts eight containers at once on one new
// volume over image content: the volume is seeded exactly once (a second
// seeder would fail on names that exist, or copy into a volume in use),
// and every container sees all of it, hard links kept.
func TestVolumeSeedConcurrent(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	commitImage(t, rt, "many", `mkdir -p /data && cd /data && for d in $(seq 20); do mkdir $d; for f in $(seq 20); do echo $d.$f > $d/$f; done; done && ln 1/1 hard`)
	vol := berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "together", Target: "/data"})
	var wg sync.WaitGroup
	outs := make([]string, 8)
	errs := make([]error, 8)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = output(t, rt, "many", sh("find /data -type f | wc -l; stat -c %i /data/1/1 /data/hard | uniq | wc -l"), vol, berth.WithAutoRemove())
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || outs[i] != "401\n1\n" {
			t.Errorf("container %d: %q, %v; want 401 files and one inode for the two links", i, outs[i], errs[i])
		}
	}
	v, err := rt.Volume(ctx, "together")
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(v.Mountpoint); len(entries) != 21 {
		t.Errorf("the volume holds %d entries, want 21", len(entries))
	}
}

// TestVolumeAnonymous checks the image's VOLUMEs: an anonymous volume each,
// seeded, removed with the container under auto-remove or
// WithRemoveVolumes, kept otherwise.
func TestVolumeAnonymous(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	commitImage(t, rt, "withvol", "mkdir /data && echo seed > /data/f", "VOLUME /data")
	out := mustOutput(t, rt, "withvol", sh("cat /data/f && grep -c ' /data ' /proc/self/mountinfo"), berth.WithAutoRemove())
	if out != "seed\n1\n" {
		t.Errorf("anonymous volume: got %q", out)
	}
	if vols, _ := rt.Volumes(ctx); len(vols) != 0 {
		t.Errorf("auto-remove left %d volumes", len(vols))
	}
	c := mustRun(t, rt, "withvol", sh("true"))
	c.Wait(ctx)
	vols, _ := rt.Volumes(ctx)
	if len(vols) != 1 || !vols[0].Anonymous {
		t.Fatalf("volumes after a kept container: %+v", vols)
	}
	if err := vols[0].Remove(ctx); !errors.Is(err, berth.ErrInUse) {
		t.Errorf("removing a volume an exited container uses: %v, want ErrInUse", err)
	}
	if err := c.Remove(ctx, berth.WithRemoveVolumes()); err != nil {
		t.Fatal(err)
	}
	if vols, _ := rt.Volumes(ctx); len(vols) != 0 {
		t.Errorf("Remove(WithRemoveVolumes) left %d volumes", len(vols))
	}
	// Kept without the option; PruneVolumes removes it.
	c = mustRun(t, rt, "withvol", sh("true"))
	c.Wait(ctx)
	c.Remove(ctx)
	removed, _, err := rt.PruneVolumes(ctx)
	if err != nil || len(removed) != 1 {
		t.Errorf("PruneVolumes = %v, %v; want the one anonymous volume", removed, err)
	}
}

// TestVolumeInUse checks ErrInUse and WithForce: a running container's
// volume is never removed, forced or not; a stopped container's only when
// forced.
func TestVolumeInUse(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	v, err := rt.CreateVolume(ctx, "busy", berth.WithVolumeLabels(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	if v.Labels["k"] != "v" || v.Driver != "local" || v.CreatedAt.IsZero() {
		t.Errorf("volume = %+v", v)
	}
	if _, err := rt.CreateVolume(ctx, "busy"); !errors.Is(err, berth.ErrExists) {
		t.Errorf("CreateVolume of a taken name: %v, want ErrExists", err)
	}
	c := mustRun(t, rt, "busybox", sh("echo data > /v/f; exec sleep 30"), berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "busy", Target: "/v"}))
	for deadline := time.Now().Add(10 * time.Second); !fileExists(filepath.Join(v.Mountpoint, "f")); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the container did not write into its volume")
		}
	}
	if err := v.Remove(ctx); !errors.Is(err, berth.ErrInUse) || !strings.Contains(err.Error(), c.ID[:12]) {
		t.Errorf("Remove of a volume a running container uses: %v, want ErrInUse naming %s", err, c.ID[:12])
	}
	if err := v.Remove(ctx, berth.WithForce()); !errors.Is(err, berth.ErrInUse) {
		t.Errorf("forced Remove of a volume a running container uses: %v, want ErrInUse", err)
	}
	if !fileExists(filepath.Join(v.Mountpoint, "f")) {
		t.Error("a refused Remove deleted the running container's data")
	}
	if removed, _, _ := rt.PruneVolumes(ctx, berth.WithPruneAllVolumes()); len(removed) != 0 {
		t.Errorf("PruneVolumes removed %v, in use by a running container", removed)
	}
	c.Stop(ctx, 0)
	if err := v.Remove(ctx); !errors.Is(err, berth.ErrInUse) {
		t.Errorf("Remove of a volume a stopped container uses: %v, want ErrInUse", err)
	}
	if removed, _, _ := rt.PruneVolumes(ctx, berth.WithPruneAllVolumes()); len(removed) != 0 {
		t.Errorf("PruneVolumes removed %v, in use", removed)
	}
	if err := v.Remove(ctx, berth.WithForce()); err != nil {
		t.Errorf("forced Remove of a stopped container's volume: %v", err)
	}
	if _, err := rt.Volume(ctx, "busy"); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("Volume after Remove: %v, want ErrNotFound", err)
	}
	c.Remove(ctx)
}

// TestBindReadOnlyRecursive binds a host directory holding a tmpfs mount
// read-only: neither the directory nor the submount is writable.
func TestBindReadOnlyRecursive(t *testing.T) {
	rt := busyboxRuntime(t)
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mounting a tmpfs in the bound directory: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o644)
	ro := berth.WithMounts(berth.Mount{Type: berth.MountBind, Source: dir, Target: "/ro", ReadOnly: true})
	out := mustOutput(t, rt, "busybox", sh("cat /ro/sub/f; touch /ro/x 2>/dev/null && echo top-writable; touch /ro/sub/y 2>/dev/null && echo sub-writable; echo done"), ro, berth.WithAutoRemove())
	if out != "xdone\n" {
		t.Errorf("read-only recursive bind: got %q, want the submount's file and no writes", out)
	}
	if _, err := os.Stat(filepath.Join(sub, "y")); err == nil {
		t.Error("the container wrote into the read-only submount")
	}
	rw := berth.WithMounts(berth.Mount{Type: berth.MountBind, Source: dir, Target: "/rw", Propagation: "rslave"})
	mustOutput(t, rt, "busybox", sh("touch /rw/sub/z"), rw, berth.WithAutoRemove())
	if _, err := os.Stat(filepath.Join(sub, "z")); err != nil {
		t.Errorf("a read-write recursive bind did not reach the submount: %v", err)
	}
}

// TestTmpfsLimit checks --tmpfs size and mode.
func TestTmpfsLimit(t *testing.T) {
	rt := busyboxRuntime(t)
	tm := berth.WithMounts(berth.Mount{Type: berth.MountTmpfs, Target: "/scratch", TmpfsSize: 1 << 20, TmpfsMode: 0o770 | os.ModeSticky})
	out, err := output(t, rt, "busybox", sh("stat -c %a /scratch; dd if=/dev/zero of=/scratch/big bs=1024 count=2048 2>/dev/null && echo fits"), tm, berth.WithAutoRemove())
	if out != "1770\n" || err == nil {
		t.Errorf("tmpfs of 1 MiB: got %q, %v; want mode 1770 and dd of 2 MiB failing", out, err)
	}
	out = mustOutput(t, rt, "busybox", sh("dd if=/dev/zero of=/scratch/small bs=1024 count=512 2>/dev/null && echo fits"), tm, berth.WithAutoRemove())
	if out != "fits\n" {
		t.Errorf("512 KiB in a 1 MiB tmpfs: %q", out)
	}
}

// TestTmpfsOptions checks docker --tmpfs's options: a tmpfs is noexec,
// nosuid and nodev (a program copied there cannot run) unless "exec" (and
// the others) lift it; uid, gid and nr_inodes reach the tmpfs; options
// tmpfs or berth would not take are refused, naming them.
func TestTmpfsOptions(t *testing.T) {
	rt := busyboxRuntime(t)
	run := "cp /bin/busybox /t/true && /t/true && echo ran; stat -c '%u:%g' /t; grep ' /t ' /proc/mounts"
	out, err := output(t, rt, "busybox", sh(run), berth.WithAutoRemove(),
		berth.WithMounts(berth.Mount{Type: berth.MountTmpfs, Target: "/t"}))
	if err != nil || strings.Contains(out, "ran") || !strings.Contains(out, "nosuid,nodev,noexec") {
		t.Errorf("a plain tmpfs: %q, %v; want its program refused, and nosuid,nodev,noexec", out, err)
	}
	out = mustOutput(t, rt, "busybox", sh(run), berth.WithAutoRemove(), berth.WithMounts(berth.Mount{
		Type: berth.MountTmpfs, Target: "/t", TmpfsOptions: []string{"exec", "uid=1000", "gid=1001", "nr_inodes=64", "noatime"}}))
	if !strings.HasPrefix(out, "ran\n1000:1001\ntmpfs /t tmpfs rw,nosuid,nodev,noatime,") || !strings.Contains(out, "nr_inodes=64") ||
		!strings.Contains(out, "uid=1000,gid=1001") {
		t.Errorf("tmpfs with exec, uid, gid, nr_inodes and noatime: %q", out)
	}
	for _, o := range []string{"ro", "size=1m", "uid=x", "uid=4294967296", "uid=-1", "mode=777", "nr_inodes=1,exec", "x-mount.mkdir", "sync", ""} {
		_, err := rt.Run(context.Background(), "busybox", sh("true"), berth.WithMounts(berth.Mount{Type: berth.MountTmpfs, Target: "/t", TmpfsOptions: []string{o}}))
		if !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("unsupported option %q", o)) {
			t.Errorf("tmpfs option %q: %v; want ErrInvalid naming it", o, err)
		}
	}
	_, err = rt.Run(context.Background(), "busybox", sh("true"), berth.WithMounts(berth.Mount{Type: berth.MountVolume, Target: "/t", TmpfsOptions: []string{"exec"}}))
	if !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("tmpfs options on a volume: %v, want ErrInvalid", err)
	}
}

// TestVolumesFrom shares one container's volumes and binds with another.
func TestVolumesFrom(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := t.TempDir()
	src := mustRun(t, rt, "busybox", sh("echo v > /v/f"), berth.WithName("src"),
		berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "shared", Target: "/v"}, berth.Mount{Type: berth.MountBind, Source: host, Target: "/h"}))
	src.Wait(ctx)
	out, err := output(t, rt, "busybox", sh("cat /v/f; touch /h/x 2>/dev/null || echo ro"), berth.WithVolumesFrom("src:ro"), berth.WithAutoRemove())
	if err != nil || out != "v\nro\n" {
		t.Errorf("volumes-from src:ro: %q, %v", out, err)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithVolumesFrom("nosuch")); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("volumes-from a missing container: %v", err)
	}
}

// TestMountHostile checks hostile volume names, mount targets and image
// VOLUME paths.
func TestMountHostile(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, name := range []string{"../x", "a/b", ".hidden", "-x", "/abs", "..", "x\x00y"} {
		if _, err := rt.CreateVolume(ctx, name); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("CreateVolume(%q) = %v, want ErrInvalid", name, err)
		}
		if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: name, Target: "/v"})); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("Run with volume %q = %v, want ErrInvalid", name, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(rootOf(t, rt), "volumes")); len(entries) != 0 {
		t.Errorf("hostile names left %d entries in volumes/", len(entries))
	}
	for _, target := range []string{"relative", "/"} {
		if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithMounts(berth.Mount{Type: berth.MountTmpfs, Target: target})); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("tmpfs on %q = %v, want ErrInvalid", target, err)
		}
	}

	// An image VOLUME with ".." and a symlink to / on the way to a target
	// both stay inside the container's root.
	tag := fmt.Sprintf("berth-hostile-%d", time.Now().UnixNano())
	commitImage(t, rt, "hostile", "ln -s ../../../../../../../.. /escape && mkdir -p /tmp", `VOLUME ["../../`+tag+`"]`)
	sentinel := t.TempDir()
	os.WriteFile(filepath.Join(sentinel, "sentinel"), []byte("inside\n"), 0o644)
	out := mustOutput(t, rt, "hostile", sh("grep -c ' /"+tag+" ' /proc/self/mountinfo; cat /tmp/"+tag+"/sentinel"),
		berth.WithMounts(berth.Mount{Type: berth.MountBind, Source: sentinel, Target: "/escape/tmp/" + tag, ReadOnly: true}), berth.WithAutoRemove())
	if out != "1\ninside\n" {
		t.Errorf("hostile image: got %q, want the VOLUME at /%s and the bind at /tmp/%s inside the root", out, tag, tag)
	}
	for _, p := range []string{"/" + tag, "/tmp/" + tag, filepath.Join(rootOf(t, rt), tag), filepath.Join(rootOf(t, rt), "containers", tag)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists on the host", p)
		}
	}
}

// TestMountProcRefused: nothing is mounted on /proc or under it, as runc
// refuses: the container's procfs is what Exec finds its helper through,
// and an image VOLUME there was seeded from the live procfs (/proc/kcore
// holds the host's memory). Through an image's symlink too.
func TestMountProcRefused(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	dir := t.TempDir()
	commitImage(t, rt, "proclink", "ln -s /proc/sys /sysctl")
	for _, tc := range []struct {
		img string
		m   berth.Mount
		opt []berth.RunOption
	}{
		{"busybox", berth.Mount{Type: berth.MountBind, Source: dir, Target: "/proc"}, nil},
		{"busybox", berth.Mount{Type: berth.MountTmpfs, Target: "/proc/sys/../sys/kernel"}, nil},
		{"busybox", berth.Mount{Type: berth.MountVolume, Target: "/proc/self"}, nil},
		{"busybox", berth.Mount{Type: berth.MountBind, Source: dir, Target: "/proc"}, []berth.RunOption{berth.WithRlimits(berth.Rlimit{Name: "nofile", Soft: 1024, Hard: 1024})}}, // the child stage
		{"proclink", berth.Mount{Type: berth.MountBind, Source: dir, Target: "/sysctl/kernel"}, []berth.RunOption{berth.WithRlimits(berth.Rlimit{Name: "nofile", Soft: 1024, Hard: 1024})}},
	} {
		c, err := rt.Run(ctx, tc.img, sh("true"), append(tc.opt, berth.WithMounts(tc.m), berth.WithAutoRemove())...)
		if err == nil {
			c.Wait(ctx)
			t.Errorf("%s on %s in %s: started, want a refusal", tc.m.Type, tc.m.Target, tc.img)
		} else if !strings.Contains(err.Error(), "/proc") {
			t.Errorf("%s on %s in %s: %v, want an error naming /proc", tc.m.Type, tc.m.Target, tc.img, err)
		}
	}
	// lxcfs' files are the exception, as in runc: a file bound on one of
	// them is what the container reads.
	meminfo := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(meminfo, []byte("MemTotal: 1024 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustOutput(t, rt, "busybox", sh("cat /proc/meminfo"), berth.WithAutoRemove(),
		berth.WithMounts(berth.Mount{Type: berth.MountBind, Source: meminfo, Target: "/proc/meminfo", ReadOnly: true}))
	if out != "MemTotal: 1024 kB\n" {
		t.Errorf("/proc/meminfo with a file bound on it: %q", out)
	}
	commitImage(t, rt, "procvol", "true", "VOLUME /proc/sys")
	if c, err := rt.Run(ctx, "procvol", sh("true"), berth.WithAutoRemove()); err == nil {
		c.Wait(ctx)
		t.Errorf("an image VOLUME /proc/sys: started, want a refusal")
	}
	if vols, _ := rt.Volumes(ctx); len(vols) != 0 {
		t.Errorf("refused starts left %d volumes", len(vols))
	}
}

// TestVolumeSeedsImageFilesOnly: a new volume gets the image's files at
// its mount point and nothing of another filesystem: not sysfs reached
// through a symlink of the image (the host's firmware tables), not another
// mount below it. Mounts go parents first, as docker sorts them, whatever
// order they were given in.
func TestVolumeSeedsImageFilesOnly(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	commitImage(t, rt, "fwlink", "ln -s /sys/firmware /data", "VOLUME /data")
	c := mustRun(t, rt, "fwlink", sh("true"))
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := c.Inspect(ctx)
	if err != nil || len(info.Mounts) != 1 {
		t.Fatalf("Inspect: %+v, %v; want one mount", info, err)
	}
	v, err := rt.Volume(ctx, info.Mounts[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(v.Mountpoint); len(entries) != 0 {
		t.Errorf("the volume at a symlink to /sys/firmware holds %d entries of sysfs", len(entries))
	}
	c.Remove(ctx, berth.WithRemoveVolumes())

	// The child given first: mounted after its parent all the same, and
	// the parent's new volume holds nothing of it.
	inner, err := rt.CreateVolume(ctx, "inner")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inner.Mountpoint, "secret"), []byte("inner\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustOutput(t, rt, "busybox", sh("cat /data/inner/secret"), berth.WithAutoRemove(), berth.WithMounts(
		berth.Mount{Type: berth.MountVolume, Source: "inner", Target: "/data/inner"},
		berth.Mount{Type: berth.MountVolume, Source: "outer", Target: "/data"}))
	if out != "inner\n" {
		t.Errorf("/data/inner/secret with /data/inner given before /data: %q, want the inner volume's", out)
	}
	outer, err := rt.Volume(ctx, "outer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outer.Mountpoint, "inner", "secret")); err == nil {
		t.Errorf("the outer volume was seeded with the inner one's file")
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// rootOf is the runtime's root directory, found through a volume.
func rootOf(t *testing.T, rt *berth.Runtime) string {
	t.Helper()
	ctx := context.Background()
	v, err := rt.CreateVolume(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Remove(ctx)
	return filepath.Dir(filepath.Dir(filepath.Dir(v.Mountpoint)))
}

// TestMountSwapRace is CVE-2021-30465's shape: one container loops
// swapping a directory of a shared volume for a symlink to "/", while the
// host starts 200 containers that bind a host directory beneath it. Every
// bind must land inside its container's root (where the container sees
// the sentinel), never elsewhere, and the host's mount table must not
// change.
func TestMountSwapRace(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	n := 200
	if testing.Short() {
		n = 20
	}
	shared := berth.Mount{Type: berth.MountVolume, Source: "shared", Target: "/shared"}
	tag := fmt.Sprintf("berth-race-%d", time.Now().UnixNano())
	sentinel := filepath.Join(t.TempDir(), tag+"-src")
	os.Mkdir(sentinel, 0o755)
	before := hostMountinfo(t)
	// Renames, not removals: a directory removed from under a mount in
	// another namespace takes the mount with it, which would hide where
	// the mount went.
	swapper := mustRun(t, rt, "busybox", sh("cd /shared; mkdir -p sub; while :; do mv sub d; ln -s / sub; rm sub; mv d sub; done"), berth.WithMounts(shared))
	defer swapper.Remove(ctx, berth.WithForce())
	var symlinked, direct atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			target := "/shared/sub/" + tag
			var out bytes.Buffer
			// Every line of the container's mountinfo is a mount inside its
			// root: the bind must be there, on the way through the shared
			// directory or, when the symlink won, at /TAG.
			c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "grep '" + tag + "-src' /proc/self/mountinfo | cut -d' ' -f5"}, Stdout: &out},
				berth.WithMounts(shared, berth.Mount{Type: berth.MountBind, Source: sentinel, Target: target, ReadOnly: true}), berth.WithAutoRemove())
			if err != nil {
				// A setup step that lost the race fails cleanly; that is
				// allowed, a mount outside the root is not.
				if !strings.Contains(err.Error(), "container setup") {
					errs <- err
				}
				return
			}
			c.Wait(ctx)
			// The swapper's own renames can nest the directory (d/d/...).
			switch s := out.String(); {
			case s == "/"+tag+"\n":
				symlinked.Add(1)
			case strings.HasPrefix(s, "/shared/") && strings.HasSuffix(s, "/"+tag+"\n") && strings.Count(s, "\n") == 1:
				direct.Add(1)
			default:
				errs <- fmt.Errorf("the container does not see its bind inside its root: %q", s)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d binds through the directory, %d through the symlink to /", direct.Load(), symlinked.Load())
	if _, err := os.Lstat("/" + tag); err == nil {
		t.Errorf("/%s was created on the host", tag)
	}
	swapper.Remove(ctx, berth.WithForce())
	if after := hostMountinfo(t); after != before {
		t.Errorf("host mount table changed:\n%s", diffLines(before, after))
	}
}

// TestMountsLeaveHostTable runs 200 containers with a named volume, an
// anonymous one, a bind and a tmpfs, and checks the host's mount table
// after.
func TestMountsLeaveHostTable(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	n := 200
	if testing.Short() {
		n = 20
	}
	host := t.TempDir()
	mustOutput(t, rt, "busybox", sh("true"), berth.WithAutoRemove()) // let the warm child start
	before := hostMountinfo(t)
	opts := berth.WithMounts(
		berth.Mount{Type: berth.MountVolume, Source: "cycle", Target: "/v"},
		berth.Mount{Type: berth.MountVolume, Target: "/anon"},
		berth.Mount{Type: berth.MountBind, Source: host, Target: "/h"},
		berth.Mount{Type: berth.MountTmpfs, Target: "/t", TmpfsSize: 1 << 20},
	)
	for i := 0; i < n; i++ {
		c := mustRun(t, rt, "busybox", sh("echo $HOSTNAME >> /v/log"), opts)
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Remove(ctx, berth.WithRemoveVolumes()); err != nil {
			t.Fatal(err)
		}
	}
	if after := hostMountinfo(t); after != before {
		t.Errorf("host mount table changed:\n%s", diffLines(before, after))
	}
	vols, _ := rt.Volumes(ctx)
	if len(vols) != 1 || vols[0].Name != "cycle" {
		t.Errorf("volumes left: %d, want only cycle", len(vols))
	}
	b, _ := os.ReadFile(filepath.Join(vols[0].Mountpoint, "log"))
	if lines := strings.Count(string(b), "\n"); lines != n {
		t.Errorf("the named volume holds %d lines, want %d", lines, n)
	}
}

// TestCommitLeavesVolumesOut checks that a committed image holds none of a
// volume's files.
func TestCommitLeavesVolumesOut(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("echo secret > /data/secret && echo kept > /kept"), berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: "cv", Target: "/data"}))
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, berth.WithCommitTag("committed")); err != nil {
		t.Fatal(err)
	}
	out := mustOutput(t, rt, "committed", sh("cat /kept; ls -A /data | wc -l"), berth.WithAutoRemove())
	if out != "kept\n0\n" {
		t.Errorf("committed image: %q, want /kept and an empty /data", out)
	}
}

// BenchmarkRunVolumes is BenchmarkRunTrue with one named volume and one
// bind mount. Target: at most 2 ms more than BenchmarkRunTrue.
func BenchmarkRunVolumes(b *testing.B) {
	benchRun(b, berth.WithMounts(
		berth.Mount{Type: berth.MountVolume, Source: "bench", Target: "/data"},
		berth.Mount{Type: berth.MountBind, Source: b.TempDir(), Target: "/host"},
	))
}

// BenchmarkVolumeSeed is the first mount of a new volume at a path where
// the image holds 10,000 small files: run `true` with -v NEW:/data. Target:
// under half of docker's time for the same.
func BenchmarkVolumeSeed(b *testing.B) {
	berthtest.Skip(b)
	rt := berthtest.NewRuntime(b)
	berthtest.Busybox(b, rt, "busybox")
	ctx := context.Background()
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "mkdir /data && cd /data && for d in $(seq 100); do mkdir $d; for f in $(seq 100); do echo $d.$f > $d/$f; done; done"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Commit(ctx, berth.WithCommitTag("files")); err != nil {
		b.Fatal(err)
	}
	c.Remove(ctx)
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("seed%d", i)
		start := time.Now()
		c, err := rt.Run(ctx, "files", &berth.Process{Args: []string{"true"}}, berth.WithAutoRemove(),
			berth.WithMounts(berth.Mount{Type: berth.MountVolume, Source: name, Target: "/data"}))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		b.StopTimer()
		if v, err := rt.Volume(ctx, name); err == nil {
			v.Remove(ctx)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportMedian(b, times)
}

var _ = syscall.Getpid
