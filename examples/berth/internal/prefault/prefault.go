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

	atPhdr  = 3
	atPhnum = 5

	ptLoad  = 1
	ptPhdr  = 6
	pfWrite = 2

	// heapAhead is how much heap beyond the first fresh span is filled:
	// about what a berth command allocates.
	heapAhead = 2 << 20
	pageSize  = 4096
	hugeSize  = 2 << 20 // a PMD-mapped page on amd64 and arm64 (4 KiB pages)
)

// sink keeps the probe allocation on the heap.
var sink *[2 * pageSize]byte

// heapHuge records how the heap was prepared: with huge pages (true) or,
// where the kernel would not, by filling it (false).
var heapHuge bool

func init() {
	prepareHeap()
	populateData()
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
	sink = new([2 * pageSize]byte)
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

// populateData fills the program's writable data segment, which is copied
// on write, one fault per page otherwise (two when a read mapped it first).
func populateData() {
	var phdr, phnum uintptr
	av := getAuxv()
	for i := 0; i+1 < len(av); i += 2 {
		switch av[i] {
		case atPhdr:
			phdr = av[i+1]
		case atPhnum:
			phnum = av[i+1]
		}
	}
	if phdr == 0 || phnum == 0 {
		return
	}
	type elfPhdr struct {
		typ, flags                              uint32
		off, vaddr, paddr, filesz, memsz, align uint64
	}
	// The headers are in the mapped executable, outside Go's heap: the
	// address never moves, so reading it as a pointer is sound (the
	// indirect conversion says so to vet).
	at := *(*unsafe.Pointer)(unsafe.Pointer(&phdr))
	headers := unsafe.Slice((*elfPhdr)(at), phnum)
	var bias uintptr // nonzero for a position-independent executable
	for _, h := range headers {
		if h.typ == ptPhdr {
			bias = phdr - uintptr(h.vaddr)
		}
	}
	for _, h := range headers {
		if h.typ == ptLoad && h.flags&pfWrite != 0 {
			start := uintptr(h.vaddr) + bias
			madvise(start, start+uintptr(h.filesz), madvPopulateWrite)
		}
	}
}

// mappingOf returns the bounds of the mapping holding address a, read from
// /proc/self/maps.
func mappingOf(a uintptr) (lo, hi uintptr, ok bool) {
	path := [...]byte{'/', 'p', 'r', 'o', 'c', '/', 's', 'e', 'l', 'f', '/', 'm', 'a', 'p', 's', 0}
	fd, _, errno := rawSyscall(sysOpenat, atFDCWD, uintptr(unsafe.Pointer(&path[0])), oRDONLY|oCLOEXEC)
	if errno != 0 {
		return 0, 0, false
	}
	defer rawSyscall(sysClose, fd, 0, 0)
	var buf [16 << 10]byte
	n := 0
	for n < len(buf) {
		r, _, errno := rawSyscall(sysRead, fd, uintptr(unsafe.Pointer(&buf[n])), uintptr(len(buf)-n))
		if errno != 0 || r == 0 {
			break
		}
		n += int(r)
	}
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
