package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// errWouldBlock is returned by a non-blocking lock attempt that failed.
var errWouldBlock = errors.New("lock held by another process")

// Per-object locks. A lock named <kind>-<64 hex digits>, for a kind in
// objectLockKinds (a container's owner, record, wait, pause and network locks), is not a
// file of its own but one byte of locks/objects, locked with an open file
// description lock (fcntl F_OFD_SETLK): like flock, it belongs to the open
// file, conflicts between two opens in one process, is shared by a fork
// and released by the last close, but it makes no file. A file per lock
// was an inode made and later freed per container, and on ext4 without a
// journal (this project's machine) making an inode scans past every one
// freed in the last minute: in fifty detached starts after fifty
// removals, a quarter of the monitor's CPU was that scan. The byte is the
// name's 64-bit FNV-1a hash with the top bit cleared, so two live names
// share one with a chance of about n²/2⁶⁴.
var objectLockKinds = []string{"owner-", "ctr-", "wait-", "pause-", "net-"}

const objectLockFile = "objects"

// objectLockByte reports the byte of locks/objects that stands for the
// lock name, or false for a lock that is a file of its own.
func objectLockByte(name string) (int64, bool) {
	for _, kind := range objectLockKinds {
		id, ok := strings.CutPrefix(name, kind)
		if !ok || len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(name))
		return int64(h.Sum64() >> 1), true
	}
	return 0, false
}

// flock takes a lock on f: the whole file's flock, or one byte's open file
// description lock when at is a byte (objectLockByte). It retries on EINTR
// and returns errWouldBlock for a lock held elsewhere.
func flock(f *os.File, at int64, isByte, exclusive, block bool) error {
	var err error
	for {
		if isByte {
			lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: at, Len: 1}
			if exclusive {
				lk.Type = unix.F_WRLCK
			}
			cmd := unix.F_OFD_SETLK
			if block {
				cmd = unix.F_OFD_SETLKW
			}
			err = unix.FcntlFlock(f.Fd(), cmd, &lk)
		} else {
			how := unix.LOCK_SH
			if exclusive {
				how = unix.LOCK_EX
			}
			if !block {
				how |= unix.LOCK_NB
			}
			err = unix.Flock(int(f.Fd()), how)
		}
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EWOULDBLOCK || err == unix.EACCES {
		return errWouldBlock
	}
	return err
}

// openLock opens the file behind a lock name, making it if create is set
// (locks/objects is made by the first per-object lock either way).
func (s *Store) openLock(name string, create bool) (f *os.File, at int64, isByte bool, err error) {
	at, isByte = objectLockByte(name)
	file, flags := name, os.O_RDWR|unix.O_CLOEXEC
	if isByte {
		file, create = objectLockFile, true
	}
	if create {
		flags |= os.O_CREATE
	}
	f, err = os.OpenFile(filepath.Join(s.root, "locks", file), flags, 0o600)
	return f, at, isByte, err
}

// Lock takes the named cross-process lock (shared or exclusive), waiting
// until it is free or ctx is done. The lock lives in locks/NAME, or is a
// byte of locks/objects for a per-object lock (above); it is released by
// calling the returned function, or by the kernel when the process dies,
// which is what makes a killed program's locks harmless.
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
// berth's spare.go). A per-object lock always exists.
func (s *Store) TryLockIfExists(name string, exclusive bool) (unlock func(), exists, ok bool) {
	f, at, isByte, err := s.openLock(name, false)
	if err != nil {
		return nil, !errors.Is(err, os.ErrNotExist), false
	}
	unlock, err = s.take(f, name, at, isByte, exclusive, false)
	return unlock, true, err == nil
}

func (s *Store) lockFile(name string, exclusive, block bool) (func(), error) {
	for {
		f, at, isByte, err := s.openLock(name, true)
		if err != nil {
			return nil, fmt.Errorf("opening lock %s: %w", name, err)
		}
		unlock, err := s.take(f, name, at, isByte, exclusive, block)
		if err != nil && err != errWouldBlock {
			return nil, fmt.Errorf("locking %s: %w", name, err)
		}
		if err != nil || isByte || s.stillNamed(f, name) {
			return unlock, err
		}
		// The holder deleted the file (a removed volume's lock) before it
		// let go: the lock is the file the name leads to now.
		unlock()
	}
}

// stillNamed reports whether the lock file f is still locks/<name>.
func (s *Store) stillNamed(f *os.File, name string) bool {
	var held, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(filepath.Join(s.root, "locks", name), &named) != nil {
		return false
	}
	return held.Dev == named.Dev && held.Ino == named.Ino
}

// take locks the opened lock f (flock) and returns its unlock, or closes
// f. A root from before object locks may hold a lock file of the old kind
// for a container an older program still runs: for an object lock, that
// file is locked too where it exists, and a holder of it counts.
func (s *Store) take(f *os.File, name string, at int64, isByte, exclusive, block bool) (func(), error) {
	if err := flock(f, at, isByte, exclusive, block); err != nil {
		f.Close()
		return nil, err
	}
	if !isByte {
		return func() { f.Close() }, nil
	}
	old, err := os.OpenFile(filepath.Join(s.root, "locks", name), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return func() { f.Close() }, nil
	}
	if err := flock(old, 0, false, exclusive, block); err != nil {
		old.Close()
		f.Close()
		return nil, err
	}
	return func() { old.Close(); f.Close() }, nil
}

// TryLockFile is TryLock returning the locked file itself: closing it, or
// the death of every process holding a copy of it, releases the lock. A
// child process given the file (exec.Cmd.ExtraFiles) keeps the lock after
// its parent exits.
func (s *Store) TryLockFile(name string, exclusive bool) (*os.File, bool) {
	f, at, isByte, err := s.openLock(name, true)
	if err != nil {
		return nil, false
	}
	if err := flock(f, at, isByte, exclusive, false); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}
