//go:build linux && (amd64 || arm64)

package prefault

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The package's init ran before the test. Where the kernel offers
// transparent huge pages and MADV_COLLAPSE (6.1), the block the allocator
// was filling is one huge page and the mapping asks for more; elsewhere
// the heap pages from the start of the mapping to heapAhead past the probe
// are resident although the program has not touched most of them.
func TestHeapPrepared(t *testing.T) {
	a := uintptr(unsafe.Pointer(sink))
	lo, hi, ok := mappingOf(a)
	if !ok {
		t.Fatalf("no mapping in /proc/self/maps holds the probe at %#x", a)
	}
	if thpExpected(t) && !heapHuge {
		t.Fatal("the kernel has transparent huge pages and MADV_COLLAPSE, but the heap was filled page by page")
	}
	if heapHuge {
		entry := smapsEntry(t, func(start, end uintptr, perms, path string) bool { return start <= a && a < end })
		if kb := smapsField(entry, "AnonHugePages:"); kb < hugeSize>>10 {
			t.Errorf("the heap mapping %#x-%#x has %d KiB of huge pages, want at least %d", lo, hi, kb, hugeSize>>10)
		}
		if !strings.Contains(entry["VmFlags:"], " hg") {
			t.Errorf("the heap mapping does not ask for huge pages: VmFlags %q", entry["VmFlags:"])
		}
		return
	}
	needPopulate(t)
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

// thpExpected reports whether this kernel should have given the heap huge
// pages: THP not "never" and a kernel of 6.1 or later.
func thpExpected(t *testing.T) bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(b), "[never]") {
		return false
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(string(bytes.TrimRight(u.Release[:], "\x00")), "%d.%d", &major, &minor)
	return major > 6 || major == 6 && minor >= 1
}

// smapsEntry returns the fields of the first /proc/self/smaps entry that
// match wants, keyed by their name with its colon ("Size:", "VmFlags:").
func smapsEntry(t *testing.T, match func(start, end uintptr, perms, path string) bool) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entry map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if start, rest := hexPrefix([]byte(fields[0])); len(rest) > 0 && rest[0] == '-' && len(fields) >= 5 {
			if entry != nil {
				return entry
			}
			end, _ := hexPrefix(rest[1:])
			path := ""
			if len(fields) >= 6 {
				path = fields[5]
			}
			if match(start, end, fields[1], path) {
				entry = map[string]string{}
			}
			continue
		}
		if entry != nil {
			entry[fields[0]] = strings.TrimPrefix(sc.Text(), fields[0])
		}
	}
	if entry == nil {
		t.Fatal("no /proc/self/smaps entry matches")
	}
	return entry
}

// smapsField is a size field of an smaps entry, in KiB.
func smapsField(entry map[string]string, name string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(entry[name]), " kB"))
	return n
}

// The writable data segment is private: once filled, all of it is
// anonymous (copied) memory in the mapping's smaps entry.
func TestDataFilled(t *testing.T) {
	needPopulate(t)
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	entry := smapsEntry(t, func(_, _ uintptr, perms, path string) bool { return perms == "rw-p" && path == exe })
	size, anon := smapsField(entry, "Size:"), smapsField(entry, "Anonymous:")
	if size == 0 || anon < size {
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
	b, err := unix.Mmap(-1, 0, int(pageSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
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

// A process berth re-executes to wait in the background (argv[0]
// berth-monitor or berth-linger) keeps its heap as the runtime made it.
func TestWaiterSkips(t *testing.T) {
	if os.Getenv("PREFAULT_REPORT") != "" {
		fmt.Printf("prepared=%v\n", sink != nil)
		return
	}
	for _, argv0 := range []string{"berth-monitor", "berth-linger", "berth-init"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWaiterSkips$")
		cmd.Args[0] = argv0
		cmd.Env = append(os.Environ(), "PREFAULT_REPORT=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", argv0, err)
		}
		want := "prepared=" + strconv.FormatBool(argv0 == "berth-init")
		if !strings.Contains(string(out), want) {
			t.Errorf("run as %s: %q, want %s", argv0, out, want)
		}
	}
}
