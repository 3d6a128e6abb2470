package seccomp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// compilerRevision names what compile emits for a given profile. Programs
// are cached on disk under Key, which includes it: change it with any change
// to the emitted program, or programs compiled by older builds would still
// be loaded. TestCompilerRevision fails until it is changed (and its golden
// hash updated) when the output for a fixed profile changes.
const compilerRevision = 3 // 2: log and trace defaults let newer syscalls through; 3: SCMP_ACT_KILL kills the thread again

// DefaultProfile expands Docker's default seccomp profile for the native
// architecture, the running kernel and a container whose bounding set is
// caps, as DefaultFilter compiles it.
func DefaultProfile(caps []string) (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	p, err := moby.GetDefaultProfile(rs)
	if err != nil {
		return nil, fmt.Errorf("expanding docker's default seccomp profile: %w", err)
	}
	return p, nil
}

// LoadProfile expands a seccomp profile in docker's JSON form (what
// docker run --security-opt seccomp=FILE takes) as DefaultProfile expands
// docker's own.
func LoadProfile(body []byte, caps []string) (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	p, err := moby.LoadProfile(string(body), rs)
	switch {
	case err != nil:
		return nil, fmt.Errorf("expanding the seccomp profile: %w", err)
	case p == nil:
		return nil, errors.New("the seccomp profile is empty (no defaultAction)")
	case len(p.Flags) > 0:
		return nil, fmt.Errorf("seccomp profile flags %v are not supported", p.Flags)
	}
	return p, nil
}

// Key names the program Compile makes of p on this architecture: a hash of
// every field of p that compile reads, the native architecture and the
// compiler's revision. Two profiles with one key compile to one program.
func Key(p *specs.LinuxSeccomp) (string, error) {
	native, err := nativeArch()
	if err != nil {
		return "", err
	}
	return key(p, native), nil
}

func key(p *specs.LinuxSeccomp, native specs.Arch) string {
	h := sha256.New()
	w := keyWriter{h: h}
	w.uint(compilerRevision)
	w.str(string(native))
	h.Write(tablesDigest()) // the numbers names compile to
	w.str(string(p.DefaultAction))
	w.errno(p.DefaultErrnoRet)
	w.uint(uint64(len(p.Architectures)))
	for _, a := range p.Architectures {
		w.str(string(a))
	}
	w.uint(uint64(len(p.Syscalls)))
	for _, s := range p.Syscalls {
		w.uint(uint64(len(s.Names)))
		for _, n := range s.Names {
			w.str(n)
		}
		w.str(string(s.Action))
		w.errno(s.ErrnoRet)
		w.uint(uint64(len(s.Args)))
		for _, a := range s.Args {
			w.uint(uint64(a.Index))
			w.uint(a.Value)
			w.uint(a.ValueTwo)
			w.str(string(a.Op))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// tablesDigest is the digest (digestTables) of every syscall table compile
// may use: a program compiled with other tables (a regenerated
// zsyscalls.go) must not be taken for this build's. It is written here
// rather than computed: hashing the ~1,500 entries cost every fresh
// process, every CLI command, 0.2 ms. TestTablesDigestCurrent fails, and
// says the new value, when the tables change.
func tablesDigest() []byte {
	b, _ := hex.DecodeString(tablesDigestHex)
	return b
}

const tablesDigestHex = "b7003e5890277e7f14d80e2b16fdcd4eb2ee5b1a66e82bd86e4a504ad8c55bdd"

func digestTables(tables ...*archTable) []byte {
	h := sha256.New()
	w := keyWriter{h: h}
	for _, t := range tables {
		w.uint(uint64(t.auditArch))
		w.uint(uint64(len(t.syscalls)))
		for _, s := range t.syscalls {
			w.str(s.name)
			w.uint(uint64(s.nr))
		}
	}
	return h.Sum(nil)
}

// keyWriter feeds a hash with length-prefixed strings and fixed-size
// numbers, so that no two different profiles write the same bytes.
type keyWriter struct {
	h   hash.Hash
	buf [8]byte
}

func (w *keyWriter) uint(v uint64) {
	binary.LittleEndian.PutUint64(w.buf[:], v)
	w.h.Write(w.buf[:])
}

func (w *keyWriter) str(s string) {
	w.uint(uint64(len(s)))
	w.h.Write([]byte(s))
}

// errno writes whether e is set, then its value.
func (w *keyWriter) errno(e *uint) {
	if e == nil {
		w.uint(0)
		return
	}
	w.uint(1)
	w.uint(uint64(*e))
}

// Encoded programs are the instructions in the kernel's layout (16-bit
// code, 8-bit jt and jf, 32-bit k, little-endian) followed by the SHA-256
// of the key they were compiled under and the instructions.
const insnSize = 8

// Encode returns f, compiled for key, in the form Decode reads.
func (f Filter) Encode(key string) []byte {
	b := make([]byte, 0, len(f)*insnSize+sha256.Size)
	for _, in := range f {
		b = binary.LittleEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.LittleEndian.AppendUint32(b, in.K)
	}
	sum := checksum(key, b)
	return append(b, sum[:]...)
}

func checksum(key string, insns []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write(insns)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// ErrCorrupt is returned by Decode for bytes Encode did not write for the
// key.
var ErrCorrupt = errors.New("seccomp: corrupt encoded program")

// Decode reads a program that Encode wrote for key. Anything else (a torn
// or altered file, one written for another key) is ErrCorrupt, never a
// different program. The checksum guards against accidents, not against
// whoever may write the file: the caller checks who that is.
func Decode(b []byte, key string) (Filter, error) {
	n := len(b) - sha256.Size
	if n <= 0 || n%insnSize != 0 || n/insnSize > maxInsns {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	sum := checksum(key, b[:n])
	if !bytes.Equal(sum[:], b[n:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	f := make(Filter, n/insnSize)
	for i := range f {
		in := b[i*insnSize:]
		f[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(in), Jt: in[2], Jf: in[3], K: binary.LittleEndian.Uint32(in[4:])}
	}
	return f, nil
}
