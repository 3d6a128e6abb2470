package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// ThreadMove moves one thread of this process (tid) into the cgroup in
// every v1 hierarchy and back (v1 moves threads one by one; the unified
// tree moves whole processes, so it is left alone: see UnifiedFD). A
// process the thread forks then starts inside, and a cgroup namespace it
// makes is rooted there.
//
// The thread moves itself: Join and LeaveSelf run on it and write "0" (the
// writer) to the tasks files. The kernel moves a thread that moves itself
// without its global lock on thread groups, whose write side waits out an
// RCU grace period whenever no migration happened lately: 5-13 ms on this
// machine for a program's first container, more than the rest of the
// start. The files are opened by MoveThread, on the caller's thread, so
// that the moving thread may be in another mount namespace (a container's)
// and in a private copy of the fd table when it writes.
type ThreadMove struct {
	path   string
	tid    string
	into   []int     // this cgroup's tasks files, one per v1 hierarchy
	held   []*backFD // where the thread was, the same hierarchies in order
	joined int       // how many of into the thread has joined
	left   int       // how many of those it has left again
	leave  func() error
}

// MoveThread prepares the move of thread tid (see ThreadMove). Close
// releases what it opened.
func (c *Cgroup) MoveThread(tid int) (*ThreadMove, error) {
	m := &ThreadMove{path: c.path, tid: strconv.Itoa(tid)}
	m.leave = sync.OnceValue(m.leaveByID)
	if len(c.v1Dirs) == 0 {
		return m, nil
	}
	orig, err := threadCgroups(tid)
	if err != nil {
		return nil, err
	}
	for name, dir := range c.v1Dirs {
		from, ok := orig[procKey(name)]
		if !ok {
			continue // a hierarchy the kernel does not list for the thread
		}
		backDir := filepath.Join(c.v1Roots[name], from)
		held := heldTasks(backDir) // opened here, in this fd table
		if held.err != nil {
			m.Close()
			return nil, held.err
		}
		p := filepath.Join(dir, "tasks")
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("cgroup %s: %w", c.path, &fs.PathError{Op: "open", Path: p, Err: err})
		}
		m.into = append(m.into, fd)
		m.held = append(m.held, held)
	}
	return m, nil
}

// procKey is how /proc/PID/cgroup names the v1 hierarchy of controller
// name: the controller's name, or name= for a named hierarchy.
func procKey(name cgroup1.Name) string {
	if name == cgroup1.SystemdDbus {
		return "name=systemd"
	}
	return string(name)
}

// Join moves the calling thread, which must be tid, into the cgroup. On
// failure it is in some of the hierarchies: LeaveSelf or Leave take it
// back out of those.
func (m *ThreadMove) Join() error {
	if strconv.Itoa(unix.Gettid()) != m.tid {
		return fmt.Errorf("cgroup %s: thread %d cannot move thread %s", m.path, unix.Gettid(), m.tid)
	}
	for _, fd := range m.into[m.joined:] {
		if err := writeAll(fd, "0"); err != nil {
			return fmt.Errorf("cgroup %s: moving thread %s: %w", m.path, m.tid, err)
		}
		m.joined++
	}
	return nil
}

// LeaveSelf moves the calling thread, which must be tid, back where it
// was, as far as it can: a held file gone stale (its cgroup removed and
// made again) is left to Leave, which opens it anew. It writes through
// the files MoveThread held, never opening one: the thread may be in a
// container's mount namespace and fd table.
func (m *ThreadMove) LeaveSelf() {
	if strconv.Itoa(unix.Gettid()) != m.tid {
		return
	}
	for _, held := range m.held[m.left:m.joined] {
		if held.write("0") != nil {
			return
		}
		m.left++
	}
}

// Leave moves the thread back from any goroutine, where LeaveSelf did not
// (or was not called): call it as soon as the fork is done, since the
// thread counts against the pids limit while it is inside, and on every
// other path: a cgroup holding a thread of the program can be neither
// deleted nor killed. It must not run while the thread runs Join or
// LeaveSelf. It acts once and returns the same result to every later call.
func (m *ThreadMove) Leave() error { return m.leave() }

func (m *ThreadMove) leaveByID() error {
	var first error
	for _, held := range m.held[m.left:m.joined] {
		if err := writeTasks(filepath.Dir(held.path), m.tid); err != nil && first == nil {
			first = err
		}
	}
	m.left = m.joined
	return first
}

// Close closes the files MoveThread opened. The thread's own copies (in an
// fd table it unshared) are its to close.
func (m *ThreadMove) Close() {
	for _, fd := range m.into {
		unix.Close(fd)
	}
	m.into = nil
}

// backFDs holds open the tasks files that threads of this program go back
// to (the program's own cgroups, few and fixed): every container start and
// exec moves a thread out and back, and the way back then costs one write
// per hierarchy instead of an open, a write and a close.
var backFDs sync.Map // directory → *backFD

type backFD struct {
	once sync.Once
	path string
	fd   int
	err  error
}

// writeTasks writes a thread id to dir/tasks through the held fd, and
// through a fresh one should the held fd have gone stale (its cgroup
// removed and made again: ENODEV). The stale fd stays open: another thread may be
// writing through it, and closing it could hand its number to a file
// opened meanwhile.
func writeTasks(dir, id string) error {
	err := heldTasks(dir).write(id)
	if errors.Is(err, unix.ENODEV) { // a removed cgroup's file
		backFDs.Delete(dir)
		err = heldTasks(dir).write(id)
	}
	return err
}

func heldTasks(dir string) *backFD {
	v, _ := backFDs.LoadOrStore(dir, &backFD{})
	b := v.(*backFD)
	b.once.Do(func() {
		b.path = filepath.Join(dir, "tasks")
		b.fd, b.err = unix.Open(b.path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if b.err != nil {
			b.err = &fs.PathError{Op: "open", Path: b.path, Err: b.err}
			// Not kept: a failure of the moment (EMFILE) must not fail
			// every later start of the program.
			backFDs.CompareAndDelete(dir, b)
		}
	})
	return b
}

func (b *backFD) write(id string) error {
	if b.err != nil {
		return b.err
	}
	if err := writeAll(b.fd, id); err != nil {
		return fmt.Errorf("writing %s to %s: %w", id, b.path, err)
	}
	return nil
}

// threadCgroups reads /proc/self/task/<tid>/cgroup: controller (or
// "name=..." for a named hierarchy) → path in that hierarchy.
func threadCgroups(tid int) (map[string]string, error) {
	b, err := readControl("/proc/self/task/" + strconv.Itoa(tid) + "/cgroup")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSuffix(line, "\n"), ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for ctrl := range strings.SplitSeq(parts[1], ",") {
			m[ctrl] = parts[2]
		}
	}
	return m, nil
}

// UnifiedFD returns an open fd of the cgroup's directory in the unified
// tree (on v2 and hybrid hosts), for starting a process directly inside it
// with clone3's CLONE_INTO_CGROUP (syscall.SysProcAttr.UseCgroupFD and
// CgroupFD), or -1 when the host has no unified tree. On v1 and hybrid
// hosts the fd names no v1 hierarchy: the v1 ones take the forking thread
// (ThreadMove) or the blocked process (Add). The caller closes it.
func (c *Cgroup) UnifiedFD() (int, error) {
	if c.v2 == nil {
		return -1, nil
	}
	fd, err := unix.Open(c.v2Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("cgroup %s: opening %s: %w", c.path, c.v2Dir, err)
	}
	return fd, nil
}

// SetPidsLimit writes the pids limit (0 or less: none) where the pids
// controller is. New and Update write it too; a caller that delays it
// until a thread of its own has left the cgroup (ThreadMove) creates the
// cgroup without one and calls this.
func (c *Cgroup) SetPidsLimit(limit int64) error {
	v := "max"
	if limit > 0 {
		v = strconv.FormatInt(limit, 10)
	}
	if dir, ok := c.v1Dirs[cgroup1.Pids]; ok {
		return writeFile(dir, "pids.max", v)
	}
	if c.layout.mode == ModeV2 {
		return writeFile(c.v2Dir, "pids.max", v)
	}
	if limit > 0 {
		return fmt.Errorf("cgroup %s: a pids limit was requested but the host has no pids hierarchy: %w", c.path, errors.ErrUnsupported)
	}
	return nil
}
