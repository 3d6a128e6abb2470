package seccomp

import (
	"encoding/binary"
	"errors"
	"runtime"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/internal/caps"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// run interprets f the way the kernel does, for the opcodes the compiler emits.
func run(t *testing.T, f Filter, auditArch uint32, nr int, args ...uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], uint32(nr))
	binary.LittleEndian.PutUint32(data[offArch:], auditArch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(f); pc++ {
		in := f[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var ok bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = acc == in.K
			case unix.BPF_JGT:
				ok = acc > in.K
			case unix.BPF_JGE:
				ok = acc >= in.K
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("unexpected opcode %#x at %d", in.Code, pc)
		}
	}
	t.Fatal("program fell off the end")
	return 0
}

func nr(t *testing.T, name string) int {
	t.Helper()
	n, ok := archX86_64.number(name)
	if !ok {
		t.Fatalf("no syscall %q", name)
	}
	return int(n)
}

func TestDefaultProfileSemantics(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the expectations below use x86_64 syscall numbers")
	}
	def, err := DefaultFilter(caps.Default())
	if err != nil {
		t.Fatal(err)
	}
	adm, err := DefaultFilter(append(caps.Default(), "CAP_SYS_ADMIN"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default filter: %d instructions; with CAP_SYS_ADMIN: %d", len(def), len(adm))
	x86 := uint32(unix.AUDIT_ARCH_X86_64)
	allow := uint32(retAllow)
	eperm := uint32(retErrno | uint32(syscall.EPERM))
	enosys := uint32(retErrno | uint32(syscall.ENOSYS))
	tests := []struct {
		name    string
		f       Filter
		syscall string
		args    []uint64
		want    uint32
	}{
		{"read", def, "read", nil, allow},
		{"execve", def, "execve", nil, allow},
		{"mount", def, "mount", nil, eperm},
		{"mount with CAP_SYS_ADMIN", adm, "mount", nil, allow},
		{"unshare", def, "unshare", nil, eperm},
		{"keyctl", def, "keyctl", nil, eperm},
		{"clone plain", def, "clone", []uint64{uint64(unix.SIGCHLD)}, allow},
		{"clone newuser", def, "clone", []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, eperm},
		{"clone newns with CAP_SYS_ADMIN", adm, "clone", []uint64{unix.CLONE_NEWNS}, allow},
		{"clone3", def, "clone3", nil, enosys},
		{"personality 0", def, "personality", []uint64{0}, allow},
		{"personality 0xffffffff", def, "personality", []uint64{0xffffffff}, allow},
		{"personality other", def, "personality", []uint64{0x0400000}, eperm},
		{"socket inet", def, "socket", []uint64{unix.AF_INET}, allow},
		{"socket unix", def, "socket", []uint64{unix.AF_UNIX}, allow},
		{"socket vsock", def, "socket", []uint64{unix.AF_VSOCK}, eperm},
		{"socket high bits", def, "socket", []uint64{1<<32 | unix.AF_INET}, eperm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(t, tt.f, x86, nr(t, tt.syscall), tt.args...); got != tt.want {
				t.Errorf("%s%v = %#x, want %#x", tt.syscall, tt.args, got, tt.want)
			}
		})
	}
	if got := run(t, def, 0xdead, 0); got != retKillProcess {
		t.Errorf("unknown arch = %#x, want kill", got)
	}
	if got := run(t, def, x86, 0x40000000); got != eperm {
		t.Errorf("x32 read = %#x, want EPERM", got)
	}
	if got := run(t, def, x86, 1000); got != enosys {
		t.Errorf("syscall 1000 = %#x, want ENOSYS", got)
	}
	read386, _ := archI386.number("read")
	if got := run(t, def, unix.AUDIT_ARCH_I386, int(read386)); got != allow {
		t.Errorf("i386 read = %#x, want allow", got)
	}
}

func TestOperators(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("uses x86_64 numbering")
	}
	nrOf := nr(t, "close")
	mk := func(op specs.LinuxSeccompOperator, v, v2 uint64) Filter {
		t.Helper()
		f, err := Compile(&specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{{
				Names:  []string{"close"},
				Action: specs.ActAllow,
				Args:   []specs.LinuxSeccompArg{{Index: 2, Value: v, ValueTwo: v2, Op: op}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	big := uint64(5)<<32 | 7
	tests := []struct {
		op     specs.LinuxSeccompOperator
		v, v2  uint64
		arg    uint64
		allows bool
	}{
		{specs.OpEqualTo, big, 0, big, true},
		{specs.OpEqualTo, big, 0, 7, false},
		{specs.OpNotEqual, big, 0, big, false},
		{specs.OpNotEqual, big, 0, 7, true},
		{specs.OpGreaterThan, big, 0, big + 1, true},
		{specs.OpGreaterThan, big, 0, big, false},
		{specs.OpGreaterThan, big, 0, 6<<32 | 0, true},
		{specs.OpGreaterThan, big, 0, 4<<32 | 9, false},
		{specs.OpGreaterEqual, big, 0, big, true},
		{specs.OpGreaterEqual, big, 0, big - 1, false},
		{specs.OpLessThan, big, 0, big - 1, true},
		{specs.OpLessThan, big, 0, big, false},
		{specs.OpLessThan, big, 0, 4<<32 | 9, true},
		{specs.OpLessThan, big, 0, 6<<32 | 0, false},
		{specs.OpLessEqual, big, 0, big, true},
		{specs.OpLessEqual, big, 0, big + 1, false},
		{specs.OpMaskedEqual, 0xff00, 0x1200, 0x12ab, true},
		{specs.OpMaskedEqual, 0xff00, 0x1200, 0x13ab, false},
	}
	for _, tt := range tests {
		f := mk(tt.op, tt.v, tt.v2)
		got := run(t, f, unix.AUDIT_ARCH_X86_64, nrOf, 0, 0, tt.arg)
		if (got == retAllow) != tt.allows {
			t.Errorf("%s(%#x, %#x) on %#x: got %#x, want allow=%v", tt.op, tt.v, tt.v2, tt.arg, got, tt.allows)
		}
	}
}

// TestLoad installs the default filter on a locked thread that is thrown
// away afterwards (a goroutine that exits while locked takes its thread with
// it), so the test process itself stays unfiltered.
func TestLoad(t *testing.T) {
	f, err := DefaultFilter(caps.Default())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			errc <- err
			return
		}
		if err := f.Load(); err != nil {
			errc <- err
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_UNSHARE, unix.CLONE_NEWUTS, 0, 0); e != unix.EPERM {
			errc <- errors.New("unshare under the filter: got " + e.Error() + ", want EPERM")
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0); e != 0 {
			errc <- e
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
