package initproc

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Making a network namespace is most of a millisecond of CPU here (the
// kernel runs every subsystem's per-namespace set-up), and a direct start
// made one on the preparing thread, the start's critical path. WarmNetNS
// has one made beforehand on another thread, with its loopback up; the
// next direct start that needs a new namespace joins it instead
// (takeNetNS). One is kept at most: a namespace nobody takes is freed when
// the process exits. It is made on a thread of its own that then ends
// (OnOwnThread), never the main thread.
var netnsPool struct {
	mu     sync.Mutex
	ready  *os.File
	making bool
}

// WarmNetNS has a new network namespace made in the background for the
// next container start that needs one, unless one is ready or being made.
// It returns at once.
func WarmNetNS() {
	netnsPool.mu.Lock()
	if netnsPool.ready != nil || netnsPool.making {
		netnsPool.mu.Unlock()
		return
	}
	netnsPool.making = true
	netnsPool.mu.Unlock()
	go OnOwnThread(func() {
		f := makeNetNS()
		netnsPool.mu.Lock()
		netnsPool.ready, netnsPool.making = f, false
		netnsPool.mu.Unlock()
	})
}

// takeNetNS returns the namespace WarmNetNS made, or nil if none is ready.
func takeNetNS() *os.File {
	netnsPool.mu.Lock()
	defer netnsPool.mu.Unlock()
	f := netnsPool.ready
	netnsPool.ready = nil
	return f
}

// makeNetNS makes a network namespace with its loopback up on this
// thread, which OnOwnThread locked and ends afterwards: it is never the
// main thread, whose namespace /proc/<pid>/ns/net shows (host mode joins
// that path). It returns nil on failure: the start makes its own then,
// and reports what fails.
func makeNetNS() *os.File {
	if unshareNetNS() != nil {
		return nil
	}
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil
	}
	return f
}

// enterNewNetNS puts this thread in a new network namespace with its
// loopback up: the one WarmNetNS made, else one made now. Taking one
// starts the making of the next: a process that warms namespaces starts
// containers in a row, and the next may be asked for as soon as this one
// is up. Begun only after each start (the monitor's WarmNetNS), the next
// was not ready for about a third of fifty detached starts in a row,
// whose preparing threads made their own (187 of 596 perf samples of
// namespace making; 21 of 779 since).
func enterNewNetNS() error {
	if ns := takeNetNS(); ns != nil {
		WarmNetNS()
		err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
		ns.Close()
		if err == nil {
			return nil
		}
	}
	return unshareNetNS()
}

// unshareNetNS puts this thread in a new network namespace and brings its
// loopback up.
func unshareNetNS() error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return stepError("unshare the network namespace", "", err)
	}
	if err := loopbackUp(); err != nil {
		return stepError("bring up lo", "", err)
	}
	return nil
}
