package seccomp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// goldenProgram is the SHA-256 of the encoded program that compile makes of
// testdata/docker-default-6.18-amd64.json (docker's default profile as
// expanded on kernel 6.18 for docker's default capabilities) for x86_64,
// at compilerRevision 1.
const goldenProgram = "e33833d7192d055d2ec00002ffd418d399ccbfe158d748947b3f40894d4cfdd0"

// TestCompilerRevision guards the on-disk cache: a change to what compile
// emits must come with a new compilerRevision, or roots keep loading the
// programs earlier builds compiled.
func TestCompilerRevision(t *testing.T) {
	p := testProfile(t)
	f, err := compile(p, specs.ArchX86_64, tableOf)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(f.Encode(""))
	if got := hex.EncodeToString(sum[:]); got != goldenProgram {
		t.Fatalf("compile's output changed (program hash %s, golden %s): raise compilerRevision (now %d) and set goldenProgram to the new hash", got, goldenProgram, compilerRevision)
	}
}

func TestEncodeDecode(t *testing.T) {
	f, err := compile(testProfile(t), specs.ArchX86_64, tableOf)
	if err != nil {
		t.Fatal(err)
	}
	const k = "key"
	b := f.Encode(k)
	got, err := Decode(b, k)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, f) {
		t.Fatal("Decode(Encode(f)) differs from f")
	}
	flipped := slices.Clone(b)
	flipped[len(f)*insnSize/2] ^= 0x40
	tooMany := make(Filter, maxInsns+1)
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"checksum only":  b[len(b)-sha256.Size:],
		"torn":           b[:len(b)-1],
		"one bit":        flipped,
		"extra byte":     append(slices.Clone(b), 0),
		"over the limit": tooMany.Encode(k),
		"another key":    f.Encode("other"),
	} {
		if _, err := Decode(bad, k); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode = %v, want ErrCorrupt", name, err)
		}
	}
}

// Every field compile reads is part of the key; nothing else changes it.
func TestKey(t *testing.T) {
	base := testProfile(t)
	k := key(base, specs.ArchX86_64)
	if key(testProfile(t), specs.ArchX86_64) != k {
		t.Fatal("one profile, two keys")
	}
	if key(base, specs.ArchAARCH64) == k {
		t.Error("the native architecture is not in the key")
	}
	errno := uint(1234)
	argIdx := slices.IndexFunc(base.Syscalls, func(s specs.LinuxSyscall) bool { return len(s.Args) > 0 })
	if argIdx < 0 {
		t.Fatal("the test profile has no rule with arguments")
	}
	// Fields compile does not read leave the key alone.
	unread := testProfile(t)
	unread.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}
	unread.ListenerPath = "/run/listener"
	unread.ListenerMetadata = "meta"
	if key(unread, specs.ArchX86_64) != k {
		t.Error("a field compile does not read changed the key")
	}
	for name, change := range map[string]func(p *specs.LinuxSeccomp){
		"default action": func(p *specs.LinuxSeccomp) { p.DefaultAction = specs.ActKillProcess },
		"default errno":  func(p *specs.LinuxSeccomp) { p.DefaultErrnoRet = &errno },
		"architectures":  func(p *specs.LinuxSeccomp) { p.Architectures = p.Architectures[1:] },
		"a name":         func(p *specs.LinuxSeccomp) { p.Syscalls[0].Names[0] += "x" },
		"names split": func(p *specs.LinuxSeccomp) {
			// ["ab", "c"] and ["a", "bc"] must not hash alike.
			n := p.Syscalls[0].Names
			n[0], n[1] = n[0]+n[1][:1], n[1][1:]
		},
		"an action":     func(p *specs.LinuxSeccomp) { p.Syscalls[0].Action = specs.ActLog },
		"a rule errno":  func(p *specs.LinuxSeccomp) { p.Syscalls[0].ErrnoRet = &errno },
		"an arg value":  func(p *specs.LinuxSeccomp) { p.Syscalls[argIdx].Args[0].Value++ },
		"an arg value2": func(p *specs.LinuxSeccomp) { p.Syscalls[argIdx].Args[0].ValueTwo++ },
		"an arg index":  func(p *specs.LinuxSeccomp) { p.Syscalls[argIdx].Args[0].Index++ },
		"an arg op":     func(p *specs.LinuxSeccomp) { p.Syscalls[argIdx].Args[0].Op = specs.OpGreaterThan },
		"a rule gone":   func(p *specs.LinuxSeccomp) { p.Syscalls = p.Syscalls[1:] },
	} {
		p := testProfile(t)
		change(p)
		if key(p, specs.ArchX86_64) == k {
			t.Errorf("changing %s leaves the key as it was", name)
		}
	}
}

// The syscall tables are in the key: one number changed changes it.
func TestKeyTables(t *testing.T) {
	base := digestTables(&archX86_64, &archI386)
	changed := archI386
	changed.syscalls = slices.Clone(archI386.syscalls)
	changed.syscalls[len(changed.syscalls)/2].nr++
	if bytes.Equal(digestTables(&archX86_64, &changed), base) {
		t.Error("a syscall number changed and the tables' digest did not")
	}
	renamed := archX86_64
	renamed.syscalls = slices.Clone(archX86_64.syscalls)
	renamed.syscalls[0].name += "x"
	if bytes.Equal(digestTables(&renamed, &archI386), base) {
		t.Error("a syscall name changed and the tables' digest did not")
	}
}

func testProfile(t *testing.T) *specs.LinuxSeccomp {
	t.Helper()
	b, err := os.ReadFile("testdata/docker-default-6.18-amd64.json")
	if err != nil {
		t.Fatal(err)
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// TestTablesDigestCurrent checks the digest the cache key uses against the
// syscall tables this build has.
func TestTablesDigestCurrent(t *testing.T) {
	got := hex.EncodeToString(digestTables(&archX86_64, &archI386, &archAARCH64, &archARM))
	if got != tablesDigestHex {
		t.Errorf("the syscall tables changed: set tablesDigestHex in cache.go to %q", got)
	}
}
