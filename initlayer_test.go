package berth_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// initImage imports a root of the host's busybox (/bin/busybox, /bin/sh)
// plus extra entries ("dir/", "name -> target", or a file's content).
func initImage(t *testing.T, rt *berth.Runtime, ref string, extra ...string) {
	t.Helper()
	bin, err := os.ReadFile(berthtest.BusyboxPath)
	if err != nil {
		t.Skipf("needs %s: %v", berthtest.BusyboxPath, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "busybox", Mode: 0o777})
	for i := 0; i+1 < len(extra); i += 2 {
		name, content := extra[i], extra[i+1]
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}
		switch {
		case strings.HasSuffix(name, "/"):
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case strings.HasPrefix(content, "-> "):
			h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, content[3:], 0, 0o777
		}
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(content))
		}
	}
	tw.Close()
	if _, err := rt.Import(context.Background(), &buf, ref); err != nil {
		t.Fatal(err)
	}
}

// upperEntries lists what a container's writable layer holds.
func upperEntries(t *testing.T, rt *berth.Runtime, c *berth.Container) []string {
	t.Helper()
	upper := filepath.Join(rt.Root(), "containers", c.ID, "upper")
	var out []string
	err := filepath.WalkDir(upper, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != upper {
			out = append(out, strings.TrimPrefix(p, upper))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInitLayer: the mount points a container needs (/proc, /dev, /sys,
// and the files its /etc/hosts, /etc/hostname and /etc/resolv.conf are
// bound on) are made once per image, in an init layer beside the image's
// top snapshot, not in every container's writable layer; they are made
// the way a container's start makes them, so image symlinks are followed
// only inside the root and refused at /proc.
func TestInitLayer(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	ctx := context.Background()
	run := func(image, script string) (*berth.Container, string, error) {
		t.Helper()
		var out bytes.Buffer
		c, err := rt.Run(ctx, image, &berth.Process{Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out},
			berth.WithNetworkMode("none"), berth.WithHostname("inside"))
		if err != nil {
			return nil, "", err
		}
		t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
		err = c.Wait(ctx)
		return c, out.String(), err
	}
	const probe = "busybox cat /etc/hostname && busybox grep -c inside /etc/hosts && busybox test -e /proc/self/status && busybox test -c /dev/null && busybox test -d /sys/kernel && echo ok"

	t.Run("bare image", func(t *testing.T) {
		initImage(t, rt, "bare") // no /etc, /proc, /dev or /sys at all
		for i := 0; i < 2; i++ {
			c, out, err := run("bare", probe)
			if err != nil || out != "inside\n1\nok\n" {
				t.Fatalf("container %d: %v, output %q", i, err, out)
			}
			if got := upperEntries(t, rt, c); len(got) != 0 {
				t.Errorf("container %d made %v in its writable layer", i, got)
			}
			changes, err := c.Diff(ctx)
			if err != nil || len(changes) != 0 {
				t.Errorf("Diff of a container that changed nothing: %v, %v", changes, err)
			}
		}
		img, err := rt.Image(ctx, "bare")
		if err != nil {
			t.Fatal(err)
		}
		init := initDir(t, rt, img)
		for _, p := range []string{"proc", "dev", "sys", "etc/hosts", "etc/hostname", "etc/resolv.conf"} {
			if _, err := os.Lstat(filepath.Join(init, p)); err != nil {
				t.Errorf("the init layer lacks %s: %v", p, err)
			}
		}
	})

	t.Run("strict umask, another user", func(t *testing.T) {
		// The layer is made with the modes a container's start uses,
		// whatever the umask of the program that happened to make it,
		// and every user of every later container can read /etc.
		initImage(t, rt, "umask")
		old := syscall.Umask(0o077)
		_, out, err := run("umask", "true")
		syscall.Umask(old)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var buf bytes.Buffer
		c, err := rt.Run(ctx, "umask", &berth.Process{Args: []string{"sh", "-c", "busybox cat /etc/hostname /etc/hosts >/dev/null && echo read"}, User: "1000", Stdout: &buf, Stderr: &buf},
			berth.WithNetworkMode("none"), berth.WithAutoRemove())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(ctx); err != nil || buf.String() != "read\n" {
			t.Fatalf("uid 1000 reading /etc: %v, %q", err, buf.String())
		}
		img, _ := rt.Image(ctx, "umask")
		for p, want := range map[string]os.FileMode{"etc": 0o755 | os.ModeDir, "etc/hosts": 0o644, "proc": 0o755 | os.ModeDir} {
			st, err := os.Lstat(filepath.Join(initDir(t, rt, img), p))
			if err != nil || st.Mode() != want {
				t.Errorf("init layer %s: %v, %v; want mode %v", p, st.Mode(), err, want)
			}
		}
	})

	t.Run("two programs at once", func(t *testing.T) {
		// Two Runtimes on one root start the first containers of an image
		// together: both run, one layer is kept, no temp is left.
		initImage(t, rt, "race")
		other, err := berth.New(rt.Root())
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rt
				if i%2 == 1 {
					r = other
				}
				c, err := r.Run(ctx, "race", &berth.Process{Args: []string{"sh", "-c", "busybox test -f /etc/hosts"}},
					berth.WithNetworkMode("none"), berth.WithAutoRemove())
				if err == nil {
					err = c.Wait(ctx)
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("container %d: %v", i, err)
			}
		}
		img, _ := rt.Image(ctx, "race")
		initDir(t, rt, img)
		tmp, _ := os.ReadDir(filepath.Join(rt.Root(), "snapshots", ".tmp"))
		for _, e := range tmp {
			if !strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left in snapshots/.tmp: %s", e.Name())
			}
		}
	})

	t.Run("etc is a symlink", func(t *testing.T) {
		// /etc -> usr/etc: the files are made where the link leads, inside
		// the root, as a container's start makes them.
		initImage(t, rt, "etclink", "usr/", "", "usr/etc/", "", "etc", "-> usr/etc", "proc/", "", "dev/", "", "sys/", "")
		c, out, err := run("etclink", probe)
		if err != nil || out != "inside\n1\nok\n" {
			t.Fatalf("%v, output %q", err, out)
		}
		if got := upperEntries(t, rt, c); len(got) != 0 {
			t.Errorf("the container made %v in its writable layer", got)
		}
		img, _ := rt.Image(ctx, "etclink")
		if _, err := os.Lstat(filepath.Join(initDir(t, rt, img), "usr/etc/hosts")); err != nil {
			t.Errorf("the init layer lacks usr/etc/hosts: %v", err)
		}
	})

	t.Run("proc is a symlink", func(t *testing.T) {
		// Refused, as without an init layer: proc must be mounted on a
		// real directory, and the init layer must not hide the link.
		initImage(t, rt, "proclink", "proc", "-> /")
		_, out, err := run("proclink", "echo started")
		if err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Fatalf("Run of an image whose /proc is a symlink: %v (output %q), want a refusal naming the symlink", err, out)
		}
		img, _ := rt.Image(ctx, "proclink")
		if _, err := os.Lstat(filepath.Join(initDir(t, rt, img), "proc")); !os.IsNotExist(err) {
			t.Errorf("the init layer has a proc over the image's symlink: %v", err)
		}
	})
}

// initDir is the init layer of img, which must exist.
func initDir(t *testing.T, rt *berth.Runtime, img *berth.Image) string {
	t.Helper()
	top := img.Layers[len(img.Layers)-1].ChainID
	dir := filepath.Join(rt.Root(), "snapshots", strings.TrimPrefix(top, "sha256:"), "init")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("no init layer for %s: %v", img.ID, err)
	}
	return dir
}

// TestInitLayerDeepImage: an image whose layers fill the one page of
// overlay options but for the init layer's path starts without it.
func TestInitLayerDeepImage(t *testing.T) {
	berthtest.Skip(t)
	rt := berthtest.NewRuntime(t)
	ctx := context.Background()
	// The options: lowerdir=L1:...:Ln,upperdir=U,workdir=W,redirect_dir=off,metacopy=off,
	// each L .../snapshots/<64 hex>/fs, the init layer's path two bytes longer.
	layer := len(rt.Root()) + len("/snapshots/") + 64 + len("/fs")
	ctr := len(rt.Root()) + len("/containers/") + 64
	fixed := len("lowerdir=") + len(",upperdir=") + ctr + len("/upper") + len(",workdir=") + ctr + len("/work") + len(",redirect_dir=off,metacopy=off")
	n := (os.Getpagesize() - 1 - fixed + 1) / (layer + 1) // the most layers that fit
	if fixed+n*(layer+1)-1+layer+3 < os.Getpagesize() {
		t.Fatalf("with %d layers the init layer would still fit: the arithmetic is wrong", n)
	}
	base, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(berthtest.BusyboxTar(t))), nil })
	if err != nil {
		t.Fatal(err)
	}
	layers := []v1.Layer{base}
	for i := 1; i < n; i++ {
		layers = append(layers, static.NewLayer(tarOf(t, fmt.Sprintf("layer%d", i), "x"), types.DockerLayer))
	}
	img, err := mutate.AppendLayers(emptyImage(), layers...)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	ref, _ := name.ParseReference("deep:latest")
	if err := tarball.Write(ref, img, &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Load(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	c, err := rt.Run(ctx, "deep", &berth.Process{Args: []string{"sh", "-c", "busybox test -f /etc/hosts && busybox test -f /layer" + fmt.Sprint(n-1)}},
		berth.WithNetworkMode("none"), berth.WithAutoRemove())
	if err != nil {
		t.Fatalf("Run of a %d-layer image: %v", n, err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("a %d-layer image: %v", n, err)
	}
}
