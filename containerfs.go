package berth

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

// This file holds what docker cp, diff, export and top do: reading and
// writing a container's filesystem from the host, and listing its
// processes.
//
// A container's filesystem is hostile to the host: a process in it can
// replace any directory on a path by a symlink at any moment (CVE-2018-15664,
// where docker cp followed such a symlink out of the container). So no path
// inside a container is ever resolved as a string on the host. Every
// operation starts from an fd of the container's root directory and resolves
// below it with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), which treats
// that fd as "/" for "..", absolute symlinks and relative ones alike, then
// works on the fds it got:
//
//   - a running container's root is /proc/PID/root of its first process,
//     opened and then checked against the record's start time (so a recycled
//     pid is never used). Lookups below it cross the mounts of the
//     container's mount namespace, so they see exactly what the container
//     sees, /proc and /dev included;
//   - a stopped container has no mounts; its overlay is mounted in a mount
//     namespace private to one locked OS thread, which does the whole
//     operation and then exits, taking the namespace and the mount with it.
//     The host's mount table never shows it.

// CopyOption configures CopyTo.
type CopyOption interface{ applyCopy(*copyConfig) }

type copyConfig struct{ keepOwner bool }

type copyOptionFunc func(*copyConfig)

func (f copyOptionFunc) applyCopy(c *copyConfig) { f(c) }

// WithCopyOwnership keeps the uid and gid of the tar's entries (docker cp
// -a). Default: everything copied in is owned by root (0:0), as docker cp
// makes it.
func WithCopyOwnership() CopyOption {
	return copyOptionFunc(func(c *copyConfig) { c.keepOwner = true })
}

// CopyTo extracts the tar stream r into the container at dstPath, running
// or stopped (docker cp SRC CONTAINER:DST, where r is what docker cp sends:
// one entry named after the source, a file or a directory tree). dstPath is
// relative to the container's root, and symlinks on it are followed inside
// the container, never on the host. The rules are docker cp's:
//
//   - dstPath is an existing directory: the entries are extracted into it
//     under their own names (docker cp SRC CONTAINER:DIR makes DIR/SRC; docker
//     cp - CONTAINER:DIR extracts the tar into DIR). An entry over an existing
//     path of the other kind (a directory over a file or a file over a
//     directory) fails with ErrInvalid.
//   - dstPath does not exist: its parent must be an existing directory
//     (ErrNotFound otherwise), and a dstPath ending in "/" fails with
//     ErrNotFound, as docker cp does. The tar's one top-level entry is
//     extracted as dstPath (a file or a directory tree renamed); a tar with a
//     root entry ("./", as tar -C DIR . writes, or CopyFrom of "DIR/.")
//     makes dstPath a directory holding the tar's content. A tar with
//     several top-level entries fails with ErrInvalid: name an existing
//     directory instead.
//   - dstPath is an existing file: a single file replaces it; a directory
//     fails with ErrInvalid ("cannot overwrite non-directory with
//     directory"), and so does a dstPath ending in "/".
//
// Entries are applied as a layer is (see internal/archive): every name is
// resolved inside the container, names that climb above the tar's root are
// refused, and ownership is root's unless WithCopyOwnership. Entries whose
// name starts with ".wh." are refused with ErrUnsupported, since berth
// stores whiteouts under that name. A container run with
// WithReadOnlyRootfs refuses copies, as docker does.
//
// The tar is read to its end marker; r is not drained beyond it. ctx is
// checked between entries.
func (c *Container) CopyTo(ctx context.Context, dstPath string, r io.Reader, opts ...CopyOption) error {
	var cfg copyConfig
	for _, o := range opts {
		o.applyCopy(&cfg)
	}
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	if rec.Config.ReadOnly {
		return fmt.Errorf("copying to container %s: %w: its root filesystem is read-only", c.Name, ErrInvalid)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := c.inRoot(ctx, func(root int) error { return extractInto(ctx, root, dstPath, pr, cfg) })
		// Unblocks the copy below if the extraction ended first.
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		done <- err
	}()
	_, cerr := io.Copy(pw, r)
	pw.CloseWithError(cerr)
	if err := <-done; err != nil {
		return fmt.Errorf("copying to %s:%s: %w", c.Name, dstPath, err)
	}
	if cerr != nil && !errors.Is(cerr, io.ErrClosedPipe) {
		return fmt.Errorf("copying to %s:%s: reading the tar: %w", c.Name, dstPath, cerr)
	}
	return nil
}

// CopyFrom writes a tar of srcPath in the container, running or stopped, to
// w (docker cp CONTAINER:SRC -). A file is one entry named after the base
// name of srcPath; a directory is an entry "NAME/" followed by its content
// as "NAME/...". srcPath ending in "/." writes the directory's content
// under "./" instead (docker cp's "SRC/." rule); "/" is written that way too.
// A symlink at srcPath is written as a symlink, unless srcPath ends in "/"
// or "/.", which resolve it (inside the container). Ownership, permission
// bits, mtimes (to the second), hardlinks, device numbers and the xattrs of
// files and directories are kept; sockets are skipped. The walk descends
// into other filesystems mounted in a running container, except kernel
// pseudo-filesystems (proc, sysfs, cgroup, devpts, mqueue, …).
//
// A running container may change files while they are written: a file that
// shrinks is padded with zeros to the size first seen, one that grows is cut
// there, so the tar always stays well formed.
func (c *Container) CopyFrom(ctx context.Context, srcPath string, w io.Writer) error {
	err := c.pipeOut(ctx, w, func(root int, out io.Writer) error { return writeCopy(ctx, root, srcPath, out) })
	if err != nil {
		return fmt.Errorf("copying from %s:%s: %w", c.Name, srcPath, err)
	}
	return nil
}

// Export writes the container's root filesystem, running or stopped, to w
// as one flat tar (docker export): the merged view of its image layers and
// its writable layer, entries named relative to the root ("bin/",
// "bin/sh"), with the fidelity of CopyFrom. It does not descend into what
// a running container has mounted (/proc, /sys, /dev, bound files
// appear as their mount points only, as find -xdev lists them), so a
// running and a stopped container export the same names.
func (c *Container) Export(ctx context.Context, w io.Writer) error {
	err := c.pipeOut(ctx, w, func(root int, out io.Writer) error {
		fd, err := openInRoot(root, "", unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return tarTree(ctx, fd, out)
	})
	if err != nil {
		return fmt.Errorf("exporting container %s: %w", c.Name, err)
	}
	return nil
}

// pipeOut runs produce inside the container's root and copies what it
// writes to w from the calling goroutine, so that the caller's writer never
// runs on the thread that owns a private mount namespace.
func (c *Container) pipeOut(ctx context.Context, w io.Writer, produce func(root int, out io.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := c.inRoot(ctx, func(root int) error {
			bw := bufio.NewWriterSize(pw, 256<<10)
			if err := produce(root, bw); err != nil {
				return err
			}
			return bw.Flush()
		})
		pw.CloseWithError(err)
		done <- err
	}()
	_, cerr := io.Copy(w, pr)
	pr.CloseWithError(errors.Join(cerr, io.ErrClosedPipe)) // stops produce if w failed
	if err := <-done; err != nil && (cerr == nil || !errors.Is(err, io.ErrClosedPipe)) {
		return err
	}
	return cerr
}

// inRoot runs fn with an O_PATH fd of the container's root directory: the
// running container's own root, or its overlay mounted in a private mount
// namespace when it is not running. fn must do all its lookups below that
// fd with openInRoot or *at calls on fds it got from there.
func (c *Container) inRoot(ctx context.Context, fn func(root int) error) error {
	for attempt := 0; ; attempt++ {
		rec, err := c.rt.currentRecord(c.ID)
		if err != nil {
			return err
		}
		switch {
		case rec.State.Running:
			root, err := openProcRoot(rec)
			if err == nil {
				defer unix.Close(root)
				return fn(root)
			}
			if attempt >= 3 {
				return err
			}
			// It exited: let its owner record that before the overlay can
			// be mounted here.
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c.rt.waitContainer(wctx, c, rec.State.StartedAt)
			cancel()
		case rec.starting():
			// Starting now: mounting its overlay too would race its own.
			if _, err := c.rt.notStarting(ctx, c.ID); err != nil {
				return err
			}
		default:
			err := c.rt.inStoppedRoot(ctx, c.ID, fn)
			if !errors.Is(err, errStarted) {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// errStarted reports a container that started while a stopped-container
// operation was being set up.
var errStarted = errors.New("container started")

// openProcRoot opens /proc/PID/root of a running container's first process.
// The start time is checked after the open: if it still matches, the pid
// was the container's when it was opened, since a pid is not reused while
// its process lives.
func openProcRoot(rec *containerRecord) (int, error) {
	pid := rec.State.Pid
	if pid <= 0 || rec.PidStart == 0 {
		return -1, ErrNotRunning
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%w: opening its root: %v", ErrNotRunning, err)
	}
	if procStartTime(pid) != rec.PidStart {
		unix.Close(fd)
		return -1, ErrNotRunning
	}
	return fd, nil
}

// inStoppedRoot mounts the container's overlay in a mount namespace of its
// own, and its volumes and binds on it (as docker cp sees a stopped
// container; not its tmpfs mounts, which held nothing once it stopped, nor
// a volume's seeding, which its first start did), and runs fn there with
// the fd of its root. The namespace belongs to one
// OS thread, locked to a goroutine that never unlocks it: when fn returns,
// the goroutine ends, the Go runtime ends the thread, and the namespace and
// the mount go with it. Nothing is mounted in the host's mount table (/ of
// the new namespace is made rprivate before the mount, so the mount does not
// propagate back either). The container's lock is held meanwhile, so two
// such mounts of one upper directory never coexist.
func (r *Runtime) inStoppedRoot(ctx context.Context, id string, fn func(root int) error) error {
	unlock, err := r.store.Lock(ctx, "ctr-"+id, true)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := r.currentRecord(id)
	if err != nil {
		return err
	}
	if rec.State.Running || rec.starting() {
		return errStarted // or starting: its own overlay is being mounted
	}
	if rec.Config.throwaway() && !rec.neverStarted() {
		// Its exit is recorded and its removal under way; its volatile
		// overlay cannot be mounted again (initproc.Spec.Volatile).
		return fmt.Errorf("%w: container %s was auto-removed when it exited", ErrNotFound, rec.Name)
	}
	var lower []string
	for i := len(rec.Config.ChainIDs) - 1; i >= 0; i-- { // topmost first
		fs, err := r.snaps.FS(rec.Config.ChainIDs[i])
		if err != nil {
			return err
		}
		lower = append(lower, fs)
	}
	if len(lower) == 0 {
		return fmt.Errorf("%w: a stopped container of an image with no layers", ErrUnsupported)
	}
	dir := r.containerDir(id)
	spec := &initproc.Spec{Lower: lower, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	r.stackInitLayer(ctx, rec.Config.ChainIDs, spec) // the mount points it has when it runs
	data := "lowerdir=" + strings.Join(spec.Lower, ":") + ",upperdir=" + spec.Upper +
		",workdir=" + spec.Work + ",redirect_dir=off,metacopy=off"
	target := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	var binds []initproc.Mount
	for _, m := range r.mountSpecs(rec.Config.Mounts) {
		if m.Type == "bind" {
			// A volume gets the image's content on its first mount, as
			// docker gives it at create: a copy into a container Create
			// made may be that mount.
			m.Seed = m.Seed && rec.neverStarted()
			binds = append(binds, m)
		}
	}
	errc := make(chan error, 1)
	go initproc.OnOwnThread(func() { errc <- inPrivateMount(ctx, data, target, binds, fn) })
	return <-errc
}

func inPrivateMount(ctx context.Context, data, target string, binds []initproc.Mount, fn func(root int) error) error {
	// CLONE_FS too: a Go thread shares its root and cwd with the others,
	// and the kernel refuses a new mount namespace to a thread that does.
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("making a private mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / rprivate: %w", err)
	}
	var err error
	for i := 0; i < 100; i++ {
		// A container that just exited may hold its upper dir a moment
		// longer (EBUSY) while its namespace is torn down.
		if err = unix.Mount("overlay", target, "overlay", 0, data); err != unix.EBUSY || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("mounting the container's overlay: %w", err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	root, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for _, m := range binds {
		if err := initproc.MountUser(root, m); err != nil {
			return fmt.Errorf("mounting %s of the stopped container: %w", m.Destination, err)
		}
	}
	return fn(root)
}

// openInRoot opens rel below root with every component, symlinks included,
// resolved as if root were "/". rel "" is root itself.
func openInRoot(root int, rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(root, rel, &how)
		// EAGAIN: a concurrent rename made the kernel give up a safe
		// lookup; trying again is safe.
		if err != unix.EAGAIN && err != unix.EINTR {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// containerRel cleans a path given in the container (absolute or relative to
// its root) into a path relative to the root, "" for the root. ".." stops at
// the root, as it does in the container.
func containerRel(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// wantsDir reports a path that docker cp takes as naming a directory.
func wantsDir(p string) bool {
	return p == "." || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")
}

// cleanTarName turns a tar entry name into a path relative to the tar's
// root, "" for the root, refusing names that climb above it.
func cleanTarName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL byte in tar entry name %q", ErrInvalid, name)
	}
	var parts []string
	for c := range strings.SplitSeq(name, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(parts) == 0 {
				return "", fmt.Errorf("%w: tar entry %q climbs above the destination", ErrInvalid, name)
			}
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/"), nil
}

func joinRel(dir, name string) string {
	switch {
	case dir == "":
		return name
	case name == "":
		return dir
	}
	return dir + "/" + name
}

// copyPlan says where the entries of a docker cp tar land.
type copyPlan struct {
	// into: every entry goes below dest under its own name.
	into bool
	// top, when not into: the tar's one top-level name ("" for a root
	// entry), which becomes dest.
	top  string
	dest string // relative to the container's root
	cfg  copyConfig
}

// mapName returns where an entry lands, relative to the container's root,
// and false for an entry to skip.
func (p *copyPlan) mapName(rel string) (string, bool, error) {
	var out string
	switch {
	case p.into:
		if rel == "" {
			return "", false, nil // the destination directory keeps its own metadata
		}
		out = joinRel(p.dest, rel)
	case p.top == "":
		out = joinRel(p.dest, rel)
	case rel == p.top:
		out = p.dest
	case strings.HasPrefix(rel, p.top+"/"):
		out = joinRel(p.dest, rel[len(p.top)+1:])
	default:
		return "", false, fmt.Errorf("%w: the tar holds more than one top-level entry (%q and %q); copy it into an existing directory", ErrInvalid, p.top, rel)
	}
	if out == "" {
		return "", false, nil // never the container's root itself
	}
	return out, true, nil
}

// planCopy applies docker cp's rules for dstPath to a tar whose first entry
// is first.
func planCopy(root int, dstPath string, first *tar.Header, cfg copyConfig) (*copyPlan, error) {
	dest := containerRel(dstPath)
	firstRel, err := cleanTarName(first.Name)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	fd, err := openInRoot(root, dest, unix.O_PATH)
	if err == nil {
		err = unix.Fstat(fd, &st)
		defer unix.Close(fd)
	}
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if firstRel != "" && !strings.Contains(firstRel, "/") {
			if err := checkOverwrite(fd, firstRel, first, dstPath); err != nil {
				return nil, err
			}
		}
		return &copyPlan{into: true, dest: dest, cfg: cfg}, nil
	case errors.Is(err, unix.ENOENT):
		if wantsDir(dstPath) {
			return nil, fmt.Errorf("%w: destination directory %q does not exist", ErrNotFound, dstPath)
		}
		parent, _ := path.Split("/" + dest)
		pfd, err := openInRoot(root, containerRel(parent), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return nil, fmt.Errorf("%w: the parent directory of %q: %v", ErrNotFound, dstPath, err)
		}
		unix.Close(pfd)
		top := firstRel
		if i := strings.IndexByte(top, '/'); i >= 0 {
			top = top[:i]
		}
		return &copyPlan{top: top, dest: dest, cfg: cfg}, nil
	case err == nil:
		if wantsDir(dstPath) {
			return nil, fmt.Errorf("%w: %q is not a directory", ErrInvalid, dstPath)
		}
		if firstRel == "" || strings.Contains(firstRel, "/") || first.Typeflag == tar.TypeDir {
			return nil, fmt.Errorf("%w: cannot overwrite non-directory %q with directory", ErrInvalid, dstPath)
		}
		return &copyPlan{top: firstRel, dest: dest, cfg: cfg}, nil
	default:
		return nil, fmt.Errorf("resolving %q in the container: %w", dstPath, err)
	}
}

// checkOverwrite refuses, as docker cp does, a top-level entry that would
// replace a directory by a file or a file by a directory.
func checkOverwrite(dirfd int, name string, hdr *tar.Header, dstPath string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil // absent (or gone): nothing to overwrite
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case isDir && hdr.Typeflag != tar.TypeDir:
		return fmt.Errorf("%w: cannot overwrite directory %q with non-directory", ErrInvalid, path.Join(dstPath, name))
	case !isDir && hdr.Typeflag == tar.TypeDir:
		return fmt.Errorf("%w: cannot overwrite non-directory %q with directory", ErrInvalid, path.Join(dstPath, name))
	}
	return nil
}

// extractInto reads a docker cp tar from in and applies it below root as
// planCopy decides. The entries are renamed by a filter goroutine and
// applied by archive.Apply, which resolves every name inside the root.
func extractInto(ctx context.Context, root int, dstPath string, in *io.PipeReader, cfg copyConfig) error {
	tr := tar.NewReader(in)
	first, err := tr.Next()
	if err == io.EOF {
		return nil // an empty tar copies nothing
	}
	if err != nil {
		return fmt.Errorf("reading the tar: %w", err)
	}
	plan, err := planCopy(root, dstPath, first, cfg)
	if err != nil {
		return err
	}
	fr, fw := io.Pipe()
	filtered := make(chan error, 1)
	go func() {
		err := plan.rewrite(tr, first, fw)
		fw.CloseWithError(err)
		if err != nil {
			in.CloseWithError(err) // stop the sender too
		}
		filtered <- err
	}()
	// Apply opens the root through its /proc/self/fd link, which reaches
	// the very directory of the fd without a path walk; from there Apply
	// resolves every entry with RESOLVE_IN_ROOT, as it does for a layer.
	_, aerr := archive.Apply(ctx, "/proc/self/fd/"+strconv.Itoa(root), fr, archive.ApplyOptions{})
	fr.CloseWithError(errors.Join(aerr, io.ErrClosedPipe))
	if aerr != nil {
		in.CloseWithError(aerr)
	}
	ferr := <-filtered
	if ferr != nil && !errors.Is(ferr, io.ErrClosedPipe) {
		return ferr
	}
	return aerr
}

// rewrite copies the tar from tr (whose first header was already read) to
// w with every entry renamed by the plan.
func (p *copyPlan) rewrite(tr *tar.Reader, first *tar.Header, w io.Writer) error {
	tw := tar.NewWriter(w)
	for hdr := first; ; {
		if err := p.rewriteEntry(tw, hdr, tr); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		var err error
		hdr, err = tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("reading the tar: %w", err)
		}
	}
}

func (p *copyPlan) rewriteEntry(tw *tar.Writer, hdr *tar.Header, content io.Reader) error {
	rel, err := cleanTarName(hdr.Name)
	if err != nil {
		return err
	}
	if strings.HasPrefix(path.Base("/"+rel), ".wh.") {
		return fmt.Errorf("%w: names starting with .wh. (berth keeps whiteouts under them)", ErrUnsupported)
	}
	out, ok, err := p.mapName(rel)
	if err != nil || !ok {
		return err
	}
	h := *hdr
	h.Name = out
	if h.Typeflag == tar.TypeDir {
		h.Name += "/"
	}
	if h.Typeflag == tar.TypeLink {
		target, err := cleanTarName(h.Linkname)
		if err != nil {
			return err
		}
		if h.Linkname, ok, err = p.mapName(target); err != nil || !ok {
			return fmt.Errorf("%w: hardlink to %q, outside what is copied", ErrInvalid, hdr.Linkname)
		}
	}
	if !p.cfg.keepOwner {
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
	}
	// Only the xattrs of the PAX records carry over: the others (path,
	// linkpath, …) restate fields renamed here and would win on reading.
	h.PAXRecords, h.Xattrs = nil, nil
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[k] = v
		}
	}
	h.Format = tar.FormatUnknown
	if err := tw.WriteHeader(&h); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeGNUSparse {
		_, err = io.Copy(tw, content)
	}
	return err
}

// writeCopy writes the tar of srcPath for CopyFrom.
func writeCopy(ctx context.Context, root int, srcPath string, out io.Writer) error {
	rel := containerRel(srcPath)
	var sx unix.Statx_t
	if rel == "" || wantsDir(srcPath) {
		fd, err := openInRoot(root, rel, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("opening directory %q in the container: %w", srcPath, err)
		}
		defer unix.Close(fd)
		if err := statxAt(fd, "", unix.AT_EMPTY_PATH, &sx); err != nil {
			return err
		}
		// The walk descends into other mounts relative to where it starts.
		t := newTarWalker(ctx, out, &sx)
		name := "."
		if rel != "" && !strings.HasSuffix(srcPath, "/.") {
			name = path.Base(rel)
		}
		if err := t.dir(fd, name, &sx); err != nil {
			return err
		}
		return t.close()
	}
	parent, base := path.Split(rel)
	pfd, err := openInRoot(root, strings.TrimSuffix(parent, "/"), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("opening the directory of %q in the container: %w", srcPath, err)
	}
	defer unix.Close(pfd)
	if err := statxAt(pfd, base, unix.AT_SYMLINK_NOFOLLOW, &sx); err != nil {
		return fmt.Errorf("%q in the container: %w", srcPath, notFound(err))
	}
	t := newTarWalker(ctx, out, &sx)
	t.start = true
	if err := t.entry(pfd, base, base, &sx); err != nil {
		return err
	}
	return t.close()
}

func notFound(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// mqueueMagic is MQUEUE_MAGIC of linux/magic.h, which x/sys lacks.
const mqueueMagic = 0x19800202

// Filesystems that CopyFrom does not descend into when it meets them
// mounted below a directory: the kernel's views of itself.
var pseudoFS = []int64{
	unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC,
	unix.DEVPTS_SUPER_MAGIC, mqueueMagic, unix.SECURITYFS_MAGIC, unix.DEBUGFS_MAGIC,
	unix.TRACEFS_MAGIC, unix.BPF_FS_MAGIC, unix.PSTOREFS_MAGIC, unix.EFIVARFS_MAGIC, unix.SELINUX_MAGIC,
}

// tarWalker writes a tree to a tar from fds, never resolving a path: each
// step is an *at call on the fd of the directory above with O_NOFOLLOW.
type tarWalker struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[[3]uint64]string // inodes with several links → first name
	buf   []byte
	mnt   uint64 // mount id of the walk's root
	// oneFS stops at every mount point (Export); otherwise only kernel
	// pseudo-filesystems are skipped (CopyFrom).
	oneFS bool
	// start is set while the first entry, the one CopyFrom was asked for,
	// is written: it must not vanish silently, as entries below may.
	start bool
}

// gone reports an entry removed (or replaced) between listing and reading:
// nil, to skip it, unless it is the entry the copy is of.
func (t *tarWalker) gone(start bool, name string) error {
	if start {
		return fmt.Errorf("%w: %q was removed or replaced while being copied", ErrNotFound, name)
	}
	return nil
}

func newTarWalker(ctx context.Context, w io.Writer, root *unix.Statx_t) *tarWalker {
	return &tarWalker{ctx: ctx, tw: tar.NewWriter(w), links: map[[3]uint64]string{}, buf: make([]byte, 256<<10), mnt: root.Mnt_id}
}

func (t *tarWalker) close() error { return t.tw.Close() }

// tarTree writes the tree of the directory fd, on its filesystem only, to
// w as a tar stream, names relative to it, owners and modes as they are.
func tarTree(ctx context.Context, fd int, w io.Writer) error {
	var sx unix.Statx_t
	if err := statxAt(fd, "", unix.AT_EMPTY_PATH, &sx); err != nil {
		return err
	}
	t := newTarWalker(ctx, w, &sx)
	t.oneFS = true
	if err := t.walk(fd, ""); err != nil {
		return err
	}
	return t.close()
}

func statxAt(dirfd int, name string, flags int, sx *unix.Statx_t) error {
	return unix.Statx(dirfd, name, flags|unix.AT_NO_AUTOMOUNT, unix.STATX_BASIC_STATS|unix.STATX_MNT_ID, sx)
}

func (t *tarWalker) header(sx *unix.Statx_t, name string) *tar.Header {
	return &tar.Header{
		Name:    name,
		Mode:    int64(sx.Mode & 0o7777),
		Uid:     int(sx.Uid),
		Gid:     int(sx.Gid),
		ModTime: time.Unix(sx.Mtime.Sec, 0),
	}
}

// walk writes the entries of the directory fd, named below rel.
func (t *tarWalker) walk(fd int, rel string) error {
	if err := archive.CheckDepth(rel); err != nil {
		return err
	}
	names, err := readDirNames(fd)
	if err != nil {
		return fmt.Errorf("listing %q: %w", "/"+rel, err)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		var sx unix.Statx_t
		if err := statxAt(fd, n, unix.AT_SYMLINK_NOFOLLOW, &sx); err != nil {
			if err == unix.ENOENT {
				continue // removed since listed
			}
			return fmt.Errorf("stat %q: %w", "/"+joinRel(rel, n), err)
		}
		if err := t.entry(fd, n, joinRel(rel, n), &sx); err != nil {
			return err
		}
	}
	return nil
}

// entry writes the entry name of the directory pfd as tarName.
func (t *tarWalker) entry(pfd int, name, tarName string, sx *unix.Statx_t) error {
	start := t.start
	t.start = false
	hdr := t.header(sx, tarName)
	switch uint32(sx.Mode) & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
				return t.gone(start, tarName)
			}
			return fmt.Errorf("opening %q: %w", tarName, err)
		}
		defer unix.Close(fd)
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil {
			return err
		}
		if now.Ino != sx.Ino {
			return t.gone(start, tarName)
		}
		return t.dir(fd, tarName, sx)
	case unix.S_IFREG:
		return t.file(pfd, name, hdr, sx, start)
	case unix.S_IFLNK:
		target, err := readlinkAt(pfd, name)
		if err != nil {
			if err == unix.ENOENT || err == unix.EINVAL {
				return t.gone(start, tarName)
			}
			return fmt.Errorf("reading symlink %q: %w", tarName, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
		if uint32(sx.Mode)&unix.S_IFMT != unix.S_IFIFO {
			hdr.Typeflag = tar.TypeChar
			if uint32(sx.Mode)&unix.S_IFMT == unix.S_IFBLK {
				hdr.Typeflag = tar.TypeBlock
			}
			hdr.Devmajor, hdr.Devminor = int64(sx.Rdev_major), int64(sx.Rdev_minor)
		}
		if t.hardlink(sx, hdr) {
			return t.tw.WriteHeader(hdr)
		}
	default:
		return nil // a socket means something only to the process that bound it
	}
	return t.tw.WriteHeader(hdr)
}

// dir writes the directory fd as name and, unless it is a mount point the
// walk stops at, its content.
func (t *tarWalker) dir(fd int, name string, sx *unix.Statx_t) error {
	hdr := t.header(sx, name+"/")
	hdr.Typeflag = tar.TypeDir
	if err := setXattrs(hdr, fd); err != nil {
		return fmt.Errorf("reading xattrs of %q: %w", name, err)
	}
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if sx.Mask&unix.STATX_MNT_ID != 0 && sx.Mnt_id != t.mnt {
		if t.oneFS {
			return nil
		}
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(fd, &sfs); err == nil && slices.Contains(pseudoFS, int64(sfs.Type)) {
			return nil
		}
	}
	return t.walk(fd, name)
}

// file writes a regular file. It is opened with O_NOFOLLOW|O_NONBLOCK and
// checked to be the inode just listed: a container swapping it for a fifo
// or a symlink in between gets nothing out of it.
func (t *tarWalker) file(pfd int, name string, hdr *tar.Header, sx *unix.Statx_t, start bool) error {
	hdr.Typeflag = tar.TypeReg
	if t.oneFS && sx.Mask&unix.STATX_MNT_ID != 0 && sx.Mnt_id != t.mnt {
		// A file bound over the root filesystem's (a running container's
		// /etc/hosts, a -v of one file): its mount point, empty, as a
		// stopped container's export has it, and none of the bound
		// file's content, which is no part of the container.
		return t.tw.WriteHeader(hdr)
	}
	if t.hardlink(sx, hdr) {
		return t.tw.WriteHeader(hdr)
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT || err == unix.ELOOP {
			return t.gone(start, hdr.Name)
		}
		return fmt.Errorf("opening %q: %w", hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != sx.Ino {
		return t.gone(start, hdr.Name)
	}
	if err := setXattrs(hdr, fd); err != nil {
		return fmt.Errorf("reading xattrs of %q: %w", hdr.Name, err)
	}
	hdr.Size = st.Size
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(t.tw, io.LimitReader(f, st.Size), t.buf)
	if err != nil && !errors.Is(err, unix.EIO) {
		return fmt.Errorf("reading %q: %w", hdr.Name, err)
	}
	for n < st.Size { // shrank while read: keep the tar well formed
		k, err := t.tw.Write(make([]byte, min(st.Size-n, 64<<10)))
		if err != nil {
			return err
		}
		n += int64(k)
	}
	return nil
}

// hardlink turns hdr into a link to the first name of an inode with
// several links and reports whether it did.
func (t *tarWalker) hardlink(sx *unix.Statx_t, hdr *tar.Header) bool {
	if sx.Nlink <= 1 {
		return false
	}
	id := [3]uint64{uint64(sx.Dev_major), uint64(sx.Dev_minor), sx.Ino}
	if first, ok := t.links[id]; ok {
		hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		return true
	}
	t.links[id] = hdr.Name
	return false
}

// setXattrs records the xattrs of an open file or directory in hdr, except
// overlayfs' own.
func setXattrs(hdr *tar.Header, fd int) error {
	names, err := xattrRead(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil || len(names) == 0 {
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
			err = nil
		}
		return err
	}
	for k := range strings.SplitSeq(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		if k == "" || strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.") {
			continue
		}
		v, err := xattrRead(func(b []byte) (int, error) { return unix.Fgetxattr(fd, k, b) })
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return err
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = string(v)
	}
	return nil
}

func xattrRead(call func([]byte) (int, error)) ([]byte, error) {
	for range 8 {
		n, err := call(nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if err == unix.ERANGE {
			continue // grew since sized
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.ERANGE
}

func readlinkAt(fd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// readDirNames lists the directory fd, without "." and "..".
func readDirNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// ChangeKind is the kind of a Change, with docker's numbering (the Kind of
// docker's container changes API).
type ChangeKind uint8

const (
	// ChangeModify is a path that exists in the image and was changed
	// (docker diff's C). Directories on the way to a change are modified.
	ChangeModify ChangeKind = iota
	// ChangeAdd is a path the image does not have (A).
	ChangeAdd
	// ChangeDelete is a path of the image the container removed (D).
	ChangeDelete
)

// String returns docker diff's letter for k: "C", "A" or "D".
func (k ChangeKind) String() string {
	switch k {
	case ChangeModify:
		return "C"
	case ChangeAdd:
		return "A"
	case ChangeDelete:
		return "D"
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}

// Change is one changed path of a container's filesystem, relative to its
// image (docker diff).
type Change struct {
	Kind ChangeKind
	// Path is absolute in the container: "/etc/passwd".
	Path string
}

// String returns the change as docker diff prints it: "C /etc/passwd".
func (c Change) String() string { return c.Kind.String() + " " + c.Path }

// initPaths are the mount points berth makes for every container, in the
// image's init layer as docker does (so docker diff never shows them
// either), or in the container's writable layer where the init layer
// could not be made: what is mounted there is not the container's change.
var initPaths = map[string]bool{
	"dev": true, "proc": true, "sys": true, "etc/hosts": true, "etc/hostname": true, "etc/resolv.conf": true,
}

// Diff lists what the container changed in its filesystem relative to its
// image, sorted by path (docker diff). It reads the container's writable
// layer and, to tell added from changed paths, the image's layers: a
// whiteout is a deletion (D), a path no image layer has is added (A), one
// that an image layer has is modified (C), and so is a directory of the image
// that holds a change or whose mode or owner changed. A directory removed
// and made again ("rm -rf /d && mkdir /d") is modified, and each of the
// image's entries it no longer holds is deleted; docker reports such a
// directory as deleted instead. The mount points berth makes (/dev, /proc,
// /sys, /etc/hosts, /etc/hostname, /etc/resolv.conf) are not reported.
// Diff works on running and stopped containers; on a running one it is a
// snapshot taken while the container may be writing.
func (c *Container) Diff(ctx context.Context) ([]Change, error) {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return nil, err
	}
	d := &differ{ctx: ctx}
	defer d.close()
	for i := len(rec.Config.ChainIDs) - 1; i >= 0; i-- {
		dir, err := c.rt.snaps.FS(rec.Config.ChainIDs[i])
		if err != nil {
			return nil, err
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("opening image layer: %w", err)
		}
		d.lowers = append(d.lowers, fd)
	}
	upper, err := unix.Open(filepath.Join(c.rt.containerDir(c.ID), "upper"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("diff of container %s: %w", c.Name, err)
	}
	defer unix.Close(upper)
	if _, err := d.walk(upper, ""); err != nil {
		return nil, fmt.Errorf("diff of container %s: %w", c.Name, err)
	}
	slices.SortFunc(d.changes, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return d.changes, nil
}

type differ struct {
	ctx     context.Context
	lowers  []int // image layer directories, topmost first
	changes []Change
}

func (d *differ) close() {
	for _, fd := range d.lowers {
		unix.Close(fd)
	}
}

func (d *differ) add(kind ChangeKind, rel string) {
	d.changes = append(d.changes, Change{Kind: kind, Path: "/" + rel})
}

// walk reports the changes below the upper directory fd (path rel) and
// whether there were any.
func (d *differ) walk(fd int, rel string) (bool, error) {
	if err := d.ctx.Err(); err != nil {
		return false, err
	}
	if err := archive.CheckDepth(rel); err != nil {
		return false, err
	}
	names, err := readDirNames(fd)
	if err != nil {
		return false, err
	}
	changed := false
	for _, n := range names {
		p := joinRel(rel, n)
		if initPaths[p] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return false, err
		}
		changed = true
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			d.add(ChangeDelete, p)
			continue
		}
		lower, inLower := d.lowerStat(p)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			d.add(kindOf(inLower), p)
			continue
		}
		if err := d.dir(fd, n, p, &st, lower, inLower); err != nil {
			return false, err
		}
	}
	return changed, nil
}

func kindOf(inLower bool) ChangeKind {
	if inLower {
		return ChangeModify
	}
	return ChangeAdd
}

// dir reports an upper directory and what is below it.
func (d *differ) dir(pfd int, name, p string, st, lower *unix.Stat_t, inLower bool) error {
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !inLower {
		d.add(ChangeAdd, p)
		_, err := d.walk(fd, p)
		return err
	}
	mark := len(d.changes)
	if _, err := d.walk(fd, p); err != nil {
		return err
	}
	below := len(d.changes) > mark
	opaque := false
	if v, err := xattrRead(func(b []byte) (int, error) { return unix.Fgetxattr(fd, "trusted.overlay.opaque", b) }); err == nil && string(v) == "y" {
		opaque = true
		if err := d.hidden(fd, p); err != nil {
			return err
		}
	}
	lowerDir := lower.Mode&unix.S_IFMT == unix.S_IFDIR
	if below || opaque || !lowerDir || st.Mode != lower.Mode || st.Uid != lower.Uid || st.Gid != lower.Gid {
		d.add(ChangeModify, p)
	}
	return nil
}

// hidden reports as deleted the image's entries below the opaque upper
// directory fd (path p) that the upper directory does not have.
func (d *differ) hidden(fd int, p string) error {
	seen := map[string]bool{}
	for _, l := range d.lowers {
		lfd, err := openBeneath(l, p)
		if err != nil {
			continue
		}
		names, err := readDirNames(lfd)
		unix.Close(lfd)
		if err != nil {
			return err
		}
		for _, n := range names {
			if seen[n] {
				continue
			}
			seen[n] = true
			var st unix.Stat_t
			if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				continue // in upper: reported by walk
			}
			if _, ok := d.lowerStat(joinRel(p, n)); ok {
				d.add(ChangeDelete, joinRel(p, n))
			}
		}
	}
	return nil
}

// openBeneath opens the directory rel in the image layer fd without
// following any symlink: a layer's symlinks mean something only inside a
// container.
func openBeneath(fd int, rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	return unix.Openat2(fd, rel, &how)
}

// lowerStat looks rel up in the image's layers as overlayfs merges them:
// the topmost layer that has it decides, unless a layer above hides it with
// a whiteout, a non-directory on the way or an opaque directory.
func (d *differ) lowerStat(rel string) (*unix.Stat_t, bool) {
	parts := strings.Split(rel, "/")
	for _, l := range d.lowers {
		fd := l
		opaque := false
		found, stop := false, false
		var st unix.Stat_t
		for i, part := range parts {
			if err := unix.Fstatat(fd, part, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				stop = opaque
				break
			}
			if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
				stop = true // whiteout
				break
			}
			if i == len(parts)-1 {
				found = true
				break
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				stop = true
				break
			}
			next, err := unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if fd != l {
				unix.Close(fd)
			}
			if err != nil {
				fd = l
				stop = true
				break
			}
			fd = next
			if v, err := xattrRead(func(b []byte) (int, error) { return unix.Fgetxattr(fd, "trusted.overlay.opaque", b) }); err == nil && string(v) == "y" {
				opaque = true
			}
		}
		if fd != l {
			unix.Close(fd)
		}
		if found {
			return &st, true
		}
		if stop {
			return nil, false
		}
	}
	return nil, false
}

// ProcessInfo is one process of a container, as docker top shows it (ps
// -ef's UID PID PPID C STIME TTY TIME CMD).
type ProcessInfo struct {
	// PID and PPID are host process ids, as docker top shows them.
	PID, PPID int
	// UID is the effective user id; User is its name in the container's
	// /etc/passwd, or the number when it has none.
	UID  int
	User string
	// TTY is the controlling terminal ("pts/0"), or "?" for none.
	TTY string
	// Cmd is the command line, arguments joined by spaces; "[name]" for a
	// process whose command line is gone (a zombie).
	Cmd string
	// StartTime is when the process started.
	StartTime time.Time
	// CPUTime is the user and system CPU time used so far.
	CPUTime time.Duration
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, which is 100
// on every Linux architecture's user ABI.
const userHZ = 100

// Top lists the processes of a running container, sorted by pid (docker
// top). It fails with ErrNotRunning for a container that is not running.
// Processes found in the container's cgroup that exit while being read are
// left out.
func (c *Container) Top(ctx context.Context) ([]ProcessInfo, error) {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return nil, err
	}
	if !rec.State.Running {
		return nil, fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	cg, err := cgroup.Load(c.rt.cgroupPath(c.ID))
	if err != nil {
		return nil, fmt.Errorf("container %s: %w: %v", c.Name, ErrNotRunning, err)
	}
	pids, err := cg.Pids()
	if err != nil {
		return nil, err
	}
	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	users := containerUsers(rec)
	out := make([]ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		p, err := readProcess(pid, boot)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
				continue
			}
			return nil, err
		}
		p.User = strconv.Itoa(p.UID)
		if name, ok := users[p.UID]; ok {
			p.User = name
		}
		out = append(out, p)
	}
	return out, nil
}

// containerUsers reads the user names of the running container's
// /etc/passwd, resolved in its root; nil if it has none.
func containerUsers(rec *containerRecord) map[int]string {
	root, err := openProcRoot(rec)
	if err != nil {
		return nil
	}
	defer unix.Close(root)
	fd, err := openInRoot(root, "etc/passwd", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "/etc/passwd")
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, 4<<20))
	users := map[int]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 {
			continue
		}
		if uid, err := strconv.Atoi(f[2]); err == nil {
			if _, dup := users[uid]; !dup {
				users[uid] = f[0]
			}
		}
	}
	return users
}

func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, errors.New("no btime in /proc/stat")
}

func readProcess(pid int, boot time.Time) (ProcessInfo, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return ProcessInfo{}, err
	}
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return ProcessInfo{}, fmt.Errorf("parsing %sstat", dir)
	}
	comm := s[open+1 : end]
	f := strings.Fields(s[end+1:])
	if len(f) < 20 {
		return ProcessInfo{}, fmt.Errorf("parsing %sstat", dir)
	}
	num := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
	p := ProcessInfo{PID: pid, PPID: int(num(1)), TTY: ttyName(num(4))}
	p.CPUTime = time.Duration(num(11)+num(12)) * time.Second / userHZ
	p.StartTime = boot.Add(time.Duration(num(19)) * time.Second / userHZ)
	status, err := os.ReadFile(dir + "status")
	if err != nil {
		return ProcessInfo{}, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if ids := strings.Fields(v); len(ids) >= 2 {
				p.UID, _ = strconv.Atoi(ids[1]) // effective, as ps -ef shows
			}
		}
	}
	cmdline, err := os.ReadFile(dir + "cmdline")
	if err != nil {
		return ProcessInfo{}, err
	}
	cmdline = bytes.TrimRight(cmdline, "\x00")
	if len(cmdline) == 0 {
		p.Cmd = "[" + comm + "]"
	} else {
		p.Cmd = string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	return p, nil
}

// ttyName names a controlling terminal from /proc/PID/stat's tty_nr as ps
// does: "pts/N", "ttyN", or "?" for none or an unknown device.
func ttyName(nr uint64) string {
	major := (nr >> 8) & 0xfff
	minor := (nr & 0xff) | ((nr >> 12) & 0xfff00)
	switch {
	case nr == 0:
		return "?"
	case major >= 136 && major <= 143:
		return "pts/" + strconv.FormatUint(minor+(major-136)*256, 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatUint(minor, 10)
	case major == 4:
		return "ttyS" + strconv.FormatUint(minor-64, 10)
	case major == 5 && minor == 1:
		return "console"
	}
	return "?"
}
