package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-dev/berth"
)

// cpCommand is docker cp. One of SRC and DST is CONTAINER:PATH; the other
// is a host path, or "-" for a tar stream on stdin (SRC) or stdout (DST).
// The destination rules are docker cp's: into an existing directory, as a
// new name when the destination does not exist (its parent must), over an
// existing file only with a file. berth prints no progress (docker prints it
// only to a terminal), so -q changes nothing; -L is not supported.
func cpCommand(fs *flagSet) runFunc {
	var archive, quiet bool
	fs.Bool(&archive, "a", "archive", "Archive mode (copy all uid/gid information)")
	fs.Bool(&quiet, "q", "quiet", "Suppress progress output during copy (berth shows none)")
	return func(ctx context.Context, c *cli, args []string) error {
		srcCtr, srcPath := splitCpArg(args[0])
		dstCtr, dstPath := splitCpArg(args[1])
		switch {
		case srcCtr != "" && dstCtr != "":
			return errors.New("copying between containers is not supported")
		case srcCtr == "" && dstCtr == "":
			return errors.New("must specify at least one container source")
		case srcPath == "":
			return errors.New("source can not be empty")
		case dstPath == "":
			return errors.New("destination can not be empty")
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		name := srcCtr + dstCtr
		ctr, err := rt.Container(ctx, name)
		if err != nil {
			return noSuchContainer(name, err)
		}
		if srcCtr != "" {
			return copyFromContainer(ctx, c, ctr, srcPath, dstPath)
		}
		var opts []berth.CopyOption
		if archive {
			opts = append(opts, berth.WithCopyOwnership())
		}
		return copyToContainer(ctx, c, ctr, srcPath, dstPath, opts)
	}
}

// splitCpArg splits docker cp's CONTAINER:PATH; a host path (absolute, or
// starting with ".", or without a colon) has no container.
func splitCpArg(arg string) (container, p string) {
	if filepath.IsAbs(arg) {
		return "", arg
	}
	container, p, ok := strings.Cut(arg, ":")
	if !ok || strings.HasPrefix(container, ".") {
		return "", arg
	}
	return container, p
}

func copyToContainer(ctx context.Context, c *cli, ctr *berth.Container, src, dst string, opts []berth.CopyOption) error {
	if src == "-" {
		return ctr.CopyTo(ctx, dst, c.stdin, opts...)
	}
	if _, err := os.Lstat(src); err != nil {
		return fmt.Errorf("could not find the file %s in the host: %w", src, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeHostTar(src, pw)) }()
	err := ctr.CopyTo(ctx, dst, pr, opts...)
	pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
	return err
}

// writeHostTar writes the host path src as docker cp sends it: one entry
// named after its base name (a symlink stays a symlink), or, for "DIR/.",
// the directory's content under "./".
func writeHostTar(src string, w io.Writer) error {
	top := filepath.Base(src)
	if strings.HasSuffix(src, "/.") || src == "." {
		top = "."
	}
	root := filepath.Clean(src)
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if info.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		hdr.Name = path.Join(top, filepath.ToSlash(rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, hdr.Size)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func copyFromContainer(ctx context.Context, c *cli, ctr *berth.Container, src, dst string) error {
	if dst == "-" {
		return ctr.CopyFrom(ctx, src, c.stdout)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := ctr.CopyFrom(ctx, src, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := extractOnHost(pr, dst)
	pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
	if cerr := <-done; cerr != nil && (err == nil || !errors.Is(cerr, io.ErrClosedPipe)) {
		return cerr
	}
	return err
}

// extractOnHost writes the tar of a container path to the host path dst
// with docker cp's rules. The tar is the container's, so it is untrusted:
// everything is created through an os.Root of the destination directory,
// which refuses names and symlinks that lead out of it. Ownership is not
// applied (docker cp leaves host files to the user running it).
func extractOnHost(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	first, err := tr.Next()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	firstName := strings.Trim(path.Clean("/"+first.Name), "/")
	top := firstName
	if i := strings.IndexByte(top, '/'); i >= 0 {
		top = top[:i]
	}
	dirOnly := strings.HasSuffix(dst, "/") || strings.HasSuffix(dst, "/.")
	var rootDir, rename string // rename: what top becomes, "" to keep names
	st, err := os.Stat(dst)
	switch {
	case err == nil && st.IsDir():
		rootDir = dst
	case errors.Is(err, fs.ErrNotExist):
		if dirOnly {
			return fmt.Errorf("destination directory %s does not exist", dst)
		}
		rootDir, rename = filepath.Dir(filepath.Clean(dst)), filepath.Base(dst)
	case err == nil:
		if dirOnly {
			return fmt.Errorf("destination %s is not a directory", dst)
		}
		if first.Typeflag == tar.TypeDir {
			return fmt.Errorf("cannot copy a directory to a file: %s", dst)
		}
		rootDir, rename = filepath.Dir(filepath.Clean(dst)), filepath.Base(dst)
	default:
		return err
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return err
	}
	defer root.Close()
	type dirTime struct {
		name  string
		mtime time.Time
	}
	var dirs []dirTime
	for hdr := first; ; {
		name := strings.Trim(path.Clean("/"+hdr.Name), "/")
		if rename != "" {
			switch {
			case top == "": // a "./" tar: its content goes into the new directory
				name = path.Join(rename, name)
			case name == top:
				name = rename
			case strings.HasPrefix(name, top+"/"):
				name = rename + name[len(top):]
			default:
				return fmt.Errorf("unexpected entry %q in the container's tar", hdr.Name)
			}
		}
		if name == "" {
			name = "."
		}
		if err := extractEntry(root, name, hdr, tr, top, rename); err != nil {
			return fmt.Errorf("extracting %s: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{name, hdr.ModTime})
		}
		if hdr, err = tr.Next(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		root.Chtimes(dirs[i].name, dirs[i].mtime, dirs[i].mtime)
	}
	return nil
}

func extractEntry(root *os.Root, name string, hdr *tar.Header, content io.Reader, top, rename string) error {
	mode := fs.FileMode(hdr.Mode & 0o777)
	if hdr.Typeflag != tar.TypeDir {
		if st, err := root.Lstat(name); err == nil && !st.IsDir() {
			if err := root.Remove(name); err != nil {
				return err
			}
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o700); err != nil {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, content); err != nil {
			f.Close()
			return err
		}
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return root.Chtimes(name, hdr.ModTime, hdr.ModTime)
	case tar.TypeSymlink:
		return root.Symlink(hdr.Linkname, name)
	case tar.TypeLink:
		target := strings.Trim(path.Clean("/"+hdr.Linkname), "/")
		switch {
		case rename == "":
		case top == "":
			target = path.Join(rename, target)
		case target == top || strings.HasPrefix(target, top+"/"):
			target = rename + target[len(top):]
		}
		return root.Link(target, name)
	}
	return nil // devices and fifos: docker cp makes none on the host either without root
}

// diffCommand is docker diff.
func diffCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		changes, err := ctr.Diff(ctx)
		if err != nil {
			return err
		}
		for _, ch := range changes {
			fmt.Fprintln(c.stdout, ch)
		}
		return nil
	}
}

// exportCommand is docker export.
func exportCommand(fs *flagSet) runFunc {
	var output string
	fs.String(&output, "o", "output", "string", "", "Write to a file, instead of STDOUT")
	return func(ctx context.Context, c *cli, args []string) error {
		if output == "" && isTerminal(c.stdout) {
			return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
		}
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		if output == "" {
			return ctr.Export(ctx, c.stdout)
		}
		return writeFileAtomic(output, func(w io.Writer) error { return ctr.Export(ctx, w) })
	}
}

// topCommand is docker top with ps's default -ef columns. berth reads the
// processes itself instead of running ps, so ps options are not taken.
func topCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		procs, err := ctr.Top(ctx)
		if errors.Is(err, berth.ErrNotRunning) {
			return fmt.Errorf("container %s is not running", args[0])
		}
		if err != nil {
			return err
		}
		writeTop(c.stdout, procs, time.Now())
		return nil
	}
}

// writeTop prints processes as docker top does: ps -ef's columns in a
// table padded like docker's.
func writeTop(w io.Writer, procs []berth.ProcessInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 20, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "UID\tPID\tPPID\tC\tSTIME\tTTY\tTIME\tCMD")
	for _, p := range procs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", p.User, p.PID, p.PPID, cpuPercent(p, now), psStartTime(p.StartTime, now), p.TTY, psCPUTime(p.CPUTime), p.Cmd)
	}
	tw.Flush()
}

// cpuPercent is ps's C: CPU time over elapsed time, in whole percent.
func cpuPercent(p berth.ProcessInfo, now time.Time) int {
	elapsed := now.Sub(p.StartTime)
	if elapsed <= 0 {
		return 0
	}
	return int(p.CPUTime * 100 / elapsed)
}

// psStartTime is ps's STIME: the time for a process started today, else
// the month and day ("Jan02").
func psStartTime(t, now time.Time) string {
	t = t.Local()
	if y, m, d := t.Date(); now.Local().Year() == y && now.Local().Month() == m && now.Local().Day() == d {
		return t.Format("15:04")
	}
	return t.Format("Jan02")
}

// psCPUTime is ps's TIME: [DD-]HH:MM:SS.
func psCPUTime(d time.Duration) string {
	s := int64(d / time.Second)
	days, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	if days > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}
