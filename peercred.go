package berth

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// berth's programs meet on abstract unix sockets (the host-wide subnet lock,
// a root's monitor, a lingering bridge's holder), which need no file
// outside the root but which any local user can bind. Whoever is at the
// other end is checked to run as root before it is believed.

// errSquatted is an abstract socket name of berth's bound by another user.
var errSquatted = errors.New("socket name taken by another user")

// credIsRoot returns an error naming the process of cred unless it ran as
// root when it listened.
func credIsRoot(cred *syscall.Ucred) error {
	if cred.Uid == 0 {
		return nil
	}
	return fmt.Errorf("%w: it is held by pid %d, uid %d, not by a berth program run as root", errSquatted, cred.Pid, cred.Uid)
}

// peerRoot checks the credentials of the process at the other end of c
// (credIsRoot).
func peerRoot(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	if cerr := raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	return credIsRoot(cred)
}

// abstractHolder connects to the abstract unix socket name and returns nil
// when a root process listens on it, an error naming the process when
// another user's does, and the connect's error otherwise (ENOENT: free
// now; ECONNREFUSED: bound, not listening; EAGAIN: its queue is full).
func abstractHolder(name string) error {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: name}); err != nil {
		return err
	}
	cred, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return err
	}
	return credIsRoot(cred)
}
