package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// next as a jump target means "the following instruction" (offset 0).
const next = -1

// asm is a tiny classic-BPF assembler with forward labels. Conditional jumps
// reach at most 255 instructions, so long distances use JA (32-bit offset).
type asm struct {
	insns  []insn
	labels []int // label id → instruction index, -1 while unbound
}

type insn struct {
	unix.SockFilter
	jt, jf int  // label ids for conditional jumps; next (-1) = offset 0
	ja     int  // label id for an unconditional jump, or -1
	rel    bool // jt/jf are raw offsets, not labels
}

func (a *asm) newLabel() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *asm) mark(l int) { a.labels[l] = len(a.insns) }

func (a *asm) emit(code uint16, k uint32) {
	a.insns = append(a.insns, insn{SockFilter: unix.SockFilter{Code: code, K: k}, jt: next, jf: next, ja: -1})
}

func (a *asm) load(off uint32) { a.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (a *asm) and(k uint32)    { a.emit(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, k) }
func (a *asm) ret(k uint32)    { a.emit(unix.BPF_RET|unix.BPF_K, k) }

func (a *asm) jaLabel(l int) {
	a.emit(unix.BPF_JMP|unix.BPF_JA, 0)
	a.insns[len(a.insns)-1].ja = l
}

// jump with raw small offsets (only next or a literal count).
func (a *asm) jraw(op uint16, k uint32, jt, jf int) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, k)
	in := &a.insns[len(a.insns)-1]
	in.rel = true
	in.Jt, in.Jf = rawOff(jt), rawOff(jf)
}

func rawOff(o int) uint8 {
	if o == next {
		return 0
	}
	return uint8(o)
}

func (a *asm) jeq(k uint32, jt, jf int) { a.jraw(unix.BPF_JEQ, k, jt, jf) }
func (a *asm) jge(k uint32, jt, jf int) { a.jraw(unix.BPF_JGE, k, jt, jf) }
func (a *asm) jgt(k uint32, jt, jf int) { a.jraw(unix.BPF_JGT, k, jt, jf) }

func (a *asm) jlabel(op uint16, k uint32, jt, jf int) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, k)
	in := &a.insns[len(a.insns)-1]
	in.jt, in.jf = jt, jf
}

func (a *asm) jeqLabel(k uint32, jt, jf int) { a.jlabel(unix.BPF_JEQ, k, jt, jf) }
func (a *asm) jgeLabel(k uint32, jt, jf int) { a.jlabel(unix.BPF_JGE, k, jt, jf) }
func (a *asm) jgtLabel(k uint32, jt, jf int) { a.jlabel(unix.BPF_JGT, k, jt, jf) }

func (a *asm) assemble() (Filter, error) {
	out := make(Filter, len(a.insns))
	off := func(i, l int) (int, error) {
		if l == next {
			return 0, nil
		}
		pos := a.labels[l]
		if pos < 0 {
			return 0, fmt.Errorf("seccomp asm: unbound label %d", l)
		}
		d := pos - (i + 1)
		if d < 0 {
			return 0, fmt.Errorf("seccomp asm: backward jump at %d", i)
		}
		return d, nil
	}
	for i, in := range a.insns {
		f := in.SockFilter
		switch {
		case in.ja >= 0:
			d, err := off(i, in.ja)
			if err != nil {
				return nil, err
			}
			f.K = uint32(d)
		case !in.rel && f.Code&0x07 == unix.BPF_JMP:
			t, err := off(i, in.jt)
			if err != nil {
				return nil, err
			}
			e, err := off(i, in.jf)
			if err != nil {
				return nil, err
			}
			if t > 255 || e > 255 {
				return nil, fmt.Errorf("seccomp asm: conditional jump at %d too far (%d/%d)", i, t, e)
			}
			f.Jt, f.Jf = uint8(t), uint8(e)
		}
		out[i] = f
	}
	return out, nil
}
