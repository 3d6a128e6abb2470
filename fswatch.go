package berth

import (
	"errors"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A user's inotify instances are few (128 by default, for all of the
// user's programs), so a berth process has one at most, shared by all it
// watches: log followers woken by a container's writes instead of
// polling, and WithStdinOnce's FIFOs. It exists while something is
// watched; its reader goroutine ends with the last watch.

type fsWatcher struct {
	mu   sync.Mutex
	file *os.File                      // the inotify instance, nil when none is needed
	subs map[int32]map[*fsWatch]uint32 // by watch descriptor: each watch's mask
}

var watcher fsWatcher

// fsWatch is one subscription: C gets a value (coalesced, never blocking
// the reader) after any event of its mask on its path, or when the path
// goes away (the kernel drops the watch: no more events come).
type fsWatch struct {
	C  chan struct{}
	wd int32
}

// watchPath watches path for the inotify events of mask. With
// IN_Q_OVERFLOW in mask, the watch also wakes when the kernel's queue
// overflowed (events were lost, maybe its own); without, a lost event is
// never known.
func watchPath(path string, mask uint32) (*fsWatch, error) {
	w := &watcher
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			return nil, err
		}
		w.file = os.NewFile(uintptr(fd), "inotify")
		w.subs = map[int32]map[*fsWatch]uint32{}
		go w.read(w.file)
	}
	// IN_MASK_ADD: watches of one inode share a descriptor, whose mask is
	// then all of theirs; each subscriber sees its own events only.
	wd, err := unix.InotifyAddWatch(int(w.file.Fd()), path, mask&^unix.IN_Q_OVERFLOW|unix.IN_MASK_ADD)
	if err != nil {
		w.closeIfIdle()
		return nil, err
	}
	s := &fsWatch{C: make(chan struct{}, 1), wd: int32(wd)}
	if w.subs[s.wd] == nil {
		w.subs[s.wd] = map[*fsWatch]uint32{}
	}
	w.subs[s.wd][s] = mask
	return s, nil
}

func (s *fsWatch) wake() {
	select {
	case s.C <- struct{}{}:
	default:
	}
}

// Close ends the subscription. Safe to call more than once.
func (s *fsWatch) Close() {
	w := &watcher
	w.mu.Lock()
	defer w.mu.Unlock()
	subs, ok := w.subs[s.wd]
	if _, mine := subs[s]; !ok || !mine {
		return
	}
	delete(subs, s)
	if len(subs) == 0 {
		delete(w.subs, s.wd)
		unix.InotifyRmWatch(int(w.file.Fd()), uint32(s.wd))
	}
	w.closeIfIdle()
}

// closeIfIdle closes the instance once nothing is watched. w.mu is held.
func (w *fsWatcher) closeIfIdle() {
	if len(w.subs) == 0 && w.file != nil {
		w.file.Close() // ends its reader
		w.file, w.subs = nil, nil
	}
}

// read hands f's events to their subscribers until f is closed.
func (w *fsWatcher) read(f *os.File) {
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		w.mu.Lock()
		if w.file != f { // closed and perhaps replaced meanwhile
			w.mu.Unlock()
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				for _, subs := range w.subs {
					for s, mask := range subs {
						if mask&unix.IN_Q_OVERFLOW != 0 {
							s.wake()
						}
					}
				}
				continue
			}
			for s, mask := range w.subs[ev.Wd] {
				if ev.Mask&(mask|unix.IN_IGNORED) != 0 {
					s.wake()
				}
			}
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(w.subs, ev.Wd) // the kernel dropped it: its path is gone
			}
		}
		w.closeIfIdle()
		w.mu.Unlock()
	}
}
