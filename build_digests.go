package berth

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sys/unix"
)

// fileDigests remembers the SHA-256 of files a build has read, so that the
// next build of an unchanged context hashes nothing: hashing runs at about
// 500 MB/s on the machines berth targets, which made a 5 MB context most of
// a fully cached build.
//
// An entry is keyed by device and inode and is valid only while size,
// mtime and ctime are unchanged. Content cannot change without changing
// ctime, and ctime cannot be set from user space, so a stale entry is never
// used; an mtime-only change (touch) changes ctime, costs one rehash, and
// keeps the build's cache key, which never includes mtime. There is one
// memo per build context, <root>/cache/file-digests/<hash of the context
// path>.json, so a build reads and writes only its own context's entries
// however many contexts the root has built. It is an optimisation only:
// a missing, unreadable or concurrently replaced file just means rehashing.
type fileDigests struct {
	path string

	once  sync.Once
	mu    sync.Mutex
	m     map[string]fileDigest
	used  map[string]bool
	dirty bool
}

type fileDigest struct {
	Size   int64  `json:"s"`
	Mtime  int64  `json:"m"`
	Ctime  int64  `json:"c"`
	Digest string `json:"d"`
}

// maxFileDigests bounds a memo: beyond it, entries the last build did not
// use are dropped when it is saved.
const maxFileDigests = 100_000

// newFileDigests opens the memo of contextDir's files. A zero fileDigests
// memoizes for one build only: its context is a temporary one.
func newFileDigests(root, contextDir string) *fileDigests {
	sum := sha256.Sum256([]byte(contextDir))
	return &fileDigests{path: filepath.Join(root, "cache", "file-digests", hex.EncodeToString(sum[:8])+".json")}
}

func (d *fileDigests) load() {
	d.once.Do(func() {
		d.m, d.used = map[string]fileDigest{}, map[string]bool{}
		if d.path == "" {
			return // a memo for one build: nothing kept
		}
		if b, err := os.ReadFile(d.path); err == nil {
			json.Unmarshal(b, &d.m)
		}
	})
}

// sum returns the hex SHA-256 of the open file f, from the memo when f is
// unchanged since it was hashed.
func (d *fileDigests) sum(f *os.File, buf []byte) (string, int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", 0, err
	}
	key := strconv.FormatUint(st.Dev, 10) + ":" + strconv.FormatUint(st.Ino, 10)
	want := fileDigest{Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
	d.load()
	d.mu.Lock()
	got, ok := d.m[key]
	if ok && got.Size == want.Size && got.Mtime == want.Mtime && got.Ctime == want.Ctime {
		d.used[key] = true
		d.mu.Unlock()
		return got.Digest, got.Size, nil
	}
	d.mu.Unlock()
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(f, st.Size), buf)
	if err != nil {
		return "", 0, err
	}
	want.Digest = fmt.Sprintf("%x", h.Sum(nil))
	// A file written while it was hashed has a newer ctime: not remembered.
	var after unix.Stat_t
	if unix.Fstat(int(f.Fd()), &after) == nil && after.Ctim == st.Ctim && n == st.Size {
		d.mu.Lock()
		d.m[key], d.used[key], d.dirty = want, true, true
		d.mu.Unlock()
	}
	return want.Digest, n, nil
}

// save writes the memo back if this build added to it.
func (d *fileDigests) save() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.dirty || d.path == "" {
		return
	}
	if len(d.m) > maxFileDigests {
		for k := range d.m {
			if !d.used[k] {
				delete(d.m, k)
			}
		}
	}
	b, err := json.Marshal(d.m)
	if err != nil {
		return
	}
	store.WriteCacheFile(d.path, b, 0o600)
	d.dirty = false
}

// copyContentKey hashes what a COPY layer holds without writing it: each
// entry's header without mtime, then its content's digest. It equals the
// key writeCopyLayer computes for the same entries only in what it
// depends on (names, types, modes, owners, link targets, sizes, bytes),
// which is all a cache key may depend on.
func (b *builder) copyContentKey(content hash.Hash, entries []copyEntry) error {
	buf := make([]byte, archive.CopyBufSize)
	for _, e := range entries {
		h := e.hdr
		keyHeader(content, h)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if e.data != nil {
			fmt.Fprintf(content, "%x\n", sha256.Sum256(e.data))
			continue
		}
		f, err := e.root.Open(e.src)
		if err != nil {
			return err
		}
		sum, n, err := b.digests.sum(f, buf)
		f.Close()
		if err != nil {
			return err
		}
		if n != h.Size {
			return fmt.Errorf("%s changed size while it was copied", e.src)
		}
		fmt.Fprintf(content, "%s\n", sum)
	}
	return nil
}
