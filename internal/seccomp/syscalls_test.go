package seccomp

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/caps"
	"github.com/elastic/go-seccomp-bpf/arch"
	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The tables used to come from github.com/elastic/go-seccomp-bpf/arch, whose
// maps cost every process about a millisecond at start-up. The tests below
// hold the generated tables to that package, which stays a test dependency.

var tableArches = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchAARCH64, specs.ArchARM}

var goSeccompBPF = map[specs.Arch]*arch.Info{
	specs.ArchX86_64:  arch.X86_64,
	specs.ArchX86:     arch.I386,
	specs.ArchAARCH64: arch.AARCH64,
	specs.ArchARM:     arch.ARM,
}

// fromGoSeccompBPF converts a go-seccomp-bpf table to an archTable.
//
// Its aarch64 table is corrected first. go-seccomp-bpf reads
// include/uapi/asm-generic/unistd.h with a regular expression, which skips
// the file's #if blocks: it lists the time64 syscalls 403-423, which exist
// only for 32-bit ABIs (a 64-bit arm64 task gets ENOSYS for them), and it
// calls 79 fstatat after the __NR3264_fstatat macro, where the 64-bit name
// is newfstatat. Left as it was, that table made Docker's profile, which
// allows newfstatat and not fstatat, deny stat(2) in arm64 containers with
// EPERM; libseccomp, and so Docker, agree with x/sys/unix.
func fromGoSeccompBPF(t *testing.T, a specs.Arch) *archTable {
	t.Helper()
	info := goSeccompBPF[a]
	names := maps.Clone(info.SyscallNames)
	if a == specs.ArchAARCH64 {
		fixed := 0
		for name, nr := range names {
			if 403 <= nr && nr <= 423 && strings.HasSuffix(name, "64") {
				delete(names, name)
				fixed++
			}
		}
		if nr, ok := names["fstatat"]; ok && nr == 79 {
			delete(names, "fstatat")
			names["newfstatat"] = 79
			fixed++
		}
		if fixed != 21 {
			t.Errorf("corrected %d errors in go-seccomp-bpf's aarch64 table, want 21; has it changed?", fixed)
		}
	}
	tab := &archTable{auditArch: uint32(info.ID)}
	for name, nr := range names {
		tab.syscalls = append(tab.syscalls, syscallNr{name, uint32(nr)})
	}
	slices.SortFunc(tab.syscalls, func(x, y syscallNr) int { return strings.Compare(x.name, y.name) })
	return tab
}

// profileNames returns every syscall name in Docker's default profile,
// whatever the architecture, kernel or capabilities a rule is for.
func profileNames() map[string]bool {
	names := map[string]bool{}
	for _, r := range moby.DefaultProfile().Syscalls {
		for _, name := range r.Names {
			names[name] = true
		}
		if r.Name != "" {
			names[r.Name] = true
		}
	}
	return names
}

func TestTablesSorted(t *testing.T) {
	for _, a := range tableArches {
		tab := tableOf(a)
		if len(tab.syscalls) < 300 {
			t.Errorf("%s: only %d syscalls", a, len(tab.syscalls))
		}
		for i, s := range tab.syscalls {
			if i > 0 && tab.syscalls[i-1].name >= s.name {
				t.Errorf("%s: %q sorts after %q", a, tab.syscalls[i-1].name, s.name)
			}
			if nr, ok := tab.number(s.name); !ok || nr != s.nr {
				t.Errorf("%s: number(%q) = %d, %v, want %d", a, s.name, nr, ok, s.nr)
			}
		}
		if nr, ok := tab.number("no_such_syscall"); ok {
			t.Errorf("%s: number(no_such_syscall) = %d", a, nr)
		}
	}
}

// TestTablesMatchGoSeccompBPF checks every name in Docker's default profile,
// and reports the names outside it that only one of the tables knows.
func TestTablesMatchGoSeccompBPF(t *testing.T) {
	prof := profileNames()
	for _, a := range tableArches {
		ours, theirs := tableOf(a), fromGoSeccompBPF(t, a)
		if ours.auditArch != theirs.auditArch {
			t.Errorf("%s: audit arch %#x, go-seccomp-bpf %#x", a, ours.auditArch, theirs.auditArch)
		}
		for name := range prof {
			nr, ok := ours.number(name)
			want, wantOK := theirs.number(name)
			if nr != want || ok != wantOK {
				t.Errorf("%s: %s = %d (found %v), go-seccomp-bpf %d (found %v)", a, name, nr, ok, want, wantOK)
			}
		}
		var onlyOurs, onlyTheirs []string
		for _, s := range ours.syscalls {
			if _, ok := theirs.number(s.name); !ok {
				onlyOurs = append(onlyOurs, s.name)
			}
		}
		for _, s := range theirs.syscalls {
			if _, ok := ours.number(s.name); !ok {
				onlyTheirs = append(onlyTheirs, s.name)
			}
		}
		if len(onlyOurs)+len(onlyTheirs) > 0 {
			t.Logf("%s: not in Docker's profile; only in x/sys/unix: %v; only in go-seccomp-bpf: %v", a, onlyOurs, onlyTheirs)
		}
	}
}

// TestFilterMatchesGoSeccompBPF compiles the same profiles with both sets of
// tables and wants the same program, instruction for instruction: the
// default profile as expanded for this host, and for each architecture the
// profile with every rule in it, whatever it is conditioned on.
func TestFilterMatchesGoSeccompBPF(t *testing.T) {
	theirs := map[specs.Arch]*archTable{}
	for _, a := range tableArches {
		theirs[a] = fromGoSeccompBPF(t, a)
	}
	theirTables := func(a specs.Arch) *archTable { return theirs[a] }

	native, err := nativeArch()
	if err != nil {
		t.Skip(err)
	}
	for _, extra := range [][]string{nil, {"CAP_SYS_ADMIN"}} {
		rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: append(caps.Default(), extra...)}}}
		p, err := moby.GetDefaultProfile(rs)
		if err != nil {
			t.Fatal(err)
		}
		compareFilters(t, p, native, theirTables)
	}

	all := moby.DefaultProfile()
	for _, a := range tableArches {
		p := &specs.LinuxSeccomp{
			DefaultAction:   all.DefaultAction,
			DefaultErrnoRet: all.DefaultErrnoRet,
			Architectures:   []specs.Arch{a},
		}
		for _, am := range all.ArchMap {
			if am.Arch == a {
				p.Architectures = append(p.Architectures, am.SubArches...)
			}
		}
		for _, r := range all.Syscalls {
			p.Syscalls = append(p.Syscalls, r.LinuxSyscall)
		}
		compareFilters(t, p, a, theirTables)
	}
}

func compareFilters(t *testing.T, p *specs.LinuxSeccomp, native specs.Arch, theirs func(specs.Arch) *archTable) {
	t.Helper()
	got, err := compile(p, native, tableOf)
	if err != nil {
		t.Fatal(err)
	}
	want, err := compile(p, native, theirs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("native %s, architectures %v: program differs (%d instructions, go-seccomp-bpf's tables give %d)", native, p.Architectures, len(got), len(want))
	} else {
		t.Logf("native %s, architectures %v: %d instructions, identical", native, p.Architectures, len(got))
	}
}

// TestAARCH64Newfstatat guards against go-seccomp-bpf's aarch64 error:
// stat(2) in an arm64 container is newfstatat, and Docker allows it.
func TestAARCH64Newfstatat(t *testing.T) {
	all := moby.DefaultProfile()
	p := &specs.LinuxSeccomp{DefaultAction: all.DefaultAction, DefaultErrnoRet: all.DefaultErrnoRet}
	for _, r := range all.Syscalls {
		if r.Includes == nil && r.Excludes == nil {
			p.Syscalls = append(p.Syscalls, r.LinuxSyscall)
		}
	}
	f, err := compile(p, specs.ArchAARCH64, tableOf)
	if err != nil {
		t.Fatal(err)
	}
	const newfstatat = 79 // include/uapi/asm-generic/unistd.h
	if got := run(t, f, unix.AUDIT_ARCH_AARCH64, newfstatat); got != retAllow {
		t.Errorf("newfstatat on arm64 = %#x, want allow", got)
	}
}
