// Package caps names Linux capabilities and applies a capability set to the
// calling thread, the way a container's init does right before execve.
//
// Capability state is per thread on Linux. Everything in this package that
// changes it acts on the calling OS thread only, so callers run it on a
// goroutine locked with runtime.LockOSThread and execve from that same thread:
// the new program inherits that thread's credentials and nothing else matters.
package caps

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
)

// Cap is a Linux capability number, as in <linux/capability.h>.
type Cap int

// names is indexed by capability number. The kernel's numbering is ABI, so a
// static table is safe; Last reports how far the running kernel goes.
var names = [...]string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_DAC_READ_SEARCH",
	"CAP_FOWNER",
	"CAP_FSETID",
	"CAP_KILL",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST",
	"CAP_NET_ADMIN",
	"CAP_NET_RAW",
	"CAP_IPC_LOCK",
	"CAP_IPC_OWNER",
	"CAP_SYS_MODULE",
	"CAP_SYS_RAWIO",
	"CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE",
	"CAP_SYS_PACCT",
	"CAP_SYS_ADMIN",
	"CAP_SYS_BOOT",
	"CAP_SYS_NICE",
	"CAP_SYS_RESOURCE",
	"CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG",
	"CAP_MKNOD",
	"CAP_LEASE",
	"CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL",
	"CAP_SETFCAP",
	"CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN",
	"CAP_SYSLOG",
	"CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND",
	"CAP_AUDIT_READ",
	"CAP_PERFMON",
	"CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// MaxKnown is the highest capability this package has a name for.
const MaxKnown = Cap(len(names) - 1)

// String returns the capability's name with its CAP_ prefix, e.g.
// "CAP_CHOWN", or "CAP_<n>" for a number the table does not know.
func (c Cap) String() string {
	if c >= 0 && c <= MaxKnown {
		return names[c]
	}
	return fmt.Sprintf("CAP_%d", int(c))
}

// Parse returns the capability named name. The CAP_ prefix is optional and
// case does not matter ("CAP_NET_RAW", "net_raw"), as in `docker run --cap-add`.
func Parse(name string) (Cap, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	for i, s := range names {
		if s == n {
			return Cap(i), nil
		}
	}
	return -1, fmt.Errorf("unknown capability %q", name)
}

// Set is a set of capabilities as a bit mask, the format of the CapBnd,
// CapEff, ... lines of /proc/PID/status.
type Set uint64

// ParseSet returns the set of the named capabilities. "ALL" stands for every
// capability this package knows, as in `docker run --cap-add ALL`.
func ParseSet(list []string) (Set, error) {
	var s Set
	for _, name := range list {
		if strings.EqualFold(name, "ALL") || strings.EqualFold(name, "CAP_ALL") {
			s |= All()
			continue
		}
		c, err := Parse(name)
		if err != nil {
			return 0, err
		}
		s = s.Add(c)
	}
	return s, nil
}

// All returns the set of every capability this package knows.
func All() Set { return Set(1)<<(MaxKnown+1) - 1 }

// Add returns s with c added.
func (s Set) Add(c Cap) Set { return s | Set(1)<<uint(c) }

// Has reports whether c is in s.
func (s Set) Has(c Cap) bool { return c >= 0 && c < 64 && s&(Set(1)<<uint(c)) != 0 }

// Caps returns the members of s in ascending order.
func (s Set) Caps() []Cap {
	out := make([]Cap, 0, bits.OnesCount64(uint64(s)))
	for c := Cap(0); c < 64; c++ {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Names returns the names of the members of s, sorted, with their CAP_ prefix.
func (s Set) Names() []string {
	var out []string
	for _, c := range s.Caps() {
		out = append(out, c.String())
	}
	sort.Strings(out)
	return out
}

// String formats s like /proc/PID/status does: 16 hex digits.
func (s Set) String() string { return fmt.Sprintf("%016x", uint64(s)) }

// Default returns the names of the 14 capabilities Docker grants a container
// by default (CapBnd 00000000a80425fb). The slice is new on every call.
func Default() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// DefaultSet is Docker's default capability set as a mask.
const DefaultSet Set = 0xa80425fb
