//go:build linux && (amd64 || arm64)

package prefault

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The package's init ran before the test: the heap pages from the start of
// the allocator's mapping to heapAhead past the probe must be resident
// although the program has not touched most of them.
func TestHeapFilled(t *testing.T) {
	needPopulate(t)
	a := uintptr(unsafe.Pointer(sink))
	lo, hi, ok := mappingOf(a)
	if !ok {
		t.Fatalf("no mapping in /proc/self/maps holds the probe at %#x", a)
	}
	end := min(hi, a+heapAhead)
	vec := make([]byte, (end-lo)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, lo, end-lo, uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	missing := 0
	for _, v := range vec {
		if v&1 == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of the %d heap pages in %#x-%#x are not resident", missing, len(vec), lo, end)
	}
}

// The writable data segment is private: once filled, all of it is
// anonymous (copied) memory in the mapping's smaps entry.
func TestDataFilled(t *testing.T) {
	needPopulate(t)
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var size, anon int
	inData := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 6 && strings.Contains(fields[0], "-"):
			inData = fields[1] == "rw-p" && fields[5] == exe
		case inData && fields[0] == "Size:":
			size, _ = strconv.Atoi(fields[1])
		case inData && fields[0] == "Anonymous:":
			anon, _ = strconv.Atoi(fields[1])
			inData = false
		}
	}
	if size == 0 {
		t.Fatalf("no writable mapping of %s in /proc/self/smaps", exe)
	}
	if anon < size {
		t.Errorf("the data mapping of %s has %d of %d KiB copied", exe, anon, size)
	}
}

func TestHexPrefix(t *testing.T) {
	for _, c := range []struct {
		in   string
		v    uintptr
		rest string
	}{
		{"7f0d22460000-7f0d22600000 rw-p", 0x7f0d22460000, "-7f0d22600000 rw-p"},
		{"400000", 0x400000, ""},
		{"-1", 0, "-1"},
	} {
		v, rest := hexPrefix([]byte(c.in))
		if v != c.v || string(rest) != c.rest {
			t.Errorf("hexPrefix(%q) = %#x, %q; want %#x, %q", c.in, v, rest, c.v, c.rest)
		}
	}
}

// needPopulate skips on kernels without MADV_POPULATE_WRITE (before 5.14),
// where the package does nothing.
func needPopulate(t *testing.T) {
	b, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	if err := unix.Madvise(b, madvPopulateWrite); err != nil {
		var u unix.Utsname
		unix.Uname(&u)
		t.Skipf("kernel %s refuses MADV_POPULATE_WRITE: %v", bytes.TrimRight(u.Release[:], "\x00"), err)
	}
}
