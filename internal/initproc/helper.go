package initproc

import (
	"encoding/binary"
	"sync"
	"syscall"

	"github.com/berth-dev/berth/internal/caps"
	"golang.org/x/sys/unix"
)

// asm collects amd64 machine code with forward and backward jumps to
// labels, all encoded with 32-bit displacements.
type asm struct {
	code   []byte
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at    int // offset of the displacement
	label string
}

func (a *asm) op(b ...byte) { a.code = append(a.code, b...) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.code)
}

// jump emits a jump to label: jmp when cc is 0, otherwise the two-byte
// conditional jump 0x0f cc (0x84 jz, 0x85 jnz, 0x82 jb, 0x87 ja, 0x88 js).
func (a *asm) jump(cc byte, label string) {
	if cc == 0 {
		a.op(0xe9)
	} else {
		a.op(0x0f, cc)
	}
	a.fixups = append(a.fixups, fixup{at: len(a.code), label: label})
	a.op(0, 0, 0, 0)
}

// rel emits the 32-bit displacement from the end of the instruction to
// label: the last field of a jump or of a RIP-relative operand.
func (a *asm) rel(label string) {
	a.fixups = append(a.fixups, fixup{at: len(a.code), label: label})
	a.op(0, 0, 0, 0)
}

func (a *asm) bytes() []byte {
	for _, f := range a.fixups {
		target, ok := a.labels[f.label]
		if !ok {
			panic("initproc: helper jumps to undefined label " + f.label)
		}
		binary.LittleEndian.PutUint32(a.code[f.at:], uint32(int32(target-(f.at+4))))
	}
	return a.code
}

// elf64 wraps code in a static little-endian ELF64 executable: the ELF
// header, a read+execute PT_LOAD of the whole file at 0x400000 and a
// PT_GNU_STACK that keeps the stack non-executable. The code starts right
// after the headers and is the entry point.
func elf64(machine uint16, code []byte) []byte {
	const (
		base   = 0x400000
		ehsize = 64
		phsize = 56
		phnum  = 2
		start  = ehsize + phnum*phsize
	)
	le := binary.LittleEndian
	b := make([]byte, 0, start+len(code))
	b = append(b, 0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */, 0 /* System V */)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, base+start) // entry
	b = le.AppendUint64(b, ehsize)     // program headers
	b = le.AppendUint64(b, 0)          // no section headers
	b = le.AppendUint32(b, 0)          // flags
	b = le.AppendUint16(b, ehsize)
	b = le.AppendUint16(b, phsize)
	b = le.AppendUint16(b, phnum)
	b = le.AppendUint16(b, 64) // section header size
	b = le.AppendUint16(b, 0)  // no sections
	b = le.AppendUint16(b, 0)
	// PT_LOAD, R+X, the whole file.
	size := uint64(start + len(code))
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 5)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x1000)
	// PT_GNU_STACK, R+W.
	b = le.AppendUint32(b, 0x6474e551)
	b = le.AppendUint32(b, 6)
	b = append(b, make([]byte, 6*8)...)
	return append(b, code...)
}

// helperPayload is what the caller writes to the exec helper's fd 3 right
// after the fork: the filter's length in bytes, the capability mask (see
// helperMask), the flags and the filter, for the helper to apply while the
// caller finishes placing it. orphanKill arms a parent-death SIGKILL (an
// attached exec, or a Run into a pid namespace it joins: Go's own cannot
// be used, its child checks getppid, which is 0 in the container's pid
// namespace). blockSignals has it exec with
// every signal blocked rather than none (the init: see
// helperBlockSignals). The go-ahead byte, helperGo, follows later, on
// its own.
func helperPayload(mask uint64, filter []byte, orphanKill, blockSignals bool) []byte {
	var flags uint64
	if orphanKill {
		flags |= helperOrphanKill
	}
	if blockSignals {
		flags |= helperBlockSignals
	}
	b := make([]byte, 0, 24+len(filter))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(filter)))
	b = binary.LittleEndian.AppendUint64(b, mask)
	b = binary.LittleEndian.AppendUint64(b, flags)
	return append(b, filter...)
}

// The exec helper's one-byte messages: helperGo, the caller's go-ahead,
// written after the payload once the process is in place; helperArmed,
// the helper's word on its status pipe that its parent-death signal is
// armed (orphanKill only), which the caller waits for before its go-ahead.
const (
	helperGo    = 'G'
	helperArmed = 'A'
)

// The payload's flags: helperOrphanKill arms a parent-death SIGKILL;
// helperBlockSignals execs with every signal blocked, for the init, so
// that a signal sent as soon as the start returns (a Stop's SIGTERM)
// waits for it instead of reaching a PID 1 without a handler, which drops
// it (execve keeps the mask and what is pending).
const (
	helperOrphanKill   = 1
	helperBlockSignals = 2
)

// helperStatus splits what the caller read from the helper's status pipe
// into whether it holds the armed byte and the errno the helper reported
// (0 for none). The errno is written in one write of 4 bytes, so the
// length tells which is there; ok is false for anything else.
func helperStatus(b []byte) (armed bool, errno syscall.Errno, ok bool) {
	if len(b)%4 == 1 {
		if b[0] != helperArmed {
			return false, 0, false
		}
		armed, b = true, b[1:]
	}
	switch len(b) {
	case 0:
		return armed, 0, true
	case 4:
		return armed, syscall.Errno(binary.NativeEndian.Uint32(b)), true
	}
	return armed, 0, false
}

// helperMask is the capability mask the helper gets: the bounding set to
// keep for a root process, all ones (drop nothing: limitCaps did) for
// another.
func helperMask(keep caps.Set, uid uint32) uint64 {
	if uid != 0 {
		return ^uint64(0)
	}
	return uint64(keep)
}

// helperELF is the exec helper, assembled once per process; nil where
// there is none for this architecture. A Run writes it into the
// container's /dev.
var helperELF = sync.OnceValue(helperImage)

// helperFD is a sealed memfd of the exec helper, for an Exec (which finds
// it through the container's /proc), opened once per process; -1 where
// there is no helper for this architecture or memfds fail.
var helperFD = sync.OnceValue(func() int {
	img := helperELF()
	if img == nil {
		return -1
	}
	// MFD_EXEC: a host with vm.memfd_noexec=1 makes memfds no-exec by
	// default (Linux 6.3); older kernels refuse the flag.
	fd, err := unix.MemfdCreate("berth-exec", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if err == unix.EINVAL {
		fd, err = unix.MemfdCreate("berth-exec", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return -1
	}
	if _, err := unix.Write(fd, img); err != nil {
		unix.Close(fd)
		return -1
	}
	// Execute-only: a helper exec'd by a user who cannot read it starts
	// non-dumpable, so no process of that user can ptrace it.
	if err := unix.Fchmod(fd, 0o111); err != nil {
		unix.Close(fd)
		return -1
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1
	}
	return fd
})
