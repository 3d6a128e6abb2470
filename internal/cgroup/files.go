package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// writeFile writes value to an existing cgroup file. Unlike os.WriteFile it never creates the
// file: a missing control file means a missing controller or cgroup and must say so.
//
// Control files are written and read with bare system calls: an *os.File of a kernfs file,
// which can be polled, is registered with the runtime's poller and unregistered on close, two
// more system calls per file, and a container start writes dozens of them.
func writeFile(dir, name, value string) error {
	p := filepath.Join(dir, name)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	err = writeAll(fd, value)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, p, err)
	}
	return nil
}

// writeAll writes value to fd in one write, as the kernel wants a control file's value.
func writeAll(fd int, value string) error {
	for {
		n, err := unix.Write(fd, []byte(value))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		case n != len(value):
			return fmt.Errorf("short write (%d of %d bytes)", n, len(value))
		}
		return nil
	}
}

// readControl reads a control file whole (see writeFile for why not os.ReadFile).
func readControl(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, &fs.PathError{Op: "read", Path: p, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

func readString(dir, name string) (string, error) {
	b, err := readControl(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

func readInt(dir, name string) (int64, error) {
	s, err := readString(dir, name)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", filepath.Join(dir, name), err)
	}
	return v, nil
}

// readKV parses a flat keyed file such as memory.oom_control or cgroup.events.
func readKV(dir, name string) (map[string]uint64, error) {
	p := filepath.Join(dir, name)
	b, err := readControl(p)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		v, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: line %q: %w", p, sc.Text(), err)
		}
		out[fields[0]] = v
	}
	return out, nil
}

// subtree returns dir and every cgroup directory below it, deepest first, so that removing
// them in order never meets a non-empty directory. A missing dir yields nothing.
func subtree(dir string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	return dirs, err
}

// procsIn returns the processes in dir's cgroup.procs and in those of every cgroup below it.
// found names the first file that listed any, for error messages.
//
// A v1 hierarchy places threads one by one, and its cgroup.procs lists the process of every
// thread inside: a thread of another program that joined the cgroup to fork a process into
// it (a berth program's Exec, for a few milliseconds) made that program one of the
// cgroup's processes, and Kill, run by the container's owner as the container exited,
// SIGKILLed it. So where there is a tasks file (v1), a process counts only if its leader
// thread is inside: a container's processes all start there. (One whose leader exited
// while its other threads run is left out too; it dies with its pid namespace.)
func procsIn(dir string) (pids []int, found string, err error) {
	dirs, err := subtree(dir)
	if err != nil {
		return nil, "", err
	}
	for _, d := range dirs {
		listed, err := readIDs(filepath.Join(d, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) {
			continue // removed while we walked (or read)
		}
		if err != nil {
			return nil, "", err
		}
		if len(listed) == 0 {
			continue
		}
		tasks, err := readIDs(filepath.Join(d, "tasks"))
		switch {
		case errors.Is(err, unix.ENODEV):
			continue // removed while we read
		case errors.Is(err, fs.ErrNotExist):
			tasks = nil // v2: a process's threads are all in one cgroup
		case err != nil:
			return nil, "", err
		}
		for _, pid := range listed {
			if tasks != nil && !slices.Contains(tasks, pid) {
				continue
			}
			pids = append(pids, pid)
			if found == "" {
				found = filepath.Join(d, "cgroup.procs")
			}
		}
	}
	return pids, found, nil
}

// readIDs reads a cgroup file of process or thread IDs, one per line.
func readIDs(file string) ([]int, error) {
	b, err := readControl(file)
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, f := range strings.Fields(string(b)) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", file, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// rmdirRetry removes an empty cgroup directory. The kernel answers EBUSY for a short while
// after the last task left, until that task has finished exiting, so it retries for up to
// a second. A directory already gone is success.
func rmdirRetry(dir string) error {
	delay := time.Millisecond
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(delay)
			delay = min(2*delay, 50*time.Millisecond)
		default:
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		}
	}
}
