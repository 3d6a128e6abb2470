package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzApply feeds arbitrary bytes to Apply as a tar stream, in both modes,
// with a sentinel tree beside the target. Whatever the input, Apply must not
// panic and must not change anything outside its target.
//
// Run it with a short -fuzzminimizetime (say 5s): at about a thousand
// executions a second, the default 60s minimization of each new interesting
// input leaves little time for fuzzing.
//
// The trees live on a private tmpfs: creating and deleting a few hundred
// thousand small trees on ext4 makes its inode allocator (which avoids
// recently deleted inodes) slow enough to stall the fuzzer.
func FuzzApply(f *testing.F) {
	requireRoot(f)
	// Seeds in USTAR where possible: half the size of PAX, which keeps the
	// engine's minimization of interesting inputs short.
	seed := func(entries ...ent) {
		for i := range entries {
			if entries[i].hdr.PAXRecords == nil {
				entries[i].hdr.Format = tar.FormatGNU
				entries[i].hdr.ModTime = entries[i].hdr.ModTime.Truncate(time.Second)
			}
		}
		f.Add(mkTar(f, entries...))
	}
	seed(
		dir("./", 0o755), dir("a/", 0o755), file("a/f", "hello", 0o644),
		symlink("a/s", "../../sentinel"), hardlink("a/h", "a/f"),
		ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "a/c", Devmajor: 1, Devminor: 3}},
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "a/p"}},
	)
	seed(dir("a/", 0o755), file("a/f", "f", 0o644), dir("b/", 0o755), file("b/x", "x", 0o644), file("c", "c", 0o644))
	seed(whiteout(".wh.c"), whiteout("a/.wh.f"), whiteout("b/.wh..wh..opq"), file("b/new", "new", 0o644), whiteout(".wh.h"), file("h", "h", 0o644))
	seed(symlink("a", "/"), file("a/b", "x", 0o644), hardlink("c", "a/b"), whiteout("a/.wh.b"))
	seed(symlink("l", "../sentinel/f"), hardlink("h", "l"), file("l", "new", 0o600), whiteout(".wh.h"))
	seed(dir("d/", 0o755), file("d/x", "x", 0o644), whiteout("d/.wh..wh..opq"), file("d", "now a file", 0o644))
	withXattr := file("x", "x", 0o4755)
	withXattr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "b", "SCHILY.xattr.trusted.overlay.opaque": "y"}
	seed(withXattr)
	seed(file("../x", "", 0o644))

	base := f.TempDir()
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=256m,mode=0755"); err != nil {
		f.Fatalf("mounting a tmpfs for the fuzz trees: %v", err)
	}
	f.Cleanup(func() { unix.Unmount(base, unix.MNT_DETACH) })

	f.Fuzz(func(t *testing.T, data []byte) {
		// Mutations nearly always break a header checksum, and archive/tar
		// stops there; repairing them lets the fuzzer reach Apply's own
		// logic. The raw bytes are tried too, once.
		inputs := []struct {
			data    []byte
			overlay bool
		}{{fixChecksums(data), false}, {fixChecksums(data), true}}
		if !bytes.Equal(inputs[0].data, data) {
			inputs = append(inputs, struct {
				data    []byte
				overlay bool
			}{data, false})
		}
		for _, in := range inputs {
			data, overlay := in.data, in.overlay
			parent, err := os.MkdirTemp(base, "")
			if err != nil {
				t.Fatal(err)
			}
			s := newSentinelIn(t, parent)
			opts := ApplyOptions{Overlay: overlay, MaxBytes: 1 << 20, MaxEntries: 256}
			Apply(context.Background(), s.target, bytes.NewReader(data), opts)
			s.check(t)
			if err := os.RemoveAll(parent); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// fixChecksums returns a copy of b with the checksum of every header it can
// find by following the size fields rewritten to be correct.
func fixChecksums(b []byte) []byte {
	b = bytes.Clone(b)
	for off := 0; off+512 <= len(b); {
		h := b[off : off+512]
		if bytes.Count(h, []byte{0}) == 512 {
			off += 512
			continue
		}
		copy(h[148:156], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
		size, err := strconv.ParseInt(strings.Trim(string(h[124:136]), " \x00"), 8, 64)
		if err != nil || size < 0 || size > int64(len(b)) {
			break
		}
		off += 512 + int((size+511)/512*512)
	}
	return b
}
