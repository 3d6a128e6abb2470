package initproc

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// overlayOf mounts a read-only overlay of the lower directories (topmost
// first), as a container's root is made, and returns its path.
func overlayOf(t testing.TB, lowers ...string) string {
	t.Helper()
	mnt := t.TempDir()
	if len(lowers) == 1 {
		lowers = append(lowers, t.TempDir()) // overlayfs wants two
	}
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
		t.Fatalf("mounting an overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// seedLayers builds two image layers whose merged /data holds every kind of
// entry copy-up must keep: owners, setuid and odd modes, file
// capabilities and other xattrs, hard links (also to a file outside /data),
// symlinks (absolute, relative, dangling, owned), a fifo, a device, an
// unwritable directory with content, a setgid directory, a file larger than
// the copy buffer, and set times on everything.
func seedLayers(t testing.TB) (lowers []string) {
	t.Helper()
	base, top := t.TempDir(), t.TempDir()
	mk := func(root, p string) string {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(full, 0o755); err != nil {
			t.Fatal(err)
		}
		return full
	}
	write := func(p string, data []byte, uid, gid int, mode uint32) {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		must(t, os.Lchown(p, uid, gid))
		must(t, unix.Chmod(p, mode))
	}
	d := mk(base, "data/fromBase")
	write(filepath.Join(d, "kept"), []byte("base layer\n"), 0, 0, 0o644)

	data := mk(top, "data")
	write(filepath.Join(data, "plain"), []byte("hello\n"), 1234, 5678, 0o640)
	write(filepath.Join(data, "empty"), nil, 0, 0, 0o000)
	write(filepath.Join(data, "suid"), []byte("#!/bin/sh\n"), 0, 0, 0o4755)
	write(filepath.Join(data, "sgid-owned"), []byte("x"), 7, 8, 0o2711)
	big := make([]byte, 300<<10+17)
	rand.Read(big)
	write(filepath.Join(data, "big"), big, 0, 0, 0o644)

	// File capabilities (cap_net_raw, effective) and a user xattr.
	capv := make([]byte, 20)
	binary.LittleEndian.PutUint32(capv[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(capv[4:], 1<<13)
	write(filepath.Join(data, "ping"), []byte("elf"), 0, 0, 0o755)
	must(t, unix.Setxattr(filepath.Join(data, "ping"), "security.capability", capv, 0))
	must(t, unix.Setxattr(filepath.Join(data, "plain"), "user.note", []byte("a note"), 0))

	// Hard links: three names across two directories, a pair in one, and
	// one whose other name is outside /data.
	a, b := mk(top, "data/a"), mk(top, "data/b")
	write(filepath.Join(a, "h1"), []byte("linked three times\n"), 42, 43, 0o4750)
	must(t, os.Link(filepath.Join(a, "h1"), filepath.Join(b, "h2")))
	must(t, os.Link(filepath.Join(a, "h1"), filepath.Join(b, "h3")))
	write(filepath.Join(a, "p1"), []byte("pair\n"), 0, 0, 0o644)
	must(t, os.Link(filepath.Join(a, "p1"), filepath.Join(a, "p2")))
	write(filepath.Join(top, "outside"), []byte("outside /data\n"), 0, 0, 0o644)
	must(t, os.Link(filepath.Join(top, "outside"), filepath.Join(data, "inside")))

	must(t, os.Symlink("/etc/passwd", filepath.Join(data, "abs")))
	must(t, os.Symlink("../plain", filepath.Join(a, "rel")))
	must(t, os.Symlink("nowhere/at/all", filepath.Join(data, "dangling")))
	must(t, os.Lchown(filepath.Join(data, "abs"), 7, 8))
	must(t, unix.Lsetxattr(filepath.Join(data, "abs"), "trusted.berth", []byte("on a symlink"), 0))
	must(t, unix.Mkfifo(filepath.Join(data, "fifo"), 0o620))
	must(t, unix.Mknod(filepath.Join(data, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))

	locked := mk(top, "data/locked/inner")
	write(filepath.Join(locked, "f"), []byte("in an unwritable dir\n"), 0, 0, 0o444)
	must(t, os.Chmod(locked, 0o500))
	must(t, os.Chmod(filepath.Dir(locked), 0o000))
	sg := mk(top, "data/sgid")
	must(t, os.Chown(sg, 0, 99))
	must(t, unix.Chmod(sg, 0o2775))
	write(filepath.Join(sg, "f"), []byte("g"), 5, 6, 0o664)
	deep := mk(top, "data/"+strings.Repeat("d/", 40))
	write(filepath.Join(deep, "leaf"), []byte("deep\n"), 0, 0, 0o644)
	must(t, unix.Setxattr(filepath.Join(data, "a"), "user.dir", []byte("on a directory"), 0))
	must(t, os.Chown(data, 9, 9))
	must(t, os.Chmod(data, 0o750))

	// Times last, deepest first, so that nothing made later touches them.
	var paths []string
	for _, root := range []string{base, top} {
		filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
			if err == nil {
				paths = append(paths, p)
			}
			return err
		})
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		ts := []unix.Timespec{
			unix.NsecToTimespec(time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).UnixNano() + int64(i)*1e6 + 7),
			unix.NsecToTimespec(time.Date(2009, 2, 3, 4, 5, 6, 0, time.UTC).UnixNano() + int64(i)*1e9 + 123456789),
		}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	return []string{top, base}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// treeEntry is what copy-up must keep of one path.
type treeEntry struct {
	Mode, Uid, Gid uint32
	Rdev           uint64
	Mtime          int64
	Content        string // regular files: the bytes; symlinks: the target
	Xattrs         string
	Link           int // regular files: the index of the first path of its inode
}

// readTree describes every path under dir, hard links as indexes into the
// sorted paths, so that two trees compare with ==.
func readTree(t testing.TB, dir string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	inodes := map[uint64]int{}
	var paths []string
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		return nil
	})
	sort.Strings(paths)
	for i, p := range paths {
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		e := treeEntry{Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Rdev: st.Rdev, Mtime: st.Mtim.Nano(), Xattrs: xattrsOf(t, p)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			must(t, err)
			e.Content = string(b)
			if _, ok := inodes[st.Ino]; !ok {
				inodes[st.Ino] = i
			}
			e.Link = inodes[st.Ino]
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			must(t, err)
			e.Content = target
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = e
	}
	return out
}

func xattrsOf(t testing.TB, p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listing xattrs of %s: %v", p, err)
	}
	names := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var s []string
	for _, name := range names {
		if name == "" {
			continue
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		must(t, err)
		s = append(s, fmt.Sprintf("%s=%q", name, v[:m]))
	}
	return strings.Join(s, " ")
}

// TestSeedVolumeKeepsEverything copies /data of an overlay root into a
// volume directory, with one worker and with several, and compares the
// trees: types, owners, modes (setuid, setgid, sticky), times, content,
// symlink targets, device numbers, xattrs and hard links.
func TestSeedVolumeKeepsEverything(t *testing.T) {
	needRoot(t)
	root := overlayOf(t, seedLayers(t)...)
	want := readTree(t, filepath.Join(root, "data"))
	if want["a/h1"].Link != want["b/h2"].Link || want["a/p1"].Link != want["a/p2"].Link || !strings.Contains(want["ping"].Xattrs, "security.capability") {
		t.Fatalf("the overlay does not show the test's links and capabilities: %+v", want)
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(rootFd)
	for _, workers := range []int{1, 8} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			vol := filepath.Join(t.TempDir(), "_data")
			must(t, os.Mkdir(vol, 0o755))
			fdsBefore := openFds(t)
			if err := seedWithWorkers(rootFd, Mount{Source: vol, Destination: "/data", SeedLock: vol + ".lock"}, workers); err != nil {
				t.Fatal(err)
			}
			if n := openFds(t); n != fdsBefore {
				t.Errorf("%d fds open after seeding, %d before", n, fdsBefore)
			}
			got := readTree(t, vol)
			for p, w := range want {
				if g, ok := got[p]; !ok {
					t.Errorf("%s: missing in the volume", p)
				} else if g != w {
					t.Errorf("%s:\n image  %+v\n volume %+v", p, w, g)
				}
			}
			for p := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: in the volume, not in the image", p)
				}
			}
			var st unix.Stat_t
			must(t, unix.Stat(filepath.Join(vol, "inside"), &st))
			if st.Nlink != 1 {
				t.Errorf("a file whose other link is outside /data has %d links in the volume, want 1", st.Nlink)
			}
			// A second seed of the same (now full) volume changes nothing.
			must(t, os.WriteFile(filepath.Join(vol, "plain"), []byte("changed"), 0o644))
			must(t, seedWithWorkers(rootFd, Mount{Source: vol, Destination: "/data"}, workers))
			if b, _ := os.ReadFile(filepath.Join(vol, "plain")); string(b) != "changed" {
				t.Errorf("a volume with content was seeded again: plain = %q", b)
			}
		})
	}
}

// seedWithWorkers is seedVolume with a given number of workers.
func seedWithWorkers(root int, m Mount, workers int) error {
	dst, err := unix.Open(m.Source, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dst)
	if empty, err := dirEmpty(dst); err != nil || !empty {
		return err
	}
	src, err := openIn(root, m.Destination, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	return copyTree(src, dst, workers)
}

func openFds(t testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(entries)
}

// TestSeedVolumeFailureClosesFds makes a copy fail half-way (a name in
// the volume collides with one of the image's directories) and checks
// that the error names the path and that no fd stays open.
func TestSeedVolumeFailureClosesFds(t *testing.T) {
	needRoot(t)
	lower := t.TempDir()
	for i := range 20 {
		d := filepath.Join(lower, "data", fmt.Sprint(i))
		must(t, os.MkdirAll(d, 0o755))
		for j := range 20 {
			must(t, os.WriteFile(filepath.Join(d, fmt.Sprint(j)), []byte("x"), 0o644))
		}
	}
	root := overlayOf(t, lower)
	src, err := unix.Open(filepath.Join(root, "data"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(src)
	for _, workers := range []int{1, 4} {
		vol := t.TempDir()
		must(t, os.WriteFile(filepath.Join(vol, "7"), nil, 0o644)) // a file where a directory goes
		dst, err := unix.Open(vol, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		must(t, err)
		before := openFds(t)
		err = copyTree(src, dst, workers)
		if err == nil || !strings.HasPrefix(err.Error(), "7: ") {
			t.Errorf("workers=%d: copyTree = %v, want a failure on 7", workers, err)
		}
		if n := openFds(t); n != before {
			t.Errorf("workers=%d: %d fds open after a failed copy, %d before", workers, n, before)
		}
		unix.Close(dst)
		unix.Seek(src, 0, 0)
	}
}

// BenchmarkSeed10000 copies 100 directories of 100 small files from an
// overlay, the shape of scripts/bench's volume row, by worker count.
func BenchmarkSeed10000(b *testing.B) {
	needRoot(b)
	lower := b.TempDir()
	for i := range 100 {
		d := filepath.Join(lower, "data", fmt.Sprint(i))
		must(b, os.MkdirAll(d, 0o755))
		for j := range 100 {
			must(b, os.WriteFile(filepath.Join(d, fmt.Sprint(j)), []byte(fmt.Sprintf("%d.%d\n", i, j)), 0o644))
		}
	}
	root := overlayOf(b, lower)
	for _, workers := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			src, err := unix.Open(filepath.Join(root, "data"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			must(b, err)
			defer unix.Close(src)
			var times []time.Duration
			for range b.N {
				b.StopTimer()
				vol := filepath.Join(b.TempDir(), "v")
				must(b, os.Mkdir(vol, 0o755))
				dst, err := unix.Open(vol, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				must(b, err)
				unix.Seek(src, 0, 0)
				b.StartTimer()
				start := time.Now()
				must(b, copyTree(src, dst, workers))
				times = append(times, time.Since(start))
				b.StopTimer()
				unix.Close(dst)
				os.RemoveAll(vol)
				b.StartTimer()
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
		})
	}
}
