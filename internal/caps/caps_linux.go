package caps

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Last returns the highest capability the running kernel knows
// (/proc/sys/kernel/cap_last_cap), or MaxKnown when that file is unreadable.
func Last() Cap {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return MaxKnown
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return MaxKnown
	}
	return Cap(n)
}

// Supported returns the set of every capability the running kernel knows.
func Supported() Set { return Set(1)<<(Last()+1) - 1 }

// DropBounding removes every capability not in keep from the calling thread's
// bounding set. It needs CAP_SETPCAP in the effective set, so it must run
// before the thread gives up its capabilities.
func DropBounding(keep Set) error {
	last := Last() // a file read: once, not per capability
	for c := Cap(0); c <= last; c++ {
		if keep.Has(c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping %s from the bounding set: %w", c, err)
		}
	}
	return nil
}

// SetThread replaces the calling thread's effective, permitted and
// inheritable sets (capset(2), version 3). Capabilities the kernel does not
// know are ignored rather than rejected, so a list written for a newer kernel
// still works.
func SetThread(effective, permitted, inheritable Set) error {
	mask := Supported()
	effective, permitted, inheritable = effective&mask, permitted&mask, inheritable&mask
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[1].Effective = uint32(effective), uint32(effective>>32)
	data[0].Permitted, data[1].Permitted = uint32(permitted), uint32(permitted>>32)
	data[0].Inheritable, data[1].Inheritable = uint32(inheritable), uint32(inheritable>>32)
	// Raw syscall on purpose: glibc-style broadcast to all threads is wrong here
	// (see the package doc) and x/sys's Capset does the same thing.
	if _, _, e := unix.RawSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset(effective=%s permitted=%s inheritable=%s): %w", effective, permitted, inheritable, e)
	}
	return nil
}

// ClearAmbient empties the calling thread's ambient set, so that a non-root
// program gains no capability across execve that it was not given explicitly.
func ClearAmbient() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing the ambient capability set: %w", err)
	}
	return nil
}
