//go:build linux && (amd64 || arm64)

package prefault

import "unsafe"

// The runtime's auxiliary vector and the syscall package's raw system call,
// both published for linkname (golang.org/x/sys uses them). Importing
// package syscall instead would order this init after syscall's and
// everything sorted before it.
//
//go:linkname getAuxv runtime.getAuxv
func getAuxv() []uintptr

//go:linkname rawSyscall syscall.RawSyscall
func rawSyscall(trap, a1, a2, a3 uintptr) (r1, r2, errno uintptr)

const (
	madvHugepage      = 14
	madvPopulateWrite = 23 // Linux 5.14; older kernels refuse it (EINVAL)
	madvCollapse      = 25 // Linux 6.1

	atPhdr   = 3
	atPhnum  = 5
	atPagesz = 6

	ptLoad     = 1
	ptPhdr     = 6
	ptGnuRelro = 0x6474e552
	pfWrite    = 2

	// heapAhead is how much heap past a fresh span is filled where huge
	// pages cannot be had: about what a berth command allocates.
	heapAhead = 2 << 20
	hugeSize  = 2 << 20 // a PMD-mapped page with 4 KiB pages
)

// sink keeps the probe allocation on the heap.
var sink *[8192]byte

// heapHuge records how the heap was prepared: with huge pages (true) or,
// where the kernel would not, by filling it (false).
var heapHuge bool

// pageSize is the kernel's, from the auxiliary vector.
var pageSize uintptr

func init() {
	av := auxv()
	pageSize = av[atPagesz]
	// The heap work pays for itself in a program that allocates as it
	// starts and then ends: with 4 KiB pages only, and not in the
	// processes berth re-executes to wait (a root's monitor and a
	// lingering bridge's holder live on, holding the filled memory).
	if pageSize != 4096 || waiter() {
		return
	}
	prepareHeap()
	populateData(av[atPhdr], av[atPhnum])
}

// auxv returns the entries of the auxiliary vector this package reads.
func auxv() (v [atPagesz + 1]uintptr) {
	a := getAuxv()
	for i := 0; i+1 < len(a); i += 2 {
		if a[i] < uintptr(len(v)) {
			v[a[i]] = a[i+1]
		}
	}
	return v
}

func madvise(start, end, advice uintptr) bool {
	start &^= pageSize - 1
	end = (end + pageSize - 1) &^ (pageSize - 1)
	if end <= start {
		return false
	}
	_, _, errno := rawSyscall(sysMadvise, start, end-start, advice)
	return errno == 0
}

// prepareHeap makes the heap mapping the allocator is working in cheap to
// touch. With transparent huge pages it asks for huge pages on the whole
// mapping (a first touch then maps 2 MiB in one fault, about 130 µs) and
// collapses the 2 MiB block the allocator is filling into one huge page
// now (its pages so far are copied in). Where that fails (THP off, a
// kernel before 6.1, a block not wholly mapped) it fills the mapping from
// its start (holes below the newest span are reused first) to heapAhead
// past a fresh span instead. The mapping's bounds come from
// /proc/self/maps: advice on a range that starts in the runtime's reserved
// (PROT_NONE) arena fails whole.
func prepareHeap() {
	sink = new([8192]byte)
	a := uintptr(unsafe.Pointer(sink))
	lo, hi, ok := mappingOf(a)
	if !ok {
		return
	}
	first := (lo + hugeSize - 1) &^ (hugeSize - 1)
	last := hi &^ (hugeSize - 1)
	block := a &^ (hugeSize - 1)
	if block >= first && block+hugeSize <= last &&
		madvise(first, last, madvHugepage) &&
		madvise(block, block+hugeSize, madvCollapse) {
		heapHuge = true
		return
	}
	madvise(lo, min(hi, a+heapAhead), madvPopulateWrite)
}

type elfPhdr struct {
	typ, flags                              uint32
	off, vaddr, paddr, filesz, memsz, align uint64
}

// populateData fills the program's writable data segment, which is copied
// on write, one fault per page otherwise (two when a read mapped it first).
// The part the dynamic linker made read-only after relocating (RELRO, in
// position-independent and cgo builds) is left out: it cannot be written.
func populateData(phdr, phnum uintptr) {
	if phdr == 0 || phnum == 0 {
		return
	}
	// The headers are in the mapped executable, outside Go's heap: the
	// address never moves. The conversion goes through a *unsafe.Pointer
	// because vet (rightly, in general) flags uintptr-to-pointer ones.
	at := *(*unsafe.Pointer)(unsafe.Pointer(&phdr))
	headers := unsafe.Slice((*elfPhdr)(at), phnum)
	bias, known := uintptr(0), false // the load address of a PIE
	var relroStart, relroEnd uintptr
	for _, h := range headers {
		switch h.typ {
		case ptPhdr:
			bias, known = phdr-uintptr(h.vaddr), true
		case ptGnuRelro:
			relroStart, relroEnd = uintptr(h.vaddr), uintptr(h.vaddr+h.memsz)
		}
	}
	if !known {
		return // no way to tell where the segments are
	}
	for _, h := range headers {
		if h.typ != ptLoad || h.flags&pfWrite == 0 {
			continue
		}
		start, end := uintptr(h.vaddr), uintptr(h.vaddr+h.filesz)
		if relroStart <= start && start < relroEnd {
			start = relroEnd
		}
		if start < end {
			madvise(start+bias, end+bias, madvPopulateWrite)
		}
	}
}

// waiter reports whether this process is one berth re-executed to wait in
// the background (argv[0] "berth-monitor" or "berth-linger"), read from
// /proc/self/cmdline.
func waiter() bool {
	var buf [32]byte
	n := readFile("/proc/self/cmdline\x00", buf[:])
	arg0 := buf[:n]
	for i, c := range arg0 {
		if c == 0 {
			arg0 = arg0[:i]
			break
		}
	}
	return string(arg0) == "berth-monitor" || string(arg0) == "berth-linger"
}

// readFile reads up to len(buf) bytes of the file at the NUL-terminated
// path and returns how many it read (0 on any error).
func readFile(path string, buf []byte) int {
	p := unsafe.StringData(path)
	fd, _, errno := rawSyscall(sysOpenat, atFDCWD, uintptr(unsafe.Pointer(p)), oRDONLY|oCLOEXEC)
	if errno != 0 {
		return 0
	}
	defer rawSyscall(sysClose, fd, 0, 0)
	n := 0
	for n < len(buf) {
		r, _, errno := rawSyscall(sysRead, fd, uintptr(unsafe.Pointer(&buf[n])), uintptr(len(buf)-n))
		if errno != 0 || r == 0 {
			break
		}
		n += int(r)
	}
	return n
}

// mappingOf returns the bounds of the mapping holding address a, read from
// /proc/self/maps.
func mappingOf(a uintptr) (lo, hi uintptr, ok bool) {
	var buf [16 << 10]byte
	n := readFile("/proc/self/maps\x00", buf[:])
	// Lines are "lo-hi perms offset dev inode path", lo and hi in hex.
	for line := buf[:n]; len(line) > 0; {
		lo, rest := hexPrefix(line)
		if len(rest) == 0 || rest[0] != '-' {
			return 0, 0, false
		}
		hi, rest = hexPrefix(rest[1:])
		if lo <= a && a < hi {
			return lo, hi, true
		}
		for len(rest) > 0 && rest[0] != '\n' {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			break
		}
		line = rest[1:]
	}
	return 0, 0, false
}

func hexPrefix(b []byte) (uintptr, []byte) {
	var v uintptr
	for len(b) > 0 {
		c := b[0]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		default:
			return v, b
		}
		b = b[1:]
	}
	return v, b
}
