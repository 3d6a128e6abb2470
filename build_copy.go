package berth

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
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
}

// copyStep runs COPY or ADD: the layer is a tar of the sources, written
// directly, with no container.
func (b *builder) copyStep(ctx context.Context, label string, s *buildState, n *parser.Node, sd instructions.SourcesAndDest, from, chown, chmod string, isAdd bool, usedArgs func() []string) error {
	root, ignore, srcKind := b.ctxRoot, b.ignore, "dir"
	if from != "" {
		dep := b.stageByName(from)
		if dep == nil {
			return fmt.Errorf("%w: COPY --from=%s: only earlier stages are supported", ErrUnsupported, from)
		}
		dir, err := b.stageRoot(ctx, dep)
		if err != nil {
			return err
		}
		if root, err = os.OpenRoot(dir); err != nil {
			return err
		}
		defer root.Close()
		ignore = nil
	}
	uid, gid, err := parseChown(chown)
	if err != nil {
		return err
	}
	var mode *fs.FileMode
	if chmod != "" {
		m, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("%w: --chmod=%s: only octal modes are supported", ErrUnsupported, chmod)
		}
		fm := fs.FileMode(m)
		mode = &fm
	}
	dest := sd.DestPath
	destDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.") || len(sd.SourcePaths) > 1
	if !path.IsAbs(dest) {
		wd := s.cf.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	dest = strings.TrimPrefix(path.Clean(dest), "/")
	// Docker's rule: a destination that is a directory in the image is
	// copied into, trailing slash or not.
	if !destDir && (dest == "" || b.r.isDirInImage(s.img, dest)) {
		destDir = true
	}

	var entries []copyEntry
	var tars []copyEntry // ADD: local archives to extract
	seen := map[string]bool{}
	add := func(e copyEntry) {
		if !seen[e.hdr.Name] {
			seen[e.hdr.Name] = true
			entries = append(entries, e)
		}
	}
	for _, p := range parentDirs(dest, destDir) {
		add(copyEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}})
	}
	for _, src := range sd.SourcePaths {
		if strings.Contains(src, "://") {
			return fmt.Errorf("%w: %s of a URL", ErrUnsupported, strings.ToUpper(n.Value))
		}
		clean := path.Clean(src)
		if path.IsAbs(clean) {
			clean = "." + clean // a source is always relative to the context (or stage) root
			clean = path.Clean(clean)
		}
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("%w: %s: forbidden path outside the build context", ErrInvalid, src)
		}
		matches, err := globRoot(root, clean, ignore)
		if err != nil {
			return err
		}
		if len(matches) == 0 {
			return fmt.Errorf("%w: %s: no source files were specified or all were excluded", ErrNotFound, src)
		}
		multi := len(matches) > 1 || strings.ContainsAny(clean, "*?[")
		for _, m := range matches {
			fi, err := root.Lstat(m)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				// A directory's contents are copied, not the directory.
				if dest != "" {
					add(copyEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: dest + "/", Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}})
				}
				err = walkRoot(root, m, ignore, func(rel string, fi fs.FileInfo) error {
					sub := rel
					if m != "." {
						sub = strings.TrimPrefix(rel, m+"/")
					}
					e, err := entryFor(root, rel, path.Join(dest, sub), fi, uid, gid, mode)
					if err == nil && e.hdr != nil {
						add(e)
					}
					return err
				})
				if err != nil {
					return err
				}
				continue
			}
			target := dest
			if destDir || multi {
				target = path.Join(dest, path.Base(m))
			}
			e, err := entryFor(root, m, target, fi, uid, gid, mode)
			if err != nil {
				return err
			}
			if e.hdr == nil {
				continue
			}
			if isAdd && fi.Mode().IsRegular() && isTarFile(root, m) {
				e.hdr.Name = dest
				tars = append(tars, e)
				continue
			}
			add(e)
			if len(sd.SourcePaths) == 1 && len(matches) == 1 && fi.Mode().IsRegular() {
				srcKind = "file"
			}
		}
	}
	// The layer is written to a temp file while its content key is hashed:
	// headers without mtime, then bytes.
	tmpDir, release, err := b.r.store.TempDir("build-")
	if err != nil {
		return err
	}
	defer release()
	f, err := os.Create(filepath.Join(tmpDir, "layer.tar"))
	if err != nil {
		return err
	}
	defer f.Close()
	content := sha256.New()
	if err := writeCopyLayer(f, content, entries, tars, dest); err != nil {
		return err
	}
	contentKey := hex.EncodeToString(content.Sum(nil))
	text := expandedText(n, func(w string) (string, error) { return w, nil })
	key := stepKey(s.key, text+"\n"+chown+"\n"+chmod+"\n"+sd.DestPath+"\n"+strings.Join(sd.SourcePaths, "\n"), usedArgs(), contentKey)
	if img := b.cached(ctx, key); img != nil {
		b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original, Cached: true})
		return s.useCached(img, key)
	}
	b.emit(BuildEvent{Step: b.step, Stage: label, Instruction: n.Original})
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	unlock, err := b.r.gcShared(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	diffID, size, err := b.r.store.Ingest(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return err
	}
	if s.img == nil || s.dirty {
		if err := b.flush(ctx, s); err != nil {
			return err
		}
	}
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s %s:%s in /%s", strings.ToUpper(n.Value), srcKind, contentKey, dest)
	if destDir && !strings.HasSuffix(createdBy, "/") {
		createdBy += "/"
	}
	return b.commitLayer(ctx, s, key, diffID, size, createdBy)
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

func parseChown(spec string) (uid, gid int, err error) {
	if spec == "" {
		return -1, -1, nil
	}
	u, g, hasG := strings.Cut(spec, ":")
	if uid, err = strconv.Atoi(u); err != nil {
		if u != "root" {
			return 0, 0, fmt.Errorf("%w: --chown=%s: only numeric ids (and root) are supported", ErrUnsupported, spec)
		}
		uid = 0
	}
	gid = uid
	if hasG {
		if gid, err = strconv.Atoi(g); err != nil {
			if g != "root" {
				return 0, 0, fmt.Errorf("%w: --chown=%s: only numeric ids (and root) are supported", ErrUnsupported, spec)
			}
			gid = 0
		}
	}
	return uid, gid, nil
}

// entryFor is the layer entry for the file rel of root at target.
func entryFor(root *os.Root, rel, target string, fi fs.FileInfo, uid, gid int, mode *fs.FileMode) (copyEntry, error) {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return copyEntry{}, err
	}
	hdr.Name = target
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.ModTime = fi.ModTime().Truncate(time.Second)
	hdr.Format = tar.FormatPAX
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	}
	// Docker gives copied files root ownership unless --chown.
	hdr.Uid, hdr.Gid = 0, 0
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
func walkRoot(root *os.Root, dir string, ignore *dockerfile.Ignore, fn func(rel string, fi fs.FileInfo) error) error {
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
		excluded := ignore.Excluded(rel)
		if !excluded {
			if err := fn(rel, fi); err != nil {
				return err
			}
		}
		if fi.IsDir() && (!excluded || ignore.MayReinclude()) {
			if err := walkRoot(root, rel, ignore, fn); err != nil {
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
func writeCopyLayer(w io.Writer, content hash.Hash, entries, tars []copyEntry, dest string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	buf := make([]byte, 1<<20)
	keyHeader := func(h *tar.Header) {
		fmt.Fprintf(content, "%q %c %o %d %d %q %d\n", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, h.Size)
	}
	for _, e := range entries {
		keyHeader(e.hdr)
		if err := tw.WriteHeader(e.hdr); err != nil {
			return err
		}
		if e.hdr.Typeflag != tar.TypeReg {
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
		if err := extractArchiveInto(tw, t, content, buf); err != nil {
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
func extractArchiveInto(tw *tar.Writer, t copyEntry, content hash.Hash, buf []byte) error {
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
		if isDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = path.Join(dest, strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/"))
		}
		fmt.Fprintf(content, "%q %c %o %d %d %q %d\n", hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Linkname, hdr.Size)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(io.MultiWriter(tw, content), tr, buf); err != nil {
			return err
		}
	}
}

// stageRoot materializes a built stage's filesystem in a temp directory
// under the root, for COPY --from, by applying its layers in order.
func (b *builder) stageRoot(ctx context.Context, st *buildStage) (string, error) {
	if dir, ok := b.stageRoots[st.index]; ok {
		return dir, nil
	}
	tmp, release, err := b.r.store.TempDir("build-stage-")
	if err != nil {
		return "", err
	}
	b.releases = append(b.releases, release)
	dir := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if st.state.img != nil {
		for _, l := range st.state.img.Layers {
			f, err := b.r.store.Open(l.Digest)
			if err != nil {
				return "", err
			}
			rd, err := archive.Decompress(bufio.NewReaderSize(f, 1<<20))
			if err != nil {
				f.Close()
				return "", err
			}
			_, err = archive.Apply(ctx, dir, rd, b.r.applyOptions())
			rd.Close()
			f.Close()
			if err != nil {
				return "", err
			}
		}
	}
	b.stageRoots[st.index] = dir
	return dir, nil
}

// isDirInImage reports whether rel (slash-separated, relative to /) is a
// directory in img's merged filesystem, reading its layers as overlayfs
// merges them (whiteouts and opaque directories respected, no symlink
// followed).
func (r *Runtime) isDirInImage(img *Image, rel string) bool {
	if img == nil {
		return false
	}
	d := &differ{}
	defer d.close()
	for i := len(img.Layers) - 1; i >= 0; i-- {
		dir, err := r.snaps.FS(img.Layers[i].ChainID)
		if err != nil {
			return false
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		d.lowers = append(d.lowers, fd)
	}
	st, ok := d.lowerStat(rel)
	return ok && st.Mode&unix.S_IFMT == unix.S_IFDIR
}
