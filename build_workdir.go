package berth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"golang.org/x/sys/unix"
)

// workdirStep makes WORKDIR's directory, as BuildKit does whether or not a
// later step uses it: a layer holding the missing directories (mode 0755,
// owned by the stage's USER), empty when the directory exists. WORKDIR /
// makes no layer. The config's WorkingDir is already set.
func (b *builder) workdirStep(ctx context.Context, s *buildState, n *parser.Node, text string, args []string) error {
	wd := path.Clean(s.cf.Config.WorkingDir)
	s.cf.Config.WorkingDir = wd
	createdBy := "WORKDIR " + wd
	key := stepKey(s.key, text, args, "")
	if wd == "/" {
		b.report(s, n, false)
		s.key = key
		b.addHistory(s, createdBy)
		return nil
	}
	if img := b.cached(ctx, key); img != nil {
		b.report(s, n, true)
		return s.useCached(img, key)
	}
	b.report(s, n, false)
	ifs, err := b.r.openImageFS(s.img)
	if err != nil {
		return err
	}
	defer ifs.close()
	dir, err := ifs.resolve(strings.TrimPrefix(wd, "/"))
	if err != nil {
		return err
	}
	uid, gid := userOwner(ifs, s.cf.Config.User)
	ls := &layerSet{ifs: ifs, seen: map[string]bool{}, epoch: b.clampTime, owned: true, uid: uid, gid: gid}
	missing := false
	for _, p := range parentDirs(dir, true) {
		st, ok := ifs.lstat(p)
		if ok && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("WORKDIR %s: /%s is not a directory", wd, p)
		}
		missing = missing || !ok
	}
	if missing {
		for _, p := range parentDirs(dir, true) {
			ls.dir(p)
		}
		now := b.clampTime(b.now())
		for _, e := range ls.entries {
			if _, ok := ifs.lstat(strings.TrimSuffix(e.hdr.Name, "/")); !ok {
				e.hdr.ModTime = now
			}
		}
	}
	unlock, err := b.r.gcShared(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	diffID, size, err := b.r.store.IngestFrom(func(w io.Writer) error {
		return writeCopyLayer(w, io.Discard, ls.entries, nil, b.clampTime)
	})
	if err != nil {
		return err
	}
	return b.commitLayer(ctx, s, key, diffID, size, createdBy)
}

// userOwner is the owner BuildKit gives a directory WORKDIR makes for USER
// user[:group]: a user name's uid and primary gid from the image's
// /etc/passwd, a uid with gid = uid; a group, by name from /etc/group or by
// number, replaces the gid. Names the files lack count as 0, as BuildKit
// counts them.
func userOwner(ifs *imageFS, user string) (uid, gid int) {
	if user == "" {
		return 0, 0
	}
	u, g, hasG := strings.Cut(user, ":")
	if id, err := strconv.Atoi(u); err == nil {
		uid, gid = id, id
	} else if f := colonEntry(ifs, "etc/passwd", u); len(f) >= 4 {
		uid, _ = strconv.Atoi(f[2])
		gid, _ = strconv.Atoi(f[3])
	}
	if hasG {
		if id, err := strconv.Atoi(g); err == nil {
			gid = id
		} else if f := colonEntry(ifs, "etc/group", g); len(f) >= 3 {
			gid, _ = strconv.Atoi(f[2])
		}
	}
	return uid, gid
}

// colonEntry is the line of an image's passwd or group file whose first
// field is name, split.
func colonEntry(ifs *imageFS, file, name string) []string {
	data, err := ifs.readFile(file, 4<<20)
	if err != nil {
		return nil
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Split(strings.TrimSpace(line), ":"); f[0] == name {
			return f
		}
	}
	return nil
}

// ingestSpooled stores the layer tar spooled in f (read from its start)
// as a blob, and returns its diff ID and size with the garbage-collection
// lock held, so that nothing removes the blob before a step's image
// references it: the caller releases the lock after commitLayer.
func (b *builder) ingestSpooled(ctx context.Context, f *os.File) (diffID string, size int64, unlock func(), err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, nil, err
	}
	if unlock, err = b.r.gcShared(ctx); err != nil {
		return "", 0, nil, err
	}
	if diffID, size, err = b.r.store.Ingest(bufio.NewReaderSize(f, archive.CopyBufSize)); err != nil {
		unlock()
		return "", 0, nil, err
	}
	return diffID, size, unlock, nil
}
