package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// errWouldBlock is returned by a non-blocking lock attempt that failed.
var errWouldBlock = errors.New("lock held by another process")

// Lock takes the named cross-process lock (shared or exclusive), waiting
// until it is free or ctx is done. The lock lives in locks/NAME; it is
// released by calling the returned function, or by the kernel when the
// process dies, which is what makes a killed program's locks harmless.
func (s *Store) Lock(ctx context.Context, name string, exclusive bool) (func(), error) {
	delay := 500 * time.Microsecond
	for {
		unlock, err := s.lockFile(name, exclusive, false)
		if err == nil {
			return unlock, nil
		}
		if !errors.Is(err, errWouldBlock) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s: %w", name, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// TryLock takes the named lock if it is free and reports whether it did.
func (s *Store) TryLock(name string, exclusive bool) (func(), bool) {
	unlock, err := s.lockFile(name, exclusive, false)
	return unlock, err == nil
}

// TryLockIfExists is TryLock for a lock whose file may not exist: without
// the file no one can hold the lock, and none is made (exists is false).
// A new file costs more than a lookup on some disks (see the package
// berth's spare.go).
func (s *Store) TryLockIfExists(name string, exclusive bool) (unlock func(), exists, ok bool) {
	f, err := os.OpenFile(filepath.Join(s.root, "locks", name), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, !errors.Is(err, os.ErrNotExist), false
	}
	how := unix.LOCK_SH | unix.LOCK_NB
	if exclusive {
		how = unix.LOCK_EX | unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, true, false
	}
	return func() { f.Close() }, true, true
}

func (s *Store) lockFile(name string, exclusive, block bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, "locks", name), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", name, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if !block {
		how |= unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, errWouldBlock
		}
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}

// TryLockFile is TryLock returning the locked file itself: closing it, or
// the death of every process holding a copy of it, releases the lock. A
// child process given the file (exec.Cmd.ExtraFiles) keeps the lock after
// its parent exits.
func (s *Store) TryLockFile(name string, exclusive bool) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(s.root, "locks", name), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false
	}
	how := unix.LOCK_SH | unix.LOCK_NB
	if exclusive {
		how = unix.LOCK_EX | unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}
