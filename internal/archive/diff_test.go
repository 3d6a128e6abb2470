package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// overlayFixture is a lower tree, the upper directory of a container that
// changed it through a real overlay mount, and the merged view as it was
// before unmounting.
type overlayFixture struct {
	lower, upper string
	merged       map[string]node
}

func newOverlayFixture(t *testing.T) *overlayFixture {
	t.Helper()
	requireRoot(t)
	f := &overlayFixture{lower: t.TempDir(), upper: t.TempDir()}
	work, mnt := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(root, rel, content string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(content), mode))
		must(os.Chmod(p, mode))
	}
	l := f.lower
	write(l, "keep.txt", "keep", 0o644)
	write(l, "del.txt", "delete me", 0o644)
	write(l, "d/old1", "old1", 0o644)
	write(l, "d/sub/old2", "old2", 0o644)
	write(l, "r/x", "x", 0o644)
	write(l, "mod.txt", "old content", 0o644)
	write(l, "chmod.txt", "chmod", 0o644)
	write(l, "deep/a/b/c.txt", "c", 0o644)
	write(l, "deep/a/b/stay.txt", "stay", 0o644)
	write(l, "mv-from.txt", "moved", 0o644)
	write(l, "lowerlink.txt", "linked after copy-up", 0o644)
	must(os.Symlink("keep.txt", filepath.Join(l, "lsym")))

	mountOverlay(t, mnt, "lowerdir="+f.lower+",upperdir="+f.upper+",workdir="+work)
	m := func(rel string) string { return filepath.Join(mnt, rel) }
	must(os.Remove(m("del.txt")))
	must(os.RemoveAll(m("d")))
	must(os.Mkdir(m("d"), 0o755))
	write(mnt, "d/new", "new in opaque dir", 0o644)
	must(os.RemoveAll(m("r")))
	must(os.Symlink("keep.txt", m("r")))
	write(mnt, "h1", "hardlinked", 0o644)
	must(os.Link(m("h1"), m("h2")))
	must(os.Link(m("lowerlink.txt"), m("lowerlink2.txt")))
	must(os.Mkdir(m("dev"), 0o755))
	must(unix.Mknod(m("dev/mydev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 7))))
	must(unix.Mknod(m("dev/blk"), unix.S_IFBLK|0o640, int(unix.Mkdev(7, 3))))
	must(unix.Mkfifo(m("fifo"), 0o600))
	write(mnt, "x.txt", "with xattr", 0o644)
	must(unix.Setxattr(m("x.txt"), "user.foo", []byte("bar"), 0))
	must(os.Mkdir(m("xd"), 0o755))
	must(unix.Setxattr(m("xd"), "user.dirattr", []byte("on a dir"), 0))
	write(mnt, "suid", "setuid", 0o755)
	must(os.Lchown(m("suid"), 1000, 1000))
	must(os.Chmod(m("suid"), 0o4755|os.ModeSetuid))
	must(unix.Chmod(m("suid"), 0o4755))
	write(mnt, "mod.txt", "new content", 0o644)
	must(os.Chmod(m("chmod.txt"), 0o600))
	must(os.Remove(m("deep/a/b/c.txt")))
	must(os.Rename(m("mv-from.txt"), m("mv-to.txt")))
	must(os.Symlink("/etc/passwd", m("abs")))
	must(os.Mkdir(m("priv"), 0o700))
	must(os.Lchown(m("priv"), 1000, 1000))
	must(os.Lchown(m("lsym"), 1000, 1000))
	write(mnt, "large", strings.Repeat("0123456789abcdef", 1<<16), 0o644)
	// A little sleep-free mtime variety: one file from the past.
	past := time.Unix(1_500_000_000, 0)
	must(os.Chtimes(m("keep.txt"), past, past))

	f.merged = snapshot(t, mnt)
	must(unix.Unmount(mnt, 0))
	return f
}

// ignoreForRoundTrip drops what a layer does not carry: the root
// directory's metadata and sub-second mtimes.
func ignoreForRoundTrip(p string, n *node) {
	if p == "." {
		*n = node{Type: n.Type}
		return
	}
	n.Mtime = n.Mtime / 1e9 * 1e9
}

func TestWriteOverlayDiffRoundTrip(t *testing.T) {
	f := newOverlayFixture(t)
	ctx := context.Background()
	var diff bytes.Buffer
	diffID, size, err := WriteOverlayDiff(ctx, f.upper, &diff, DiffOptions{})
	if err != nil {
		t.Fatalf("WriteOverlayDiff: %v", err)
	}
	sum := sha256.Sum256(diff.Bytes())
	if want := "sha256:" + hex.EncodeToString(sum[:]); diffID != want || size != int64(diff.Len()) {
		t.Errorf("WriteOverlayDiff = %s, %d; want %s, %d", diffID, size, want, diff.Len())
	}
	names := tarNames(t, diff.Bytes())
	for _, want := range []string{".wh.del.txt", "d/", "d/.wh..wh..opq", "d/new", "deep/a/b/.wh.c.txt", ".wh.mv-from.txt", "r"} {
		if !slices.Contains(names, want) {
			t.Errorf("diff lacks %q; has %q", want, names)
		}
	}
	if bytes.Contains(diff.Bytes(), []byte("trusted.overlay")) {
		t.Errorf("diff carries trusted.overlay xattrs")
	}

	t.Run("flat", func(t *testing.T) {
		// The lower copy goes through WriteTree and Apply too.
		var base bytes.Buffer
		if _, _, err := WriteTree(ctx, f.lower, &base, DiffOptions{}); err != nil {
			t.Fatalf("WriteTree: %v", err)
		}
		dst := t.TempDir()
		apply(t, dst, base.Bytes(), ApplyOptions{})
		apply(t, dst, diff.Bytes(), ApplyOptions{})
		if d := diffTrees(f.merged, snapshot(t, dst), ignoreForRoundTrip); d != "" {
			t.Errorf("flat apply of lower + diff differs from the merged view (-merged +applied):\n%s", d)
		}
	})
	t.Run("overlay", func(t *testing.T) {
		layer, mnt := t.TempDir(), t.TempDir()
		apply(t, layer, diff.Bytes(), ApplyOptions{Overlay: true})
		mountOverlay(t, mnt, "lowerdir="+layer+":"+f.lower)
		if d := diffTrees(f.merged, snapshot(t, mnt), ignoreForRoundTrip); d != "" {
			t.Errorf("overlay of lower and the applied diff differs from the merged view (-merged +applied):\n%s", d)
		}
	})
}

func TestWriteOverlayDiffDeterministic(t *testing.T) {
	f := newOverlayFixture(t)
	var a, b bytes.Buffer
	idA, _, err := WriteOverlayDiff(context.Background(), f.upper, &a, DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	idB, _, err := WriteOverlayDiff(context.Background(), f.upper, &b, DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if idA != idB || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two diffs of the same upper differ: %s vs %s", idA, idB)
	}
	// Depth first with sorted siblings: a parent precedes its children.
	names := tarNames(t, a.Bytes())
	seen := make(map[string]bool)
	for _, n := range names {
		if parent := filepath.Dir(strings.TrimSuffix(n, "/")); parent != "." && !seen[parent+"/"] {
			t.Errorf("%q comes before its parent directory", n)
		}
		seen[n] = true
	}
}

func TestWriteOverlayDiffSourceDateEpoch(t *testing.T) {
	f := newOverlayFixture(t)
	epoch := time.Unix(1_000_000, 500)
	var buf bytes.Buffer
	if _, _, err := WriteOverlayDiff(context.Background(), f.upper, &buf, DiffOptions{SourceDateEpoch: &epoch}); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(time.Unix(1_000_000, 0)) {
			t.Errorf("%s: mtime %v, want clamped to %v", h.Name, h.ModTime, epoch)
		}
	}
}

func TestWriteTreeKeepsDevices(t *testing.T) {
	f := newOverlayFixture(t)
	var buf bytes.Buffer
	if _, _, err := WriteTree(context.Background(), f.upper, &buf, DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, buf.Bytes())
	if !slices.Contains(names, "del.txt") || slices.Contains(names, ".wh.del.txt") || slices.Contains(names, "d/.wh..wh..opq") {
		t.Errorf("WriteTree translated whiteouts: %q", names)
	}
}

func TestWriteOverlayDiffRefusesRedirect(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	if err := os.Mkdir(filepath.Join(upper, "moved"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0); err != nil {
		t.Fatal(err)
	}
	_, _, err := WriteOverlayDiff(context.Background(), upper, io.Discard, DiffOptions{})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("WriteOverlayDiff of a redirect dir = %v, want ErrUnsupported", err)
	}
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestWriteTreeRefusesDeepNesting: a tree nested past pathMax (a process
// in a container can make one without end) fails with ErrPathTooLong
// instead of holding a directory fd per level until the program runs out.
func TestWriteTreeRefusesDeepNesting(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range pathMax/2 + 2 { // "d/" per level
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	_, _, err = WriteTree(context.Background(), dir, io.Discard, DiffOptions{})
	if !errors.Is(err, ErrPathTooLong) {
		t.Fatalf("WriteTree of a tree %d levels deep: %v, want ErrPathTooLong", pathMax/2+2, err)
	}
}
