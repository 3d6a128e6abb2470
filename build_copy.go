package berth

import (
	"archive/tar"
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/dockerfile"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"golang.org/x/sys/unix"
)

// copyEntry is one file COPY or ADD writes into the layer.
type copyEntry struct {
	hdr  *tar.Header
	root *os.Root // where content is read, for regular files
	src  string   // path in root
	data []byte   // content given inline (heredocs), instead of root
	// chown: an archive ADD extracts gets hdr's owner on every entry
	// (--chown), as BuildKit applies it, instead of the archive's owners
	chown bool
}

// copySpec is a COPY or ADD instruction after substitution.
type copySpec struct {
	instructions.SourcesAndDest
	from, chown, chmod string
	link, parents      bool
	exclude            []string
	isAdd              bool
	checksum           string
	unpack             *bool
}

// copyFilter decides which source paths a COPY leaves out: the context's
// .dockerignore (paths relative to the context root) and --exclude
// patterns (paths relative to the source being copied).
type copyFilter struct {
	ignore  *dockerfile.Ignore
	exclude *dockerfile.Ignore
}

// excluded reports whether rel (relative to the root) is left out; sub is
// the same path relative to the source.
func (f copyFilter) excluded(rel, sub string) bool {
	return f.ignore.Excluded(rel) || (sub != "" && f.exclude.Excluded(sub))
}

func (f copyFilter) mayReinclude() bool { return f.ignore.MayReinclude() || f.exclude.MayReinclude() }

// copyStep runs COPY or ADD: the layer is a tar of the sources, written
// directly, with no container.
func (b *builder) copyStep(ctx context.Context, s *buildState, n *parser.Node, c copySpec, usedArgs func() []string) error {
	root, ignore, _, err := b.sourceRoot(ctx, s, c.from)
	if err != nil {
		return err
	}
	if c.from != "" {
		defer root.Close()
	}
	filter := copyFilter{ignore: ignore}
	if len(c.exclude) > 0 {
		if filter.exclude, err = dockerfile.NewIgnore(c.exclude); err != nil {
			return fmt.Errorf("%w: --exclude: %v", ErrInvalid, err)
		}
	}
	if c.checksum != "" && !slices.ContainsFunc(c.SourcePaths, isURL) {
		return fmt.Errorf("%w: --checksum applies only to URL sources", ErrInvalid)
	}
	ifs, err := b.r.openImageFS(s.img)
	if err != nil {
		return err
	}
	defer ifs.close()
	uid, gid, err := resolveChown(ifs, c.chown)
	if err != nil {
		return err
	}
	var mode *fs.FileMode
	if c.chmod != "" {
		m, err := strconv.ParseUint(c.chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("%w: --chmod=%s: only octal modes are supported", ErrUnsupported, c.chmod)
		}
		fm := fs.FileMode(m)
		mode = &fm
	}
	dest := c.DestPath
	nsrc := len(c.SourcePaths) + len(c.SourceContents)
	destDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.") || nsrc > 1
	if !path.IsAbs(dest) {
		wd := s.cf.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	dest = strings.TrimPrefix(path.Clean(dest), "/")
	if !c.link {
		// The destination is resolved in the image as the container would
		// see it: a symlink to a directory is copied into. --link reads
		// nothing of the image, as BuildKit's.
		if dest, err = ifs.resolve(dest); err != nil {
			return err
		}
		// Docker's rule: a destination that is a directory in the image is
		// copied into, trailing slash or not.
		if st, ok := ifs.lstat(dest); !destDir && (dest == "" || ok && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			destDir = true
		}
	}
	ls := &layerSet{ifs: ifs, link: c.link, seen: map[string]bool{}, epoch: b.clampTime, keepOwner: c.from != "", owned: uid >= 0, uid: uid, gid: gid}
	for _, p := range parentDirs(dest, destDir) {
		ls.dir(p)
	}
	for _, hc := range c.SourceContents {
		target := dest
		if destDir {
			target = path.Join(dest, hc.Path)
		}
		m := int64(0o644)
		if mode != nil {
			m = int64(*mode)
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: target, Mode: m, Size: int64(len(hc.Data)), ModTime: b.clampTime(time.Now().Truncate(time.Second)), Format: tar.FormatPAX}
		if uid >= 0 {
			hdr.Uid, hdr.Gid = uid, gid
		}
		ls.add(copyEntry{hdr: hdr, data: []byte(hc.Data)})
	}
	matched := false // some source matched something
	var emptyErr error
	for _, src := range c.SourcePaths {
		if isURL(src) {
			matched = true
			if !c.isAdd {
				return fmt.Errorf("%w: COPY of a URL: use ADD", ErrInvalid)
			}
			e, err := b.download(ctx, src, c.checksum)
			if err != nil {
				return err
			}
			defer e.root.Close()
			name, err := urlFileName(src)
			if err != nil && destDir {
				return err
			}
			e.hdr.Name = dest
			if destDir {
				e.hdr.Name = path.Join(dest, name)
			}
			if uid >= 0 {
				e.hdr.Uid, e.hdr.Gid = uid, gid
			}
			if mode != nil {
				e.hdr.Mode = int64(*mode)
			}
			e.hdr.ModTime = b.clampTime(e.hdr.ModTime)
			if c.unpack != nil && *c.unpack && isTarFile(e.root, e.src) {
				e.hdr.Name = dest
				e.chown = ls.owned
				ls.tars = append(ls.tars, e)
				continue
			}
			ls.add(e)
			continue
		}
		err := b.addSource(ls, root, filter, c, src, dest, destDir, uid, gid, mode)
		if errors.As(err, new(emptyWildcard)) {
			// COPY package.json yarn.loc[k] ./ copies what there is, as
			// docker's builders do; only when no source at all matched
			// is it an error.
			emptyErr = cmp.Or(emptyErr, err)
			continue
		}
		if err != nil {
			return err
		}
		matched = true
	}
	if !matched && emptyErr != nil {
		return emptyErr
	}
	// The content key hashes the layer's headers without mtime, then its
	// content. Local archives are hashed while the layer is spooled, in one
	// pass over what may be a compressed file; otherwise the key comes from
	// the files' digests (remembered across builds, see fileDigests), a
	// cache hit writes nothing, and a miss writes the layer straight into
	// the store.
	content := sha256.New()
	var spooled *os.File
	if len(ls.tars) > 0 {
		tmpDir, release, err := b.r.store.TempDir("build-")
		if err != nil {
			return err
		}
		defer release()
		if spooled, err = os.Create(filepath.Join(tmpDir, "layer.tar")); err != nil {
			return err
		}
		defer spooled.Close()
		if err := writeCopyLayer(spooled, content, ls.entries, ls.tars, b.clampTime); err != nil {
			return err
		}
	} else if err := b.copyContentKey(content, ls.entries); err != nil {
		return err
	}
	key := b.copyKey(s, n, c, usedArgs, content)
	if img := b.cached(ctx, key); img != nil {
		b.report(s, n, true)
		return s.useCached(img, key)
	}
	b.report(s, n, false)
	var diffID string
	var size int64
	var unlock func()
	if spooled != nil {
		if diffID, size, unlock, err = b.ingestSpooled(ctx, spooled); err != nil {
			return err
		}
	} else {
		if unlock, err = b.r.gcShared(ctx); err != nil {
			return err
		}
		if diffID, size, err = b.r.store.IngestFrom(func(w io.Writer) error {
			return writeCopyLayer(w, io.Discard, ls.entries, nil, b.clampTime) // the key is known
		}); err != nil {
			unlock()
			return err
		}
	}
	defer unlock()
	if s.img == nil || s.dirty {
		if err := b.flush(ctx, s); err != nil {
			return err
		}
	}
	return b.commitLayer(ctx, s, key, diffID, size, copyHistory(n, c))
}

// copyKey is a COPY's or ADD's cache key: its parent, its text and flags,
// the args it used and the hash of its content.
func (b *builder) copyKey(s *buildState, n *parser.Node, c copySpec, usedArgs func() []string, content hash.Hash) string {
	contentKey := hex.EncodeToString(content.Sum(nil))
	text := expandedText(n, func(w string) (string, error) { return w, nil })
	return stepKey(s.key, text+"\n"+c.chown+"\n"+c.chmod+"\n"+c.DestPath+"\n"+strings.Join(c.SourcePaths, "\n"), usedArgs(), contentKey)
}

// copyHistory is a COPY's or ADD's created_by as docker 20.10's BuildKit
// writes it: the sources, heredocs as <<NAME (later BuildKit's form; 20.10
// has no heredocs), the destination as written. Later BuildKit also writes
// --parents, --chown and --chmod; the conformance goldens are 20.10's.
func copyHistory(n *parser.Node, c copySpec) string {
	words := append([]string{strings.ToUpper(n.Value)}, c.SourcePaths...)
	for _, hc := range c.SourceContents {
		words = append(words, "<<"+hc.Path)
	}
	words = append(words, c.DestPath, "# buildkit")
	return strings.Join(words, " ")
}

// layerSet collects the entries of a COPY layer, each path once.
type layerSet struct {
	ifs       *imageFS
	link      bool
	seen      map[string]bool
	entries   []copyEntry
	tars      []copyEntry // ADD: local archives to extract
	epoch     func(time.Time) time.Time
	keepOwner bool // sources of a stage or an image keep their owners
	owned     bool // directories the layer creates get uid:gid (--chown), not root
	uid, gid  int
}

func (ls *layerSet) add(e copyEntry) {
	name := strings.TrimSuffix(e.hdr.Name, "/")
	if !ls.seen[name] {
		ls.seen[name] = true
		ls.entries = append(ls.entries, e)
	}
}

// dir adds a directory the copy creates or writes into: one the image has
// keeps its mode, owner and mtime (the layer's entry decides them in the
// merged view); a new one is 0755, root's or --chown's, as BuildKit makes
// it.
func (ls *layerSet) dir(p string) {
	hdr := &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if ls.owned {
		hdr.Uid, hdr.Gid = ls.uid, ls.gid
	}
	if !ls.link {
		if st, ok := ls.ifs.lstat(p); ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			hdr.Mode = int64(st.Mode & 0o7777)
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
			hdr.ModTime = ls.epoch(time.Unix(st.Mtim.Unix()))
		}
	}
	ls.add(copyEntry{hdr: hdr})
}

// emptyWildcard is addSource's error for a source with wildcards that
// matched nothing.
type emptyWildcard struct{ error }

func (e emptyWildcard) Unwrap() error { return e.error }

// addSource adds one source path (with wildcards) of root to the layer.
func (b *builder) addSource(ls *layerSet, root *os.Root, filter copyFilter, c copySpec, src, dest string, destDir bool, uid, gid int, mode *fs.FileMode) error {
	clean := path.Clean(src)
	if path.IsAbs(clean) {
		clean = path.Clean("." + clean) // a source is always relative to the context (or stage) root
	}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("%w: %s: forbidden path outside the build context", ErrInvalid, src)
	}
	// --parents keeps the source's path below the pivot: the part before
	// "/./", else the root.
	pivot := ""
	if c.parents {
		if i := strings.Index(src, "/./"); i >= 0 {
			pivot = strings.TrimPrefix(path.Clean("/"+src[:i]), "/")
		}
	}
	matches, err := globRoot(root, clean, filter.ignore)
	if err != nil {
		return err
	}
	matches = slices.DeleteFunc(matches, func(m string) bool { return filter.exclude.Excluded(path.Base(m)) })
	if len(matches) == 0 {
		err := fmt.Errorf("%w: %s: no source files were specified or all were excluded", ErrNotFound, src)
		if strings.ContainsAny(clean, "*?[") {
			return emptyWildcard{err}
		}
		return err
	}
	multi := len(matches) > 1 || strings.ContainsAny(clean, "*?[")
	for _, m := range matches {
		// The source itself is followed, as BuildKit follows it (names
		// still come from m): a link to a file copies the file, a link to
		// a directory its contents. Links below a directory stay links.
		real, err := followInRoot(root, m)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		fi, err := root.Lstat(real)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && real != m && filter.ignore.Excluded(real)) {
			return fmt.Errorf("%w: %s: the link's target /%s is not in the build context", ErrNotFound, src, real)
		}
		if err != nil {
			return err
		}
		target := dest
		if c.parents {
			rel := m
			if pivot != "" {
				rel = strings.TrimPrefix(strings.TrimPrefix(m, pivot), "/")
			}
			if rel != "." {
				target = path.Join(dest, rel)
			}
			for _, p := range parentDirs(target, fi.IsDir()) {
				ls.dir(p)
			}
		} else if !fi.IsDir() && (destDir || multi) {
			target = path.Join(dest, path.Base(m))
		}
		if fi.IsDir() {
			// A directory's contents are copied, not the directory.
			if target != "" {
				ls.dir(target)
			}
			err = walkRoot(root, real, filter, func(rel string, fi fs.FileInfo) error {
				sub := rel
				if real != "." {
					sub = strings.TrimPrefix(rel, real+"/")
				}
				e, err := entryFor(root, rel, path.Join(target, sub), fi, uid, gid, mode, ls)
				if err == nil && e.hdr != nil {
					ls.add(e)
				}
				return err
			})
			if err != nil {
				return err
			}
			continue
		}
		e, err := entryFor(root, real, target, fi, uid, gid, mode, ls)
		if err != nil {
			return err
		}
		if e.hdr == nil {
			continue
		}
		if c.isAdd && fi.Mode().IsRegular() && (c.unpack == nil || *c.unpack) && isTarFile(root, real) {
			e.hdr.Name = dest
			e.chown = ls.owned
			ls.tars = append(ls.tars, e)
			continue
		}
		ls.add(e)
	}
	return nil
}

// followInRoot resolves the symlinks of every component of rel (the last
// one too) as if root were /: an absolute target starts again at root, and
// ".." stops at it, so a link can never lead out of root (BuildKit's
// scoped resolution). The result is relative to root, "." for root itself.
func followInRoot(root *os.Root, rel string) (string, error) {
	out, err := scopedResolve(rel, func(p string) (string, bool, error) {
		fi, err := root.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return "", false, nil
		}
		target, err := root.Readlink(p)
		return target, true, err
	})
	if out == "" && err == nil {
		return ".", nil
	}
	return out, err
}

// scopedResolve follows the symlinks of every component of rel, the last
// one too, in a tree whose links link reads (target, whether p is a link):
// an absolute target starts again at the top and ".." stops there. The
// result is relative to the top ("" for the top itself); a path that does
// not exist resolves as far as it does.
func scopedResolve(rel string, link func(p string) (string, bool, error)) (string, error) {
	parts := strings.Split(rel, "/")
	out := ""
	for links := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			out = strings.TrimPrefix(path.Dir("/"+out), "/")
			continue
		}
		next := path.Join(out, part)
		target, isLink, err := link(next)
		if err != nil {
			return "", err
		}
		if !isLink {
			out = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", rel)
		}
		if path.IsAbs(target) {
			out = ""
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return out, nil
}

// parentDirs lists dest's ancestors (and dest itself when it is a
// directory) that the layer creates, top down.
func parentDirs(dest string, destIsDir bool) []string {
	var out []string
	d := dest
	if !destIsDir {
		d = path.Dir(dest)
	}
	for ; d != "." && d != "" && d != "/"; d = path.Dir(d) {
		out = append(out, d)
	}
	slices.Reverse(out)
	return out
}

// resolveChown turns --chown's user[:group] into ids: numbers as they are,
// names looked up in the image's /etc/passwd and /etc/group (read as files,
// never through NSS). A user without a group gives the group the user's
// id, as docker does. No --chown is (-1, -1).
func resolveChown(ifs *imageFS, spec string) (uid, gid int, err error) {
	if spec == "" {
		return -1, -1, nil
	}
	u, g, hasG := strings.Cut(spec, ":")
	if uid, err = lookupID(ifs, "etc/passwd", u); err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	gid = uid
	if hasG {
		if gid, err = lookupID(ifs, "etc/group", g); err != nil {
			return 0, 0, fmt.Errorf("--chown=%s: %w", spec, err)
		}
	}
	return uid, gid, nil
}

// lookupID finds name's id (the third field) in a passwd or group file of
// the image; a number is its own id.
func lookupID(ifs *imageFS, file, name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		if id < 0 {
			return 0, fmt.Errorf("%w: negative id %d", ErrInvalid, id)
		}
		return id, nil
	}
	data, err := ifs.readFile(file, 4<<20)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) >= 3 && f[0] == name {
			if id, err := strconv.Atoi(f[2]); err == nil && id >= 0 {
				return id, nil
			}
		}
	}
	if name == "root" {
		return 0, nil
	}
	what := "user"
	if file == "etc/group" {
		what = "group"
	}
	return 0, fmt.Errorf("%w: unable to find %s %s: no matching entries in /%s", ErrNotFound, what, name, file)
}

// entryFor is the layer entry for the file rel of root at target.
// Context files become root's; files of a stage or an image keep their
// owner, as with BuildKit; --chown (uid >= 0) overrides both.
func entryFor(root *os.Root, rel, target string, fi fs.FileInfo, uid, gid int, mode *fs.FileMode, ls *layerSet) (copyEntry, error) {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return copyEntry{}, err
	}
	hdr.Name = target
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.ModTime = ls.epoch(fi.ModTime().Truncate(time.Second))
	hdr.Format = tar.FormatPAX
	hdr.Uid, hdr.Gid = 0, 0
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && ls.keepOwner {
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	}
	if uid >= 0 {
		hdr.Uid, hdr.Gid = uid, gid
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if hdr.Linkname, err = root.Readlink(rel); err != nil {
			return copyEntry{}, err
		}
	case fi.IsDir():
		hdr.Name += "/"
	case fi.Mode().IsRegular():
	default:
		return copyEntry{}, nil // sockets, devices, fifos: left out, as docker does for a context
	}
	if mode != nil && fi.Mode()&fs.ModeSymlink == 0 {
		hdr.Mode = int64(*mode)
	}
	return copyEntry{hdr: hdr, root: root, src: rel}, nil
}

// globRoot expands a source path with wildcards inside root, element by
// element, without following symlinks. A path without wildcards is
// returned as is if it exists.
func globRoot(root *os.Root, pattern string, ignore *dockerfile.Ignore) ([]string, error) {
	if !strings.ContainsAny(pattern, "*?[\\") {
		if _, err := root.Lstat(pattern); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: %w", pattern, err)
		}
		if pattern != "." && ignore.Excluded(pattern) {
			return nil, nil
		}
		return []string{pattern}, nil
	}
	cur := []string{"."}
	for _, elem := range strings.Split(pattern, "/") {
		var next []string
		for _, dir := range cur {
			if !strings.ContainsAny(elem, "*?[\\") {
				p := path.Join(dir, elem)
				if _, err := root.Lstat(p); err == nil {
					next = append(next, p)
				}
				continue
			}
			fi, err := root.Lstat(dir)
			if err != nil || !fi.IsDir() {
				continue
			}
			names, err := rootDirNames(root, dir)
			if err != nil {
				return nil, err
			}
			for _, name := range names {
				ok, err := path.Match(elem, name)
				if err != nil {
					return nil, fmt.Errorf("%w: bad pattern %q", ErrInvalid, pattern)
				}
				if ok {
					next = append(next, path.Join(dir, name))
				}
			}
		}
		cur = next
	}
	var out []string
	for _, p := range cur {
		if !ignore.Excluded(p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func rootDirNames(root *os.Root, dir string) ([]string, error) {
	d, err := root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// walkRoot calls fn for dir's descendants (not dir itself), sorted, depth
// first, skipping excluded paths and never following symlinks.
func walkRoot(root *os.Root, dir string, filter copyFilter, fn func(rel string, fi fs.FileInfo) error) error {
	return walkRootFrom(root, dir, dir, filter, fn)
}

// walkRootFrom is walkRoot with top, the source the walk began at, which
// --exclude patterns are relative to.
func walkRootFrom(root *os.Root, top, dir string, filter copyFilter, fn func(rel string, fi fs.FileInfo) error) error {
	names, err := rootDirNames(root, dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		rel := path.Join(dir, name)
		fi, err := root.Lstat(rel)
		if err != nil {
			return err
		}
		sub := rel
		if top != "." {
			sub = strings.TrimPrefix(rel, top+"/")
		}
		excluded := filter.excluded(rel, sub)
		if !excluded {
			if err := fn(rel, fi); err != nil {
				return err
			}
		}
		if fi.IsDir() && (!excluded || filter.mayReinclude()) {
			if err := walkRootFrom(root, top, rel, filter, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// isTarFile reports whether a file is a (possibly compressed) tar, which
// ADD extracts.
func isTarFile(root *os.Root, rel string) bool {
	f, err := root.Open(rel)
	if err != nil {
		return false
	}
	defer f.Close()
	rd, err := archive.Decompress(bufio.NewReader(f))
	if err != nil {
		return false
	}
	defer rd.Close()
	_, err = tar.NewReader(rd).Next()
	return err == nil
}

// writeCopyLayer writes the layer tar of a COPY or ADD to w and hashes into
// content what the cache key covers: every header but its times, and every
// byte of content.
func writeCopyLayer(w io.Writer, content io.Writer, entries, tars []copyEntry, clamp func(time.Time) time.Time) error {
	bw := bufio.NewWriterSize(w, archive.CopyBufSize)
	tw := tar.NewWriter(bw)
	buf := make([]byte, archive.CopyBufSize)
	for _, e := range entries {
		keyHeader(content, e.hdr)
		if err := tw.WriteHeader(e.hdr); err != nil {
			return err
		}
		if e.hdr.Typeflag != tar.TypeReg {
			continue
		}
		if e.data != nil {
			if _, err := io.MultiWriter(tw, content).Write(e.data); err != nil {
				return err
			}
			continue
		}
		f, err := e.root.Open(e.src)
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(io.MultiWriter(tw, content), io.LimitReader(f, e.hdr.Size), buf)
		f.Close()
		if err != nil {
			return err
		}
		if n != e.hdr.Size {
			return fmt.Errorf("%s changed size while it was copied", e.src)
		}
	}
	for _, t := range tars {
		if err := extractArchiveInto(tw, t, content, buf, clamp); err != nil {
			return fmt.Errorf("extracting %s: %w", t.src, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// extractArchiveInto copies the entries of a local archive into the layer under
// the ADD's destination directory, as ADD extracts it.
func extractArchiveInto(tw *tar.Writer, t copyEntry, content io.Writer, buf []byte, clamp func(time.Time) time.Time) error {
	f, err := t.root.Open(t.src)
	if err != nil {
		return err
	}
	defer f.Close()
	rd, err := archive.Decompress(bufio.NewReader(f))
	if err != nil {
		return err
	}
	defer rd.Close()
	tr := tar.NewReader(rd)
	dest := strings.TrimSuffix(t.hdr.Name, "/")
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		isDir := hdr.Typeflag == tar.TypeDir
		hdr.Name = path.Join(dest, name)
		hdr.ModTime = clamp(hdr.ModTime)
		if isDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = path.Join(dest, strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/"))
		}
		if t.chown {
			hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = t.hdr.Uid, t.hdr.Gid, "", ""
		}
		keyHeader(content, hdr)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(io.MultiWriter(tw, content), tr, buf); err != nil {
			return err
		}
	}
}

// lazyRoot is a stage's or an image's filesystem, materialized once for
// every step that reads it.
type lazyRoot struct {
	once sync.Once
	dir  string
	err  error
}

// sourceRoot opens where a --from reads: the context (with its
// .dockerignore) when from is empty, else a built stage's or an image's
// filesystem (pulled when the store lacks it). key names the content of a
// stage or image ("" for the context, whose content the caller hashes).
// The caller closes the root unless from is empty. s is the state of the
// stage that reads.
func (b *builder) sourceRoot(ctx context.Context, s *buildState, from string) (root *os.Root, ignore *dockerfile.Ignore, key string, err error) {
	if from == "" {
		return b.ctxRoot, b.ignore, "", nil
	}
	var img *Image
	if dep := b.stageByName(from); dep != nil {
		if dep.done == nil {
			return nil, nil, "", fmt.Errorf("%w: --from=%s: the stage is not built (a trigger's --from may name images only)", ErrInvalid, from)
		}
		// The Dockerfile's own --from are checked before the build; an
		// ONBUILD trigger's come from the base image, and one naming the
		// stage that runs it, or a later one, would wait for itself.
		if dep.index >= s.stage {
			return nil, nil, "", fmt.Errorf("%w: --from=%s names a later stage or this one", ErrInvalid, from)
		}
		select {
		case <-dep.done:
		case <-ctx.Done():
			return nil, nil, "", ctx.Err()
		}
		img, key = dep.state.img, "stage:"+dep.state.key
	} else {
		if img, err = b.image(ctx, from); err != nil {
			return nil, nil, "", fmt.Errorf("--from=%s: %w", from, err)
		}
		key = "image:" + img.ID
	}
	dir, err := b.materialize(ctx, key, img)
	if err != nil {
		return nil, nil, "", err
	}
	root, err = os.OpenRoot(dir)
	return root, nil, key, err
}

// image looks ref up in the store, pulling it when missing, or always
// (once a build) with WithBuildPull.
func (b *builder) image(ctx context.Context, ref string) (*Image, error) {
	if b.cfg.pull {
		key := ref // one pull per image named, however it is spelled
		if parsed, err := parseRef(ref, false); err == nil {
			key = refKey(parsed)
		}
		b.mu.Lock()
		pull, ok := b.pulls[key]
		if !ok {
			pull = sync.OnceValues(func() (*Image, error) { return b.r.Pull(ctx, ref) })
			b.pulls[key] = pull
		}
		b.mu.Unlock()
		return pull()
	}
	img, err := b.r.Image(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		img, err = b.r.Pull(ctx, ref)
	}
	return img, err
}

// materialize unpacks img's layers, in order, into a temp directory under
// the root, once per key for the whole build. A nil img is empty.
func (b *builder) materialize(ctx context.Context, key string, img *Image) (string, error) {
	b.mu.Lock()
	lr, ok := b.roots[key]
	if !ok {
		lr = &lazyRoot{}
		b.roots[key] = lr
	}
	b.mu.Unlock()
	lr.once.Do(func() {
		tmp, release, err := b.r.store.TempDir("build-stage-")
		if err != nil {
			lr.err = err
			return
		}
		b.mu.Lock()
		b.releases = append(b.releases, release)
		b.mu.Unlock()
		dir := filepath.Join(tmp, "rootfs")
		if err := os.Mkdir(dir, 0o755); err != nil {
			lr.err = err
			return
		}
		if img != nil {
			for _, l := range img.Layers {
				if lr.err = b.applyLayer(ctx, dir, l); lr.err != nil {
					return
				}
			}
		}
		lr.dir = dir
	})
	return lr.dir, lr.err
}

func (b *builder) applyLayer(ctx context.Context, dir string, l Layer) error {
	f, err := b.r.store.Open(l.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	rd, err := archive.Decompress(bufio.NewReaderSize(f, archive.CopyBufSize))
	if err != nil {
		return err
	}
	defer rd.Close()
	_, err = archive.Apply(ctx, dir, rd, b.r.applyOptions())
	return err
}

func isURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// urlFileName is the name ADD gives a download into a directory: the last
// element of the URL's path.
func urlFileName(src string) (string, error) {
	u, err := url.Parse(src)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrInvalid, src, err)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		return "", fmt.Errorf("%w: %s: cannot determine a file name from the URL; give the destination a file name", ErrInvalid, src)
	}
	return name, nil
}

// maxDownload bounds an ADD of a URL.
const maxDownload = 8 << 30

// download fetches an ADD's URL into a temp file under the root, verifying
// checksum ("sha256:<hex>") when given. The entry's file is mode 0600 with
// the Last-Modified time, as BuildKit makes it; the caller closes its root.
func (b *builder) download(ctx context.Context, src, checksum string) (copyEntry, error) {
	var want string
	if checksum != "" {
		alg, hexsum, ok := strings.Cut(checksum, ":")
		if !ok || alg != "sha256" || len(hexsum) != 64 {
			return copyEntry{}, fmt.Errorf("%w: --checksum=%s: want sha256:<64 hex digits>", ErrInvalid, checksum)
		}
		want = strings.ToLower(hexsum)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return copyEntry{}, fmt.Errorf("%w: %s: %v", ErrInvalid, src, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return copyEntry{}, fmt.Errorf("downloading %s: %w", src, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return copyEntry{}, fmt.Errorf("downloading %s: %s", src, resp.Status)
	}
	tmp, release, err := b.r.store.TempDir("build-download-")
	if err != nil {
		return copyEntry{}, err
	}
	b.mu.Lock()
	b.releases = append(b.releases, release)
	b.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(tmp, "download"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return copyEntry{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, maxDownload+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return copyEntry{}, fmt.Errorf("downloading %s: %w", src, err)
	}
	if n > maxDownload {
		return copyEntry{}, fmt.Errorf("downloading %s: larger than %d bytes", src, int64(maxDownload))
	}
	if got := hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		return copyEntry{}, fmt.Errorf("%w: %s: checksum mismatch: expected sha256:%s, got sha256:%s", ErrInvalid, src, want, got)
	}
	mtime := time.Unix(0, 0)
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		mtime = t
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return copyEntry{}, err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Mode: 0o600, Size: n, ModTime: mtime.Truncate(time.Second), Format: tar.FormatPAX}
	return copyEntry{hdr: hdr, root: root, src: "download"}, nil
}

// keyHash hashes what a build cache key covers of a file tree: each path,
// type, mode, owner, link target and size, and the bytes; never mtimes.
type keyHash struct{ h hash.Hash }

func newKeyHash() *keyHash { return &keyHash{h: sha256.New()} }

func (k *keyHash) header(name string, typ byte, mode int64, uid, gid int, link string, size int64) {
	fmt.Fprintf(k.h, keyHeaderFormat, name, typ, mode, uid, gid, link, size)
}

// keyHeaderFormat is the line a cache key hashes for each file: path, type,
// mode, owner, link target and size; never times.
const keyHeaderFormat = "%q %c %o %d %d %q %d\n"

// keyHeader writes the key line of a tar header to w.
func keyHeader(w io.Writer, h *tar.Header) {
	fmt.Fprintf(w, keyHeaderFormat, h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, h.Size)
}

func (k *keyHash) sum() string { return hex.EncodeToString(k.h.Sum(nil)) }

func hashString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// cleanSource makes a --mount source relative to its root; ".." cannot
// climb above it.
func cleanSource(p string) string {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// copyTree copies src of root (a directory or a file; symlinks on the way
// to it resolved inside root, symlinks below it copied as symlinks) to the
// host path dst, which must not exist, with modes and owners, leaving out
// what ignore excludes, and hashes it into h when h is not nil. Unless
// copyData, regular files are hard links to root's where the filesystem
// allows: the caller must then only read them.
//
// What ignore excludes is not there, as BuildKit never sends it: src
// itself included, and judged by where it leads, not by the name of a
// link to it.
//
// The owners of the context's files (the only tree hashed: h not nil)
// are hashed as root's,
// as BuildKit receives a context (its local source resets them): the
// checkout's owner, which differs between machines, stays out of the key.
// The tree keeps them (its files are links to the checkout's: copies,
// made to show root's, would cost a copy of the bound files at every
// build and lose their times).
func copyTree(root *os.Root, src string, ignore *dockerfile.Ignore, dst string, h *keyHash, copyData bool) error {
	real, err := followInRoot(root, src)
	if err != nil {
		return err
	}
	if real != "." && (ignore.Excluded(src) || ignore.Excluded(real)) {
		return fmt.Errorf("%w: %s is excluded by .dockerignore", ErrNotFound, src)
	}
	src = real
	fi, err := root.Stat(src)
	if err != nil {
		return err
	}
	one := func(rel, to string, fi fs.FileInfo) error {
		st, _ := fi.Sys().(*syscall.Stat_t)
		uid, gid := 0, 0
		if st != nil {
			uid, gid = int(st.Uid), int(st.Gid)
		}
		mode := int64(fi.Mode().Perm())
		if st != nil {
			mode = int64(st.Mode & 0o7777)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := root.Readlink(rel)
			if err != nil {
				return err
			}
			if h != nil {
				h.header(rel, tar.TypeSymlink, 0, 0, 0, target, 0)
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
			return os.Lchown(to, uid, gid)
		case fi.IsDir():
			if h != nil {
				h.header(rel, tar.TypeDir, mode, 0, 0, "", 0)
			}
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if h != nil {
				h.header(rel, tar.TypeReg, mode, 0, 0, "", fi.Size())
			}
			linked, err := copyFileFromRoot(root, rel, to, h, copyData)
			if err != nil {
				return err
			}
			if linked {
				// The context's own inode, whose owner and mode these
				// are: a chown, even to the same owner, would strip its
				// file capabilities and bump its ctime.
				return nil
			}
		default:
			return nil // devices, fifos, sockets: not in a build's sources
		}
		if err := os.Lchown(to, uid, gid); err != nil {
			return err
		}
		return unix.Chmod(to, uint32(mode))
	}
	if err := one(src, dst, fi); err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	// Directories are made writable for their content first, then get
	// their own mode back.
	unix.Chmod(dst, 0o700)
	var dirs []string
	err = walkRoot(root, src, copyFilter{ignore: ignore}, func(rel string, fi fs.FileInfo) error {
		sub := rel
		if src != "." {
			sub = strings.TrimPrefix(rel, src+"/")
		}
		to := filepath.Join(dst, filepath.FromSlash(sub))
		if fi.IsDir() {
			dirs = append(dirs, rel)
		}
		if err := one(rel, to, fi); err != nil {
			return err
		}
		if fi.IsDir() {
			return unix.Chmod(to, 0o700)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, rel := range append(dirs, src) {
		fi, err := root.Lstat(rel)
		if err != nil {
			return err
		}
		sub := rel
		if src != "." {
			sub = strings.TrimPrefix(rel, src+"/")
		}
		to := dst
		if rel != src {
			to = filepath.Join(dst, filepath.FromSlash(sub))
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if err := unix.Chmod(to, st.Mode&0o7777); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyFileFromRoot copies (or hard-links, reported by linked) the regular
// file rel of root to the host path to, hashing its bytes into h.
func copyFileFromRoot(root *os.Root, rel, to string, h *keyHash, copyData bool) (linked bool, err error) {
	in, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer in.Close()
	if !copyData {
		// linkat of the open file itself: the very inode root resolved.
		err := unix.Linkat(int(in.Fd()), "", unix.AT_FDCWD, to, unix.AT_EMPTY_PATH)
		if err == nil {
			if h != nil {
				_, err = io.Copy(h.h, in)
			}
			return true, err
		}
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false, err
	}
	w := io.Writer(out)
	if h != nil {
		w = io.MultiWriter(out, h.h)
	}
	_, err = io.Copy(w, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return false, err
}
