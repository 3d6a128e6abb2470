// Package berthtest provides helpers for tests that use berth, the way
// net/http/httptest does for net/http: a throwaway runtime, a busybox image
// made from the host's static busybox with no network, and a real image
// registry on 127.0.0.1.
package berthtest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth"
)

// BusyboxPath is where Debian's busybox-static package installs busybox.
const BusyboxPath = "/bin/busybox"

// Applets are the busybox commands BusyboxTar links into /bin.
var Applets = []string{
	"sh", "ash", "cat", "echo", "ls", "id", "hostname", "sleep", "true", "false", "env", "mkdir", "rm",
	"touch", "ln", "mount", "ps", "kill", "grep", "wc", "head", "tail", "dd", "sha256sum", "stat", "chmod",
	"chown", "mknod", "readlink", "wget", "nc", "nslookup", "ping", "ip", "httpd", "top", "test", "[", "tr",
	"cp", "mv", "find", "sed", "seq", "yes", "du", "df", "uname", "whoami", "pwd", "date", "printf", "xargs",
	"setfattr", "getfattr", "tee", "sort", "uniq", "cut", "awk", "vi", "less", "more", "timeout", "usleep",
}

// Skip skips the test unless it runs as root, naming why: berth's
// runtime needs root for mounts, namespaces and cgroups.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("berth needs root (mounts, namespaces, cgroups); run the tests as root")
	}
}

// NewRuntime opens a runtime on a fresh root under t.TempDir() and, when
// the test ends, removes every container of the root, detached ones too
// (Close leaves those running, and the root goes with the test's temp
// dir), then closes it.
func NewRuntime(t testing.TB, opts ...berth.Option) *berth.Runtime {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	rt, err := berth.New(root, opts...)
	if err != nil {
		t.Fatalf("berth.New: %v", err)
	}
	t.Cleanup(func() {
		// The root goes before the test's temporary directory does: a
		// monitor still finishing a container the loop below removed can
		// write in it meanwhile (a lock file), which fails the testing
		// package's single RemoveAll ("directory not empty"); a retry
		// after a moment finds it done.
		defer func() {
			for try := 0; try < 20; try++ {
				if err := os.RemoveAll(root); err == nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if list, err := rt.Containers(ctx, berth.WithAll()); err == nil {
			for _, info := range list {
				if c, err := rt.Container(ctx, info.ID); err == nil {
					c.Remove(ctx, berth.WithForce(), berth.WithRemoveVolumes())
				}
			}
		}
		rt.Close()
	})
	return rt
}

// BusyboxTar returns a root filesystem tar holding the host's static
// busybox at /bin/busybox, its applets as symlinks in /bin, and minimal
// /etc/passwd, /etc/group and directories. It skips the test when
// busybox-static is not installed.
func BusyboxTar(t testing.TB) []byte {
	t.Helper()
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Skipf("needs %s from Debian's busybox-static package: %v", BusyboxPath, err)
	}
	b, err := busyboxTar(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func busyboxTar(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime})
	}
	file := func(name string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"bin", "etc", "root", "tmp", "home", "var", "usr", "usr/bin", "proc", "sys", "dev"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if d == "root" {
			mode = 0o700
		}
		if err := dir(d, mode); err != nil {
			return nil, err
		}
	}
	if err := file("bin/busybox", 0o755, bin); err != nil {
		return nil, err
	}
	for _, a := range Applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
	group := "root:x:0:\ndaemon:x:1:\ntty:x:5:\nstaff:x:50:user\nuser:x:1000:\nnogroup:x:65534:\n"
	if err := file("etc/passwd", 0o644, []byte(passwd)); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, []byte(group)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Busybox imports the busybox root filesystem as ref (for example
// "busybox:latest") into rt and returns the image.
func Busybox(t testing.TB, rt *berth.Runtime, ref string) *berth.Image {
	t.Helper()
	img, err := rt.Import(context.Background(), bytes.NewReader(BusyboxTar(t)), ref)
	if err != nil {
		t.Fatalf("importing busybox: %v", err)
	}
	return img
}

// WriteBusyboxTar writes the busybox root filesystem tar to w. It is
// BusyboxTar for programs that are not tests.
func WriteBusyboxTar(w io.Writer) error {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("reading %s (install Debian's busybox-static): %w", BusyboxPath, err)
	}
	b, err := busyboxTar(bin)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// WriteFiles writes files (slash-separated name → content, directories
// made as the names need) into a new temporary directory, removed when
// the test ends, and returns it: a build context, for example.
func WriteFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
