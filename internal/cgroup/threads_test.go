package cgroup

import (
	"fmt"
	"runtime"
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
						leave, err := c.JoinThread(tid)
						if err != nil {
							return err
						}
						return leave()
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

// JoinThread moves one thread, not its process, and leave puts it back
// where it was in every v1 hierarchy.
func TestJoinThread(t *testing.T) {
	for _, tl := range layouts(t) {
		if tl.l.v1 == nil {
			continue
		}
		t.Run(tl.name, func(t *testing.T) {
			parent := parentFor(t, tl.l)
			c := mustNew(t, tl.l, parent+"/a", Resources{})
			err := onThread(func(tid int) error {
				before, err := threadCgroups(tid)
				if err != nil {
					return err
				}
				leave, err := c.JoinThread(tid)
				if err != nil {
					return err
				}
				inside, err := threadCgroups(tid)
				if err != nil {
					return err
				}
				mine, err := threadCgroups(unix.Getpid())
				if err != nil {
					return err
				}
				if err := leave(); err != nil {
					return err
				}
				after, err := threadCgroups(tid)
				if err != nil {
					return err
				}
				for name := range c.v1Dirs {
					key := string(name)
					if name == cgroup1.SystemdDbus {
						key = "name=systemd"
					}
					if inside[key] != c.path {
						t.Errorf("%s: thread in %q while joined, want %q", key, inside[key], c.path)
					}
					if mine[key] == c.path {
						t.Errorf("%s: the process's main thread moved too", key)
					}
					if after[key] != before[key] {
						t.Errorf("%s: thread in %q after leave, want %q", key, after[key], before[key])
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
