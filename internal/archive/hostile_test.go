package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// The sentinel: a tree beside the target directory that no layer may touch.
// parent/
//
//	target/            Apply's dir
//	sentinel/f         content, odd owner, odd mode, nanosecond mtime
//	sentinel/sub/g
//	sentinel/link -> f
//	sentinel/in -> ../target
//	passwd
type sentinel struct {
	parent, target string
	before         map[string]string
}

func newSentinel(t testing.TB) *sentinel {
	t.Helper()
	return newSentinelIn(t, t.TempDir())
}

// newSentinelIn builds the sentinel and the target in the empty directory
// parent.
func newSentinelIn(t testing.TB, parent string) *sentinel {
	t.Helper()
	s := &sentinel{parent: parent, target: filepath.Join(parent, "target")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(s.target, 0o755))
	sd := filepath.Join(parent, "sentinel")
	must(os.Mkdir(sd, 0o750))
	must(os.WriteFile(filepath.Join(sd, "f"), []byte("precious"), 0o640))
	must(os.Mkdir(filepath.Join(sd, "sub"), 0o700))
	must(os.WriteFile(filepath.Join(sd, "sub", "g"), []byte("also precious"), 0o600))
	must(os.Symlink("f", filepath.Join(sd, "link")))
	must(os.Symlink("../target", filepath.Join(sd, "in")))
	must(os.WriteFile(filepath.Join(parent, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(sd, "f"), 1234, 5678))
		must(os.Lchown(filepath.Join(sd, "link"), 1234, 5678))
	}
	// Distinct nanosecond mtimes, set children first so parents keep theirs.
	stamp := time.Unix(1_234_567_890, 111_222_333)
	for i, p := range []string{"sentinel/sub/g", "sentinel/f", "sentinel/link", "sentinel/in", "sentinel/sub", "passwd", "sentinel", "."} {
		ts := stamp.Add(time.Duration(i) * time.Hour)
		spec := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(parent, p), spec, unix.AT_SYMLINK_NOFOLLOW))
	}
	s.before = s.capture(t)
	return s
}

// capture records everything under parent except target's content:
// type, mode, owner, size, content hash, symlink target, mtime in ns.
func (s *sentinel) capture(t testing.TB) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(s.parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == s.target {
			return fs.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " sha256=" + hex.EncodeToString(sum[:])
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			desc += " link=" + l
		}
		desc += " xattrs=" + xattrString(t, p)
		rel, _ := filepath.Rel(s.parent, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("capturing sentinel: %v", err)
	}
	return out
}

// check fails the test if anything beside the target changed.
func (s *sentinel) check(t testing.TB) {
	t.Helper()
	after := s.capture(t)
	var keys []string
	for k := range s.before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := s.before[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if s.before[k] != after[k] {
			fmt.Fprintf(&b, "-%s: %s\n+%s: %s\n", k, s.before[k], k, after[k])
		}
	}
	if b.Len() > 0 {
		t.Errorf("the layer changed things outside its target (-before +after):\n%s", b.String())
	}
}

// hostileCase is one attack. want nil means Apply must succeed, and then
// confined checks where things landed.
type hostileCase struct {
	name     string
	layer    func(t *testing.T, s *sentinel) io.Reader
	opts     ApplyOptions
	onlyMode *bool // nil: run in both modes
	want     error
	entry    string // the name the error must mention
	confined func(t *testing.T, target string)
}

func layerOf(entries ...ent) func(*testing.T, *sentinel) io.Reader {
	return func(t *testing.T, _ *sentinel) io.Reader { return bytes.NewReader(mkTar(t, entries...)) }
}

func bytesLayer(f func(t *testing.T) []byte) func(*testing.T, *sentinel) io.Reader {
	return func(t *testing.T, _ *sentinel) io.Reader { return bytes.NewReader(f(t)) }
}

var (
	flatOnly    = new(bool)
	overlayOnly = func() *bool { b := true; return &b }()
)

func TestApplyHostile(t *testing.T) {
	requireRoot(t)
	cases := []hostileCase{
		{name: "dotdot", layer: layerOf(file("../sentinel/pwned", "x", 0o644)), want: ErrUnsafePath, entry: "../sentinel/pwned"},
		{name: "dotdot dir", layer: layerOf(dir("../", 0o777)), want: ErrUnsafePath, entry: "../"},
		{name: "dotdot deep", layer: layerOf(file("a/../../sentinel/f", "pwned", 0o644)), want: ErrUnsafePath, entry: "a/../../sentinel/f"},
		{name: "dotdot after absolute", layer: layerOf(file("/../sentinel/f", "pwned", 0o644)), want: ErrUnsafePath, entry: "/../sentinel/f"},
		{
			name:     "absolute name",
			layer:    layerOf(file("/sentinel/f", "pwned", 0o644), file("/passwd", "pwned", 0o644)),
			confined: wantFile("sentinel/f", "pwned"),
		},
		{
			name: "absolute host path",
			layer: func(t *testing.T, s *sentinel) io.Reader {
				return bytes.NewReader(mkTar(t, file(filepath.Join(s.parent, "sentinel/f"), "pwned", 0o644)))
			},
			confined: func(t *testing.T, target string) {
				// Lands at target/<parent>/sentinel/f.
				if !exists(filepath.Join(target, filepath.Dir(target), "sentinel/f")) {
					t.Errorf("absolute name not recreated inside the target")
				}
			},
		},
		{
			name:     "symlinked parent to root",
			layer:    layerOf(symlink("a", "/"), file("a/file", "confined", 0o644), file("a/../sentinel/f", "pwned", 0o644)),
			confined: allOf(wantFile("file", "confined"), wantFile("sentinel/f", "pwned")),
		},
		{
			name:  "symlinked parent dotdot to sentinel",
			layer: layerOf(symlink("a", "../../sentinel"), file("a/f", "pwned", 0o644)),
			want:  unix.ENOENT, entry: "a/f", // resolves to /sentinel inside the target, which does not exist
		},
		{
			name:     "symlinked parent dotdot to existing dir",
			layer:    layerOf(dir("sentinel/", 0o755), symlink("a", "../../sentinel"), file("a/f", "confined", 0o644)),
			confined: wantFile("sentinel/f", "confined"),
		},
		{
			name: "symlinked parent to absolute host path",
			layer: func(t *testing.T, s *sentinel) io.Reader {
				return bytes.NewReader(mkTar(t, symlink("a", filepath.Join(s.parent, "sentinel")), file("a/f", "pwned", 0o644)))
			},
			want: unix.ENOENT, entry: "a/f",
		},
		{
			name:  "symlink chain out",
			layer: layerOf(symlink("b", "../sentinel"), symlink("a", "b/sub"), file("a/g", "pwned", 0o644)),
			want:  unix.ENOENT, entry: "a/g",
		},
		{
			name: "symlink then file of the same name",
			layer: func(t *testing.T, s *sentinel) io.Reader {
				return bytes.NewReader(mkTar(t, symlink("f", filepath.Join(s.parent, "sentinel/f")), file("f", "confined", 0o644)))
			},
			confined: wantFile("f", "confined"),
		},
		{
			name:     "symlink then dir of the same name",
			layer:    layerOf(symlink("d", "../sentinel"), dir("d/", 0o777), file("d/x", "confined", 0o644)),
			confined: wantFile("d/x", "confined"),
		},
		{
			name: "metadata of a symlink to outside",
			layer: func(t *testing.T, s *sentinel) io.Reader {
				l := symlink("s", filepath.Join(s.parent, "sentinel/f"))
				l.hdr.Mode, l.hdr.Uid, l.hdr.Gid, l.hdr.ModTime = 0o4777, 4321, 4321, time.Unix(1, 0)
				l.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.pwned": "1", "SCHILY.xattr.trusted.pwned": "1"}
				return bytes.NewReader(mkTar(t, l))
			},
			confined: func(t *testing.T, target string) {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(target, "s"), &st); err != nil || st.Uid != 4321 {
					t.Errorf("symlink itself not chowned: %v uid %d", err, st.Uid)
				}
			},
		},
		{name: "hardlink to dotdot", layer: layerOf(hardlink("h", "../sentinel/f")), want: ErrUnsafePath, entry: "h"},
		{name: "hardlink to absolute", layer: layerOf(hardlink("h", "/sentinel/f")), want: ErrBadLink, entry: "h"},
		{
			name: "hardlink to absolute host path",
			layer: func(t *testing.T, s *sentinel) io.Reader {
				return bytes.NewReader(mkTar(t, hardlink("h", filepath.Join(s.parent, "sentinel/f"))))
			},
			want: ErrBadLink, entry: "h",
		},
		{
			name:  "hardlink through symlinked dir",
			layer: layerOf(symlink("a", "../sentinel"), hardlink("h", "a/f")),
			want:  ErrBadLink, entry: "h",
		},
		{
			name:  "hardlink to symlink pointing outside",
			layer: layerOf(symlink("s", "../sentinel/f"), hardlink("h", "s"), file("t", "after", 0o644)),
			confined: func(t *testing.T, target string) {
				l, err := os.Readlink(filepath.Join(target, "h"))
				if err != nil || l != "../sentinel/f" {
					t.Errorf("h = %q, %v; want the symlink itself", l, err)
				}
			},
		},
		{name: "hardlink to directory", layer: layerOf(dir("d/", 0o755), hardlink("h", "d")), want: ErrBadLink, entry: "h"},
		{name: "hardlink to root", layer: layerOf(hardlink("h", "./")), want: ErrBadLink, entry: "h"},
		{name: "hardlink to missing", layer: layerOf(hardlink("h", "nope")), want: ErrBadLink, entry: "h"},
		{name: "root as hardlink", layer: layerOf(file("f", "", 0o644), hardlink("./", "f")), want: ErrUnsafePath, entry: "./"},
		{name: "root as symlink", layer: layerOf(symlink(".", "/")), want: ErrUnsafePath, entry: "."},
		{name: "root as symlink slash", layer: layerOf(symlink("/", "../sentinel")), want: ErrUnsafePath, entry: "/"},
		{name: "root as file", layer: layerOf(file(".", "x", 0o644)), want: ErrUnsafePath, entry: "."},
		{
			name: "root as dir is fine",
			layer: layerOf(func() ent {
				d := dir("./", 0o711)
				d.hdr.Uid = 77
				return d
			}()),
			confined: func(t *testing.T, target string) {
				var st unix.Stat_t
				if err := unix.Lstat(target, &st); err != nil || st.Mode&0o7777 != 0o711 || st.Uid != 77 {
					t.Errorf("root: mode %o uid %d, want 0711 77", st.Mode&0o7777, st.Uid)
				}
			},
		},
		{name: "whiteout empty", layer: layerOf(whiteout(".wh.")), want: ErrBadWhiteout, entry: ".wh."},
		{name: "whiteout dot", layer: layerOf(whiteout("a/.wh..")), want: ErrBadWhiteout, entry: "a/.wh.."},
		{name: "whiteout dotdot", layer: layerOf(whiteout(".wh...")), want: ErrBadWhiteout, entry: ".wh..."},
		{name: "whiteout unknown meta", layer: layerOf(whiteout(".wh..wh.plnk")), want: ErrBadWhiteout, entry: ".wh..wh.plnk"},
		{name: "whiteout opaque as symlink", layer: layerOf(symlink(".wh..wh..opq", "/")), want: ErrBadWhiteout, entry: ".wh..wh..opq"},
		{name: "whiteout as dir", layer: layerOf(dir(".wh.x/", 0o755)), want: ErrBadWhiteout, entry: ".wh.x/"},
		{name: "whiteout as symlink", layer: layerOf(symlink(".wh.x", "../sentinel")), want: ErrBadWhiteout, entry: ".wh.x"},
		{name: "whiteout as hardlink", layer: layerOf(file("f", "", 0o644), hardlink(".wh.x", "f")), want: ErrBadWhiteout, entry: ".wh.x"},
		{name: "whiteout as device", layer: layerOf(ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: ".wh.x"}}), want: ErrBadWhiteout, entry: ".wh.x"},
		{name: "whiteout of dotdot path", layer: layerOf(whiteout("../.wh.sentinel")), want: ErrUnsafePath, entry: "../.wh.sentinel"},
		{name: "whiteout in dotdot dir", layer: layerOf(whiteout("../sentinel/.wh.f")), want: ErrUnsafePath, entry: "../sentinel/.wh.f"},
		{name: "opaque in dotdot dir", layer: layerOf(whiteout("../sentinel/.wh..wh..opq")), want: ErrUnsafePath, entry: "../sentinel/.wh..wh..opq"},
		{
			name:     "whiteout through symlinked parent",
			layer:    layerOf(symlink("a", "../sentinel"), whiteout("a/.wh.f"), whiteout("a/.wh..wh..opq")),
			onlyMode: flatOnly, // nothing there to remove
		},
		{
			name:     "whiteout through symlinked parent",
			layer:    layerOf(symlink("a", "../sentinel"), whiteout("a/.wh.f")),
			onlyMode: overlayOnly, // a symlink hides nothing: no whiteout below it
			confined: func(t *testing.T, target string) {
				if !exists(filepath.Join(target, "a")) || exists(filepath.Join(target, "f")) {
					t.Errorf("whiteout went through the symlink")
				}
			},
		},
		{
			name:     "whiteout with missing parent",
			layer:    layerOf(whiteout("nodir/.wh.x"), whiteout("nodir2/.wh..wh..opq")),
			onlyMode: flatOnly,
			confined: func(t *testing.T, target string) {
				if exists(filepath.Join(target, "nodir")) {
					t.Errorf("flat mode created the parent of a whiteout")
				}
			},
		},
		{
			name:     "whiteout with missing parent",
			layer:    layerOf(whiteout("nodir/.wh.x")),
			onlyMode: overlayOnly,
			confined: wantType("nodir/x", unix.S_IFCHR),
		},
		{
			name: "whiteout of a symlink to outside",
			layer: func(t *testing.T, s *sentinel) io.Reader {
				return bytes.NewReader(mkTar(t, symlink("s", filepath.Join(s.parent, "sentinel")), whiteout(".wh.s")))
			},
		},
		{
			name:     "opaque root through symlink",
			layer:    layerOf(file("keep", "k", 0o644), symlink("a", "/"), whiteout("a/.wh..wh..opq")),
			confined: wantFile("keep", "k"),
		},
		{name: "char device major too big", layer: layerOf(dev(tar.TypeChar, 4096, 0)), want: ErrBadHeader, entry: "dev"},
		{name: "block device minor too big", layer: layerOf(dev(tar.TypeBlock, 8, 1<<20)), want: ErrBadHeader, entry: "dev"},
		{name: "device negative", layer: layerOf(dev(tar.TypeChar, -1, 3)), want: ErrBadHeader, entry: "dev"},
		{name: "fifo is fine", layer: layerOf(ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o600}}), confined: wantType("p", unix.S_IFIFO)},
		{name: "unknown type", layer: layerOf(ent{hdr: tar.Header{Typeflag: 'Z', Name: "z"}}), want: ErrBadHeader, entry: "z"},
		{name: "contiguous file type", layer: layerOf(ent{hdr: tar.Header{Typeflag: tar.TypeCont, Name: "c"}}), want: ErrBadHeader, entry: "c"},
		{name: "negative size", layer: bytesLayer(negativeSizeTar), want: ErrBadHeader, entry: "first"},
		{name: "truncated content", layer: bytesLayer(truncatedTar), want: ErrBadHeader, entry: "big"},
		{name: "truncated header", layer: bytesLayer(func(t *testing.T) []byte {
			return mkTar(t, file("first", "", 0o644), file("second", "", 0o644))[:512*3+100]
		}), want: ErrBadHeader, entry: "first"},
		{name: "bad checksum", layer: bytesLayer(badChecksumTar), want: ErrBadHeader, entry: "first"},
		{name: "huge name", layer: layerOf(file(strings.Repeat("a/", 2100)+"f", "x", 0o644)), want: ErrBadHeader, entry: "a/a/a/"},
		{name: "huge component", layer: layerOf(file(strings.Repeat("n", 300), "x", 0o644)), want: ErrBadHeader, entry: "nnnn"},
		{name: "huge symlink target", layer: layerOf(symlink("s", strings.Repeat("t", 5000))), want: ErrBadHeader, entry: "s"},
		{name: "owner out of range", layer: layerOf(func() ent { f := file("f", "", 0o644); f.hdr.Uid = 1 << 32; return f }()), want: ErrBadHeader, entry: "f"},
		{
			name: "forged overlay xattrs",
			layer: layerOf(func() ent {
				d := dir("d/", 0o755)
				d.hdr.PAXRecords = map[string]string{
					"SCHILY.xattr.trusted.overlay.redirect": "/../../sentinel",
					"SCHILY.xattr.user.overlay.opaque":      "y",
				}
				return d
			}()),
			confined: func(t *testing.T, target string) {
				if x := xattrString(t, filepath.Join(target, "d")); x != "" {
					t.Errorf("d has xattrs %q, want none", x)
				}
			},
		},
		{name: "too many entries", layer: layerOf(manyFiles(200)...), opts: ApplyOptions{MaxEntries: 100}, want: ErrTooLarge, entry: "f100"},
		{name: "too many bytes", layer: layerOf(file("a", "12345", 0o644), file("b", "123456", 0o644)), opts: ApplyOptions{MaxBytes: 10}, want: ErrTooLarge, entry: "b"},
		{name: "sparse bomb", layer: bytesLayer(func(t *testing.T) []byte { return sparseTar(t, "sparse", 1<<40) }), want: ErrTooLarge, entry: "sparse"},
		{
			name:  "sparse file within limits",
			layer: bytesLayer(func(t *testing.T) []byte { return sparseTar(t, "sparse", 8<<20) }),
			opts:  ApplyOptions{MaxBytes: 8 << 20},
			confined: func(t *testing.T, target string) {
				if fi, err := os.Stat(filepath.Join(target, "sparse")); err != nil || fi.Size() != 8<<20 {
					t.Errorf("sparse file: %v, %v; want 8 MiB", fi, err)
				}
			},
		},
		{name: "gzip bomb one file", layer: bomb(gzipCompress, 1, 2<<30), opts: ApplyOptions{MaxBytes: 64 << 20}, want: ErrTooLarge, entry: "zeros0"},
		{name: "gzip bomb many files", layer: bomb(gzipCompress, 100, 1<<20), opts: ApplyOptions{MaxBytes: 64 << 20}, want: ErrTooLarge, entry: "zeros64"},
		{name: "zstd bomb one file", layer: bomb(zstdCompress, 1, 2<<30), opts: ApplyOptions{MaxBytes: 64 << 20}, want: ErrTooLarge, entry: "zeros0"},
		{name: "zstd bomb many files", layer: bomb(zstdCompress, 100, 1<<20), opts: ApplyOptions{MaxBytes: 64 << 20}, want: ErrTooLarge, entry: "zeros64"},
	}
	for _, c := range cases {
		for _, overlay := range []bool{false, true} {
			if c.onlyMode != nil && *c.onlyMode != overlay {
				continue
			}
			mode := "flat"
			if overlay {
				mode = "overlay"
			}
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				s := newSentinel(t)
				opts := c.opts
				opts.Overlay = overlay
				start := time.Now()
				_, err := Apply(context.Background(), s.target, c.layer(t, s), opts)
				if elapsed := time.Since(start); elapsed > 5*time.Second {
					t.Errorf("Apply took %v; a hostile layer must be refused quickly", elapsed)
				}
				switch {
				case c.want == nil && err != nil:
					t.Errorf("Apply = %v, want success (confined)", err)
				case c.want != nil && !errors.Is(err, c.want):
					t.Errorf("Apply = %v, want %v", err, c.want)
				case c.want != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", c.entry)) && !strings.Contains(err.Error(), c.entry):
					t.Errorf("Apply = %v, want the message to name entry %q", err, c.entry)
				}
				if c.want == nil && err == nil && c.confined != nil {
					c.confined(t, s.target)
				}
				s.check(t)
				if size := treeSize(t, s.target); size > 65<<20 {
					t.Errorf("target holds %d bytes after a refused bomb", size)
				}
			})
		}
	}
}

func TestCleanName(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      error
	}{
		{"a/b", "a/b", nil},
		{"./a/./b/", "a/b", nil},
		{"/a//b", "a/b", nil},
		{"a/../b", "b", nil},
		{".", "", nil},
		{"/", "", nil},
		{"a/..", "", nil},
		{"..", "", ErrUnsafePath},
		{"a/../..", "", ErrUnsafePath},
		{"", "", ErrBadHeader},
		{"a\x00b", "", ErrBadHeader},
		{strings.Repeat("x", 256), "", ErrBadHeader},
		{strings.Repeat("x/", 2049), "", ErrBadHeader},
	} {
		got, err := cleanName(c.in)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("cleanName(%.20q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

func wantFile(rel, content string) func(*testing.T, string) {
	return func(t *testing.T, target string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(target, rel))
		if err != nil || string(b) != content {
			t.Errorf("%s = %q, %v; want %q", rel, b, err, content)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(target, rel), &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("%s is not a regular file", rel)
		}
	}
}

func wantType(rel string, typ uint32) func(*testing.T, string) {
	return func(t *testing.T, target string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(target, rel), &st); err != nil || st.Mode&unix.S_IFMT != typ {
			t.Errorf("%s: %v, type %o, want %o", rel, err, st.Mode&unix.S_IFMT, typ)
		}
	}
}

func allOf(fs ...func(*testing.T, string)) func(*testing.T, string) {
	return func(t *testing.T, target string) {
		for _, f := range fs {
			f(t, target)
		}
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// treeSize is the logical size of the regular files under dir.
func treeSize(t testing.TB, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func dev(typ byte, major, minor int64) ent {
	return ent{hdr: tar.Header{Typeflag: typ, Name: "dev", Mode: 0o600, Devmajor: major, Devminor: minor, Format: tar.FormatGNU}}
}

func manyFiles(n int) []ent {
	var es []ent
	for i := range n {
		es = append(es, file(fmt.Sprintf("f%d", i), "", 0o644))
	}
	return es
}

// patchHeader rewrites the header block at off with change applied and a
// correct checksum, to make headers archive/tar refuses to write.
func patchHeader(b []byte, off int, change func(h []byte)) {
	h := b[off : off+512]
	change(h)
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func ustar(t *testing.T, entries ...ent) []byte {
	for i := range entries {
		entries[i].hdr.Format = tar.FormatUSTAR
		entries[i].hdr.ModTime = entries[i].hdr.ModTime.Truncate(time.Second)
	}
	return mkTar(t, entries...)
}

func negativeSizeTar(t *testing.T) []byte {
	b := ustar(t, file("first", "", 0o644), file("neg", "", 0o644))
	patchHeader(b, 512, func(h []byte) {
		for i := 124; i < 136; i++ {
			h[i] = 0xff // base-256 -1
		}
	})
	return b
}

func truncatedTar(t *testing.T) []byte {
	return mkTar(t, file("big", strings.Repeat("x", 1000), 0o644))[:512*3+100] // PAX header, its data, the header
}

func badChecksumTar(t *testing.T) []byte {
	b := ustar(t, file("first", "", 0o644), file("second", "", 0o644))
	b[512] = 'X' // the second header's name, checksum left stale
	return b
}

type compressor func(w io.Writer) io.WriteCloser

func gzipCompress(w io.Writer) io.WriteCloser {
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	return zw
}

func zstdCompress(w io.Writer) io.WriteCloser {
	zw, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	return zw
}

func gzipBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzipCompress(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := zstdCompress(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bomb streams a compressed layer of files files of size zero bytes each,
// generated as Apply reads it, so that the test never holds the whole
// stream, and run through Decompress as a pull would.
func bomb(c compressor, files int, size int64) func(*testing.T, *sentinel) io.Reader {
	return func(t *testing.T, _ *sentinel) io.Reader {
		pr, pw := io.Pipe()
		go func() {
			zw := c(pw)
			tw := tar.NewWriter(zw)
			zeros := make([]byte, 1<<20)
			err := func() error {
				for i := range files {
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("zeros%d", i), Mode: 0o644, Size: size}); err != nil {
						return err
					}
					for n := size; n > 0; n -= int64(len(zeros)) {
						if _, err := tw.Write(zeros[:min(n, int64(len(zeros)))]); err != nil {
							return err
						}
					}
				}
				if err := tw.Close(); err != nil {
					return err
				}
				return zw.Close()
			}()
			pw.CloseWithError(err)
		}()
		t.Cleanup(func() { pr.CloseWithError(errors.New("test over")) })
		rc, err := Decompress(pr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		return rc
	}
}

// sparseTar hand-writes a PAX GNU sparse 1.0 entry whose whole logical size
// is one hole: a few hundred bytes that claim size bytes of content.
// archive/tar refuses to write GNU.sparse records itself.
func sparseTar(t *testing.T, name string, size int64) []byte {
	rec := func(k, v string) string { // "LEN key=value\n", LEN counting itself
		body := " " + k + "=" + v + "\n"
		n := len(body) + 1
		for n != len(body)+len(fmt.Sprint(n)) {
			n = len(body) + len(fmt.Sprint(n))
		}
		return fmt.Sprint(n) + body
	}
	pax := rec("GNU.sparse.major", "1") + rec("GNU.sparse.minor", "0") +
		rec("GNU.sparse.name", name) + rec("GNU.sparse.realsize", fmt.Sprint(size))
	sparseMap := "1\n0\n0\n" + strings.Repeat("\x00", 512-6)
	b := ustar(t,
		ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/x", Size: int64(len(pax)), Mode: 0o644}, body: pax},
		ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "GNUSparseFile.0/" + name, Size: 512, Mode: 0o644}, body: sparseMap},
	)
	patchHeader(b, 0, func(h []byte) { h[156] = 'x' })
	return b
}

// TestChmodNoFollow: the mode of a device or fifo an Apply made is set
// without following a symlink a running container's process swapped in for
// it. The symlink's target, a file outside the target directory, keeps its
// mode; the node itself gets the tar's.
func TestChmodNoFollow(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "swapped")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	pfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pfd)
	if err := chmodNoFollow(pfd, "swapped", 0o4755); err == nil {
		t.Error("chmod through a swapped-in symlink succeeded")
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSetuid != 0 {
		t.Fatalf("the symlink's target changed: %v, %v", fi.Mode(), err)
	}
	if err := chmodNoFollow(pfd, "fifo", 0o640); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "fifo")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("fifo mode = %v, %v; want 0640", fi.Mode(), err)
	}
}
