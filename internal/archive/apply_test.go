package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips tests that need privileges Apply uses: mknod, chown to
// other users and trusted.* xattrs.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: applying layers creates device nodes (CAP_MKNOD), chowns to other users (CAP_CHOWN) and sets trusted.overlay.* xattrs (CAP_SYS_ADMIN)")
	}
}

// ent is one tar entry of a test layer.
type ent struct {
	hdr  tar.Header
	body string
}

var (
	t1 = time.Unix(1_600_000_000, 123_456_789)
	t2 = time.Unix(1_700_000_000, 987_654_321)
)

func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: t1}}
}

func file(name, body string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: t2}, body: body}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: t1}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func whiteout(name string) ent { return file(name, "", 0o644) }

// mkTar builds a tar from entries. PAX format keeps nanosecond mtimes.
func mkTar(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("writing body %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(t testing.TB, dst string, data []byte, opts ApplyOptions) {
	t.Helper()
	if _, err := Apply(context.Background(), dst, bytes.NewReader(data), opts); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// node is what the tests compare of one file in a tree.
type node struct {
	Type    string
	Mode    uint32 // permission bits with setuid, setgid, sticky
	UID     uint32
	GID     uint32
	Content string // sha256 of a regular file's content
	Target  string // of a symlink
	Rdev    uint64
	Xattrs  string // sorted k=v, without overlay and security ones
	Mtime   int64  // nanoseconds
	Links   string // other names of the same inode, for hardlink identity
}

func (n node) String() string {
	s := fmt.Sprintf("%s %04o %d:%d", n.Type, n.Mode, n.UID, n.GID)
	if n.Content != "" {
		s += " sha=" + n.Content[:12]
	}
	if n.Target != "" {
		s += " ->" + n.Target
	}
	if n.Rdev != 0 {
		s += fmt.Sprintf(" dev=%d:%d", unix.Major(n.Rdev), unix.Minor(n.Rdev))
	}
	if n.Xattrs != "" {
		s += " xattrs=" + n.Xattrs
	}
	if n.Links != "" {
		s += " links=" + n.Links
	}
	return s + fmt.Sprintf(" mtime=%d", n.Mtime)
}

// snapshot walks root without following symlinks and records every node
// by its path relative to root ("." for root itself).
func snapshot(t testing.TB, root string) map[string]node {
	t.Helper()
	out := make(map[string]node)
	inodes := make(map[uint64][]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{
			Mode:  st.Mode & 0o7777,
			UID:   st.Uid,
			GID:   st.Gid,
			Mtime: st.Mtim.Nano(),
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.Type = "dir"
		case unix.S_IFREG:
			n.Type = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			n.Content = hex.EncodeToString(sum[:])
		case unix.S_IFLNK:
			n.Type = "symlink"
			n.Mode = 0
			n.Target, _ = os.Readlink(p)
		case unix.S_IFCHR:
			n.Type, n.Rdev = "char", st.Rdev
		case unix.S_IFBLK:
			n.Type, n.Rdev = "block", st.Rdev
		case unix.S_IFIFO:
			n.Type = "fifo"
		default:
			n.Type = "other"
		}
		n.Xattrs = xattrString(t, p)
		if n.Type != "dir" && st.Nlink > 1 {
			inodes[st.Ino] = append(inodes[st.Ino], rel)
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", root, err)
	}
	for _, names := range inodes {
		for _, name := range names {
			n := out[name]
			n.Links = strings.Join(slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == name }), ",")
			out[name] = n
		}
	}
	return out
}

func xattrString(t testing.TB, p string) string {
	xs, err := pathXattrs(p)
	if err != nil {
		t.Fatalf("xattrs of %s: %v", p, err)
	}
	var kv []string
	for k, v := range xs {
		if strings.HasPrefix(k, "security.") {
			continue
		}
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// diffTrees returns the differences as "(-want +got)" lines.
func diffTrees(want, got map[string]node, ignore func(path string, n *node)) string {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		w, wok := want[k]
		g, gok := got[k]
		if ignore != nil {
			ignore(k, &w)
			ignore(k, &g)
		}
		switch {
		case !wok:
			fmt.Fprintf(&b, "+%s: %v\n", k, g)
		case !gok:
			fmt.Fprintf(&b, "-%s: %v\n", k, w)
		case w != g:
			fmt.Fprintf(&b, "-%s: %v\n+%s: %v\n", k, w, k, g)
		}
	}
	return b.String()
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestApplyContent(t *testing.T) {
	requireRoot(t)
	withXattr := file("data/x", "xattr", 0o640)
	withXattr.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.test":              "hello",
		"SCHILY.xattr.trusted.overlay.opaque": "y", // must be dropped
	}
	owned := file("home/u/owned", "mine", 0o600)
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1000
	ownedDir := dir("home/u/", 0o750)
	ownedDir.hdr.Uid, ownedDir.hdr.Gid = 1000, 1000
	suid := file("bin/su", "su", 0o4755)
	suid.hdr.Uid, suid.hdr.Gid = 1000, 1000
	sgidDir := dir("srv/", 0o2775)
	sgidDir.hdr.Uid, sgidDir.hdr.Gid = 1000, 1000
	null := ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t2}}
	sda := ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0, Gid: 6, ModTime: t2}}
	fifo := ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, ModTime: t2}}
	link := symlink("bin/sh", "busybox")
	link.hdr.Uid, link.hdr.Gid = 1000, 1000

	layer := mkTar(t,
		dir("./", 0o755),
		dir("bin/", 0o755),
		file("bin/busybox", "#!busybox", 0o755),
		link,
		hardlink("bin/ash", "bin/busybox"),
		suid,
		dir("dev/", 0o755), null, sda,
		dir("run/", 0o755), fifo,
		dir("data/", 0o700), withXattr,
		dir("home/", 0o755), ownedDir, owned,
		sgidDir,
		dir("tmp/", 0o1777),
		file("implicit/a/b", "parents made for me", 0o644),
		file("/abs/ok", "absolute names are confined", 0o644),
		file("./dot/ok", "", 0o644),
	)
	want := map[string]node{
		".":            {Type: "dir", Mode: 0o755, Mtime: t1.UnixNano()},
		"bin":          {Type: "dir", Mode: 0o755, Mtime: t1.UnixNano()},
		"bin/busybox":  {Type: "file", Mode: 0o755, Content: sha("#!busybox"), Mtime: t2.UnixNano(), Links: "bin/ash"},
		"bin/ash":      {Type: "file", Mode: 0o755, Content: sha("#!busybox"), Mtime: t2.UnixNano(), Links: "bin/busybox"},
		"bin/sh":       {Type: "symlink", UID: 1000, GID: 1000, Target: "busybox", Mtime: t1.UnixNano()},
		"bin/su":       {Type: "file", Mode: 0o4755, UID: 1000, GID: 1000, Content: sha("su"), Mtime: t2.UnixNano()},
		"dev":          {Type: "dir", Mode: 0o755, Mtime: t1.UnixNano()},
		"dev/null":     {Type: "char", Mode: 0o666, Rdev: unix.Mkdev(1, 3), Mtime: t2.UnixNano()},
		"dev/sda":      {Type: "block", Mode: 0o660, GID: 6, Rdev: unix.Mkdev(8, 0), Mtime: t2.UnixNano()},
		"run":          {Type: "dir", Mode: 0o755, Mtime: t1.UnixNano()},
		"run/fifo":     {Type: "fifo", Mode: 0o620, Mtime: t2.UnixNano()},
		"data":         {Type: "dir", Mode: 0o700, Mtime: t1.UnixNano()},
		"data/x":       {Type: "file", Mode: 0o640, Content: sha("xattr"), Xattrs: "user.test=hello", Mtime: t2.UnixNano()},
		"home":         {Type: "dir", Mode: 0o755, Mtime: t1.UnixNano()},
		"home/u":       {Type: "dir", Mode: 0o750, UID: 1000, GID: 1000, Mtime: t1.UnixNano()},
		"home/u/owned": {Type: "file", Mode: 0o600, UID: 1000, GID: 1000, Content: sha("mine"), Mtime: t2.UnixNano()},
		"srv":          {Type: "dir", Mode: 0o2775, UID: 1000, GID: 1000, Mtime: t1.UnixNano()},
		"tmp":          {Type: "dir", Mode: 0o1777, Mtime: t1.UnixNano()},
		"implicit":     {Type: "dir", Mode: 0o755},
		"implicit/a":   {Type: "dir", Mode: 0o755},
		"implicit/a/b": {Type: "file", Mode: 0o644, Content: sha("parents made for me"), Mtime: t2.UnixNano()},
		"abs":          {Type: "dir", Mode: 0o755},
		"abs/ok":       {Type: "file", Mode: 0o644, Content: sha("absolute names are confined"), Mtime: t2.UnixNano()},
		"dot":          {Type: "dir", Mode: 0o755},
		"dot/ok":       {Type: "file", Mode: 0o644, Content: sha(""), Mtime: t2.UnixNano()},
	}
	// Implicit parents get the time of their creation.
	ignoreImplicit := func(p string, n *node) {
		switch p {
		case "implicit", "implicit/a", "abs", "dot":
			n.Mtime = 0
		}
	}
	for _, overlay := range []bool{false, true} {
		t.Run(fmt.Sprintf("overlay=%v", overlay), func(t *testing.T) {
			dst := t.TempDir()
			stats, err := Apply(context.Background(), dst, bytes.NewReader(layer), ApplyOptions{Overlay: overlay})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if stats.Entries != 21 {
				t.Errorf("stats.Entries = %d, want 21", stats.Entries)
			}
			if want := int64(len("#!busybox") + len("su") + len("xattr") + len("mine") + len("parents made for me") + len("absolute names are confined")); stats.Bytes != want {
				t.Errorf("stats.Bytes = %d, want %d", stats.Bytes, want)
			}
			if d := diffTrees(want, snapshot(t, dst), ignoreImplicit); d != "" {
				t.Errorf("tree mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestApplyNoSameOwner(t *testing.T) {
	requireRoot(t)
	f := file("f", "x", 0o4755)
	f.hdr.Uid, f.hdr.Gid = 1000, 1000
	dst := t.TempDir()
	apply(t, dst, mkTar(t, f), ApplyOptions{NoSameOwner: true})
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Mode&0o7777 != 0o4755 {
		t.Errorf("f: uid %d mode %04o, want 0 and 04755", st.Uid, st.Mode&0o7777)
	}
}

func TestApplyReplace(t *testing.T) {
	requireRoot(t)
	dst := t.TempDir()
	apply(t, dst, mkTar(t,
		dir("d/", 0o755), file("d/f", "old", 0o644),
		file("x", "file", 0o644),
		dir("s/", 0o755), file("s/inner", "", 0o644),
		dir("keep/", 0o700), file("keep/child", "child", 0o644),
	), ApplyOptions{})
	apply(t, dst, mkTar(t,
		file("d/f", "new", 0o600), // file over file
		symlink("x", "d"),         // symlink over file
		file("s", "was a dir", 0o644),
		dir("keep/", 0o755), // dir over dir merges
	), ApplyOptions{})
	got := snapshot(t, dst)
	want := map[string]node{
		"d/f":        {Type: "file", Mode: 0o600, Content: sha("new")},
		"x":          {Type: "symlink", Target: "d"},
		"s":          {Type: "file", Mode: 0o644, Content: sha("was a dir")},
		"keep":       {Type: "dir", Mode: 0o755},
		"keep/child": {Type: "file", Mode: 0o644, Content: sha("child")},
	}
	for p, w := range want {
		g := got[p]
		g.Mtime, g.Links = 0, ""
		if g != w {
			t.Errorf("%s = %v, want %v", p, g, w)
		}
	}
	if _, ok := got["s/inner"]; ok {
		t.Errorf("s/inner survived its directory being replaced by a file")
	}
}

// baseLayer and whiteoutLayer exercise every whiteout rule of the OCI
// image-spec, including same-layer entries on both sides of a whiteout.
func baseLayer(t testing.TB) []byte {
	return mkTar(t,
		dir("a/", 0o755), file("a/f", "f", 0o644), file("a/g", "g", 0o644),
		dir("b/", 0o755), file("b/x", "x", 0o644), dir("b/y/", 0o755), file("b/y/z", "z", 0o644),
		file("c", "c", 0o644),
		dir("d/", 0o755), file("d/keep", "keep", 0o644), dir("d/sub/", 0o755), file("d/sub/deep", "", 0o644),
		dir("e/", 0o755), file("e/old", "old", 0o644), file("e/n", "lower n", 0o644),
		file("h", "lower h", 0o644),
		file("i", "lower i", 0o644),
		dir("j/", 0o755), file("j/old", "", 0o644),
		symlink("l", "a"),
	)
}

func whiteoutLayer(t testing.TB) []byte {
	return mkTar(t,
		whiteout(".wh.c"),             // file removed
		whiteout("a/.wh.f"),           // file in a dir removed
		whiteout("d/.wh.sub"),         // directory removed recursively
		whiteout("b/.wh..wh..opq"),    // opaque: lower x and y go
		file("b/new", "new", 0o644),   // ... and this stays
		file("e/n", "upper n", 0o644), // same layer, before the marker
		whiteout("e/.wh..wh..opq"),
		whiteout(".wh.h"), file("h", "upper h", 0o644), // whiteout then recreate
		file("i", "upper i", 0o644), whiteout(".wh.i"), // same-layer entry kept
		dir("j/", 0o700), whiteout(".wh.j"), // same-layer dir kept, lower content goes
		whiteout(".wh.l"),       // symlink removed, not followed
		whiteout(".wh.missing"), // nothing to remove
	)
}

func TestApplyWhiteoutsFlat(t *testing.T) {
	requireRoot(t)
	dst := t.TempDir()
	apply(t, dst, baseLayer(t), ApplyOptions{})
	apply(t, dst, whiteoutLayer(t), ApplyOptions{})
	got := snapshot(t, dst)
	want := map[string]string{
		".": "dir", "a": "dir", "a/g": "file:g",
		"b": "dir", "b/new": "file:new",
		"d": "dir", "d/keep": "file:keep",
		"e": "dir", "e/n": "file:upper n",
		"h": "file:upper h", "i": "file:upper i",
		"j": "dir",
	}
	checkShape(t, want, got)
	if got["j"].Mode != 0o700 {
		t.Errorf("j mode %04o, want 0700 from the upper layer", got["j"].Mode)
	}
}

// checkShape compares types and (for files) contents.
func checkShape(t *testing.T, want map[string]string, got map[string]node) {
	t.Helper()
	gotShape := make(map[string]string)
	for p, n := range got {
		s := n.Type
		if n.Type == "file" {
			s = "file:" + n.Content
		}
		gotShape[p] = s
	}
	for p, w := range want {
		if c, ok := strings.CutPrefix(w, "file:"); ok {
			want[p] = "file:" + sha(c)
		}
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range gotShape {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if want[k] != gotShape[k] {
			fmt.Fprintf(&b, "%s: -%q +%q\n", k, want[k], gotShape[k])
		}
	}
	if b.Len() > 0 {
		t.Errorf("tree mismatch (-want +got):\n%s", b.String())
	}
}

func TestApplyWhiteoutsOverlay(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	apply(t, lower, baseLayer(t), ApplyOptions{Overlay: true})
	upper := t.TempDir()
	apply(t, upper, whiteoutLayer(t), ApplyOptions{Overlay: true})

	got := snapshot(t, upper)
	wh := "char"
	want := map[string]string{
		".": "dir", "c": wh,
		"a": "dir", "a/f": wh,
		"d": "dir", "d/sub": wh,
		"b": "dir", "b/new": "file:new",
		"e": "dir", "e/n": "file:upper n",
		"h": "file:upper h", "i": "file:upper i",
		"j": "dir", "l": wh, "missing": wh,
	}
	checkShape(t, want, got)
	for p, n := range got {
		if n.Type == "char" && (n.Rdev != 0 || n.UID != 0 || n.GID != 0) {
			t.Errorf("%s: whiteout device %v, want 0:0 owned by 0:0", p, n)
		}
	}
	for _, p := range []string{"b", "e", "j"} {
		if got[p].Xattrs != "trusted.overlay.opaque=y" {
			t.Errorf("%s xattrs %q, want trusted.overlay.opaque=y", p, got[p].Xattrs)
		}
	}
	if got["a"].Xattrs != "" {
		t.Errorf("a xattrs %q, want none", got["a"].Xattrs)
	}

	// The two representations must agree: the overlay of the two layer
	// directories shows what flat mode produces.
	flat := t.TempDir()
	apply(t, flat, baseLayer(t), ApplyOptions{})
	apply(t, flat, whiteoutLayer(t), ApplyOptions{})
	merged := t.TempDir()
	mountOverlay(t, merged, "lowerdir="+upper+":"+lower)
	ignore := func(p string, n *node) {
		n.Mtime = 0
		if p == "." {
			*n = node{}
		}
	}
	if d := diffTrees(snapshot(t, flat), snapshot(t, merged), ignore); d != "" {
		t.Errorf("overlay of overlay-mode layers differs from flat apply (-flat +overlay):\n%s", d)
	}
}

// mountOverlay mounts an overlay at target and unmounts it at cleanup.
func mountOverlay(t testing.TB, target, opts string) {
	t.Helper()
	if err := unix.Mount("overlay", target, "overlay", 0, opts+",redirect_dir=off,metacopy=off,index=off"); err != nil {
		if err == unix.ENODEV || err == unix.ENOSYS {
			t.Skipf("overlayfs not available: %v", err)
		}
		t.Fatalf("mounting overlay %s: %v", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
}

func TestApplyCancel(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), bytes.NewReader(mkTar(t, file("f", "x", 0o644))), ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Fatalf("Apply with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestDecompress(t *testing.T) {
	layer := mkTar(t, file("f", "hello", 0o644))
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"plain", layer},
		{"gzip", gzipBytes(t, layer)},
		{"zstd", zstdBytes(t, layer)},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(c.data))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			tr := tar.NewReader(rc)
			h, err := tr.Next()
			if err != nil || h.Name != "f" {
				t.Fatalf("first entry %v, %v; want f", h, err)
			}
		})
	}
}

func BenchmarkApply(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: see requireRoot")
	}
	// 40 MiB in 8 files: 4 of random bytes, 4 of zeros, like a layer of
	// binaries and zero-padded data files.
	const fileSize = 5 << 20
	var entries []ent
	rng := rand.NewChaCha8([32]byte{1})
	for i := range 8 {
		body := make([]byte, fileSize)
		if i%2 == 0 {
			rng.Read(body)
		}
		entries = append(entries, file(fmt.Sprintf("usr/lib/f%d", i), string(body), 0o644))
	}
	layer := mkTar(b, append([]ent{dir("usr/", 0o755), dir("usr/lib/", 0o755)}, entries...)...)
	parent := b.TempDir()
	b.SetBytes(int64(len(layer)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(parent, fmt.Sprint(i))
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := Apply(context.Background(), dst, bytes.NewReader(layer), ApplyOptions{Overlay: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

// BenchmarkApplySmallFiles measures the per-entry cost: 4000 files of 4 KiB
// in 40 directories, like a layer of Python or Node modules.
func BenchmarkApplySmallFiles(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: see requireRoot")
	}
	rng := rand.NewChaCha8([32]byte{2})
	body := make([]byte, 4<<10)
	var entries []ent
	for d := range 40 {
		entries = append(entries, dir(fmt.Sprintf("lib/m%d/", d), 0o755))
		for f := range 100 {
			rng.Read(body)
			entries = append(entries, file(fmt.Sprintf("lib/m%d/f%d.py", d, f), string(body), 0o644))
		}
	}
	layer := mkTar(b, append([]ent{dir("lib/", 0o755)}, entries...)...)
	parent := b.TempDir()
	b.SetBytes(int64(len(layer)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(parent, fmt.Sprint(i))
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := Apply(context.Background(), dst, bytes.NewReader(layer), ApplyOptions{Overlay: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(entries)), "µs/entry")
}

// TestApplyZeroBlocks checks that skipping zero blocks (holes) never
// changes content or size, wherever the zeros are.
func TestApplyZeroBlocks(t *testing.T) {
	requireRoot(t)
	rng := rand.NewChaCha8([32]byte{3})
	random := func(n int) string { b := make([]byte, n); rng.Read(b); return string(b) }
	zeros := func(n int) string { return string(make([]byte, n)) }
	bodies := map[string]string{
		"leading":  zeros(holeBlock*3) + random(100),
		"middle":   random(holeBlock+7) + zeros(holeBlock*4) + random(10),
		"trailing": random(5) + zeros(holeBlock*2+1),
		"allzero":  zeros(CopyBufSize*2 + 3),
		"odd":      random(holeBlock-1) + zeros(holeBlock+1) + random(holeBlock),
	}
	var entries []ent
	for name, body := range bodies {
		entries = append(entries, file(name, body, 0o644))
	}
	dst := t.TempDir()
	apply(t, dst, mkTar(t, entries...), ApplyOptions{Overlay: true})
	for name, body := range bodies {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != body {
			t.Errorf("%s: %d bytes, %v; want %d bytes, identical", name, len(got), err, len(body))
		}
	}
}
