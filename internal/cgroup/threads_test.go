package cgroup

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// Containers of one program start concurrently and create their shared
// parents concurrently: every cgroup must take a task at once, including
// in cpuset, where a parent another goroutine made but has not filled yet
// refuses tasks (ENOSPC).
func TestConcurrentCreateTakesTasks(t *testing.T) {
	for _, tl := range layouts(t) {
		if tl.l.v1 == nil {
			continue
		}
		t.Run(tl.name, func(t *testing.T) {
			parent := parentFor(t, tl.l)
			const n = 8
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := tl.l.create(fmt.Sprintf("%s/mid/c%d", parent, i), Resources{})
					if err != nil {
						errs[i] = err
						return
					}
					errs[i] = onThread(func(tid int) error {
						m, err := c.MoveThread(tid)
						if err != nil {
							return err
						}
						defer m.Close()
						if err := m.Join(); err != nil {
							m.Leave()
							return err
						}
						m.LeaveSelf()
						return m.Leave()
					})
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("cgroup %d: %v", i, err)
				}
			}
		})
	}
}

// MoveThread moves one thread, not its process, and LeaveSelf puts it
// back where it was in every v1 hierarchy. The thread moves itself
// through files opened beforehand: here it has its own mount namespace
// with an empty /sys/fs/cgroup, as a starting container's thread has the
// container's, and its own fd table.
func TestMoveThread(t *testing.T) {
	for _, tl := range layouts(t) {
		if tl.l.v1 == nil {
			continue
		}
		t.Run(tl.name, func(t *testing.T) {
			parent := parentFor(t, tl.l)
			c := mustNew(t, tl.l, parent+"/a", Resources{})
			var m *ThreadMove
			// Closed here: the thread's fd table is its own by then.
			defer func() {
				if m != nil {
					m.Close()
				}
			}()
			err := onThread(func(tid int) error {
				before, err := threadCgroups(tid)
				if err != nil {
					return err
				}
				if m, err = c.MoveThread(tid); err != nil {
					return err
				}
				if err := hideCgroups(); err != nil {
					return err
				}
				if err := m.Join(); err != nil {
					return err
				}
				inside, err := threadCgroups(tid) // /proc is still the host's
				if err != nil {
					return err
				}
				mine, err := threadCgroups(unix.Getpid())
				if err != nil {
					return err
				}
				m.LeaveSelf()
				after, err := threadCgroups(tid)
				if err != nil {
					return err
				}
				if err := m.Leave(); err != nil {
					return err
				}
				for name := range c.v1Dirs {
					key := procKey(name)
					if inside[key] != c.path {
						t.Errorf("%s: thread in %q while joined, want %q", key, inside[key], c.path)
					}
					if mine[key] == c.path {
						t.Errorf("%s: the process's main thread moved too", key)
					}
					if after[key] != before[key] {
						t.Errorf("%s: thread in %q after LeaveSelf, want %q", key, after[key], before[key])
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Leave, from another thread, takes the thread out of whatever it joined
// and did not leave itself; Join and LeaveSelf refuse to move any thread
// but the one MoveThread was given.
func TestMoveThreadLeaveFromOutside(t *testing.T) {
	for _, tl := range layouts(t) {
		if tl.l.v1 == nil {
			continue
		}
		t.Run(tl.name, func(t *testing.T) {
			parent := parentFor(t, tl.l)
			c := mustNew(t, tl.l, parent+"/a", Resources{})
			var m *ThreadMove
			var before, after map[string]string
			joined := make(chan error, 1)
			release := make(chan struct{})
			ended := make(chan error, 1)
			go func() {
				ended <- onThread(func(tid int) error {
					var err error
					if before, err = threadCgroups(tid); err != nil {
						joined <- err
						return err
					}
					if m, err = c.MoveThread(tid); err != nil {
						joined <- err
						return err
					}
					joined <- m.Join()
					<-release
					after, err = threadCgroups(tid)
					return err
				})
			}()
			if err := <-joined; err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := m.Join(); err == nil {
				t.Error("Join on another thread: no error")
			}
			m.LeaveSelf() // not the thread: moves nothing
			tid, _ := strconv.Atoi(m.tid)
			if inside, err := threadCgroups(tid); err != nil {
				t.Fatal(err)
			} else if key := anyV1Key(c); inside[key] != c.path {
				t.Fatalf("%s: thread in %q after LeaveSelf on another thread, want it still in %q", key, inside[key], c.path)
			}
			if err := m.Leave(); err != nil {
				t.Fatal(err)
			}
			close(release)
			if err := <-ended; err != nil {
				t.Fatal(err)
			}
			for name := range c.v1Dirs {
				key := procKey(name)
				if after[key] != before[key] {
					t.Errorf("%s: thread in %q after Leave, want %q", key, after[key], before[key])
				}
			}
		})
	}
}

// anyV1Key is the /proc/PID/cgroup key of one of c's v1 hierarchies.
func anyV1Key(c *Cgroup) string {
	for name := range c.v1Dirs {
		return procKey(name)
	}
	return ""
}

// hideCgroups gives the calling thread its own mount namespace and fd
// table, with an empty tmpfs on /sys/fs/cgroup: a thread that moves itself
// must do it without opening a file.
func hideCgroups() error {
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS | unix.CLONE_FILES); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	return unix.Mount("tmpfs", "/sys/fs/cgroup", "tmpfs", 0, "size=4k")
}

// SetPidsLimit writes a limit and lifts it.
func TestSetPidsLimit(t *testing.T) {
	for _, tl := range layouts(t) {
		t.Run(tl.name, func(t *testing.T) {
			parent := parentFor(t, tl.l)
			c := mustNew(t, tl.l, parent+"/a", Resources{})
			dir, ok := c.v1Dirs[cgroup1.Pids]
			if !ok {
				if tl.l.mode != ModeV2 || !strings.Contains(readFile(t, c.v2Dir, "cgroup.controllers")+readFile(t, tl.l.v2Mount, "cgroup.subtree_control"), "pids") {
					t.Skip("skipping: this layout has no pids controller")
				}
				dir = c.v2Dir
			}
			for _, tc := range []struct {
				limit int64
				want  string
			}{{7, "7"}, {0, "max"}} {
				if err := c.SetPidsLimit(tc.limit); err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSpace(readFile(t, dir, "pids.max")); got != tc.want {
					t.Errorf("SetPidsLimit(%d): pids.max = %q, want %q", tc.limit, got, tc.want)
				}
			}
		})
	}
}

// onThread runs fn with the tid of a locked OS thread that is not the
// main thread (whose cgroups are the process's in /proc/self); the thread
// ends with the goroutine.
func onThread(fn func(tid int) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if tid := unix.Gettid(); tid != unix.Getpid() {
			errc <- fn(tid)
			return
		}
		// This goroutine holds the main thread, so the next one runs elsewhere.
		errc <- onThread(fn)
		runtime.UnlockOSThread()
	}()
	return <-errc
}
