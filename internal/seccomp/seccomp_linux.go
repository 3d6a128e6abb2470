package seccomp

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Load installs f on the calling thread only (no SECCOMP_FILTER_FLAG_TSYNC):
// the caller is a locked OS thread about to execve, and the other Go runtime
// threads die at execve anyway. The thread must have no_new_privs set or hold
// CAP_SYS_ADMIN. Every syscall after Load, including execve itself, must be
// allowed by f.
func (f Filter) Load() error {
	if len(f) == 0 {
		return fmt.Errorf("seccomp: empty filter")
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return fmt.Errorf("loading seccomp filter (%d instructions): %w", len(f), e)
	}
	return nil
}
