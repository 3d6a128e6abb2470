package seccomp

import (
	"runtime"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/internal/caps"
	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// linearVerdict evaluates an expanded profile for one call the way Docker
// and libseccomp define it: the first rule, in profile order, whose syscall
// and argument conditions match decides; an unlisted syscall newer than any
// listed one gets ENOSYS, any other the default action. It is the reference
// the compiled binary search must agree with.
func linearVerdict(t *testing.T, p *specs.LinuxSeccomp, table *archTable, nr int, args []uint64) uint32 {
	t.Helper()
	def, _ := action(p.DefaultAction, p.DefaultErrnoRet)
	maxNr := -1
	for _, r := range p.Syscalls {
		for _, name := range r.Names {
			n, ok := table.number(name)
			if !ok {
				continue
			}
			maxNr = max(maxNr, int(n))
			if int(n) != nr {
				continue
			}
			if argsMatch(r.Args, args) {
				act, err := action(r.Action, r.ErrnoRet)
				if err != nil {
					t.Fatal(err)
				}
				return act
			}
		}
	}
	if nr > maxNr && def != retAllow {
		return retErrno | uint32(syscall.ENOSYS)
	}
	return def
}

func argsMatch(conds []specs.LinuxSeccompArg, args []uint64) bool {
	for _, c := range conds {
		v := uint64(0)
		if int(c.Index) < len(args) {
			v = args[c.Index]
		}
		ok := false
		switch c.Op {
		case specs.OpEqualTo:
			ok = v == c.Value
		case specs.OpNotEqual:
			ok = v != c.Value
		case specs.OpMaskedEqual:
			ok = v&c.Value == c.ValueTwo
		case specs.OpGreaterThan:
			ok = v > c.Value
		case specs.OpGreaterEqual:
			ok = v >= c.Value
		case specs.OpLessThan:
			ok = v < c.Value
		case specs.OpLessEqual:
			ok = v <= c.Value
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestBinarySearchMatchesLinearScan compares the compiled program with the
// reference for every syscall number up to 1100, each with argument vectors
// that exercise the profile's conditions (clone flags, personality values,
// socket families), for docker's default capabilities and with
// CAP_SYS_ADMIN.
func TestBinarySearchMatchesLinearScan(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("compares x86_64 and i386 programs")
	}
	argSets := [][]uint64{nil, {0}, {0xffffffff}, {0x0400000}, {0x20008}, {17}, {0x10000000 | 17},
		{0x20000}, {1}, {2}, {10}, {40}, {16}, {1 << 32}, {0x7e020000}, {^uint64(0)}}
	for _, extra := range [][]string{nil, {"CAP_SYS_ADMIN"}, {"CAP_SYS_PTRACE", "CAP_SYS_NICE"}} {
		capNames := append(caps.Default(), extra...)
		p, err := moby.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: capNames}}})
		if err != nil {
			t.Fatal(err)
		}
		f, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []specs.Arch{specs.ArchX86_64, specs.ArchX86} {
			table := tableOf(a)
			mismatches := 0
			for nr := 0; nr <= 1100; nr++ {
				for _, args := range argSets {
					want := linearVerdict(t, p, table, nr, args)
					if got := run(t, f, table.auditArch, nr, args...); got != want && mismatches < 10 {
						mismatches++
						t.Errorf("caps +%v, %s syscall %d args %#x: compiled %#x, linear scan %#x", extra, a, nr, args, got, want)
					}
				}
			}
		}
	}
}
