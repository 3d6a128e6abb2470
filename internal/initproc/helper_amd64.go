package initproc

import "encoding/binary"

// helperImage returns the exec helper for amd64: a static ELF program of a
// few hundred bytes, with no runtime and no libc, which a direct start
// (see direct.go) execs as the container's first program. It is the only
// code that runs between the fork and the user's program, and it does only
// what no other process can do for it:
//
//  1. make itself non-dumpable, so that no process of the container can
//     ptrace it before its filter is on (an exec joins a container whose
//     processes run as the same user);
//  2. read from fd 3 the filter's length in bytes (8 bytes), a capability
//     mask (8 bytes), flags (8 bytes: bit 0 arms a parent-death SIGKILL,
//     bit 1 execs with every signal blocked: helperBlockSignals)
//     and the seccomp filter (8 bytes per instruction, none for no
//     filter), which the caller writes right after the fork;
//  3. drop from its bounding set every capability not in the mask (a
//     root helper runs with every capability until here, which also keeps
//     ptrace away from it; a non-root one gets an all-ones mask, its
//     bounding set being dropped before the fork);
//  4. set every signal's action to the default and unblock all, or block
//     all with helperBlockSignals (execve keeps the forking program's
//     ignored signals, and the mask),
//  5. mark fd 4 (the status pipe) close-on-exec,
//  6. arm the parent-death SIGKILL if the flags ask for it, and say so
//     with one byte, 'A', on fd 4: the caller waits for it before its
//     go-ahead, since a parent that dies before the arming sends nothing
//     (the helper cannot check getppid: in the container's pid namespace
//     it is 0 whether the parent lives or not);
//  7. set no_new_privs,
//  8. load the filter, the last step before execve but for reading and
//     closing fd 3 (steps 3-8 overlap the caller's last steps: its
//     placing the process in cgroups, a Run's mounting of /proc);
//  9. read fd 3 until EOF: one more byte, 'G', says the caller meant it.
//     EOF without that byte means the caller died or gave up half way:
//     never exec then;
//  10. close fd 3 and execve(argv[0], argv+1, envp): argv[0] is the
//     resolved program path, argv[1:] the program's own argv.
//
// On any failure it writes the errno as 4 native-order bytes on fd 4 (in
// one write, after the 'A' if that was written) and
// exits with status 127. The program is assembled here, instruction by
// instruction, so that what runs in the container is readable in source.
func helperImage() []byte {
	const (
		sysRead        = 0
		sysWrite       = 1
		sysClose       = 3
		sysFcntl       = 72
		sysPrctl       = 157
		sysSeccomp     = 317
		sysExitGroup   = 231
		sysRtSigaction = 13
		// The buffer for the header, the filter and the go-ahead: it takes
		// filters of up to bufSize-25 bytes, far more than the kernel's
		// 4096 instructions (32 KiB).
		bufSize = 0x10000
		header  = 24
	)
	a := &asm{}

	a.movEAX(sysPrctl) // prctl(PR_SET_DUMPABLE, 0)
	a.movEDI(4)
	a.op(0x31, 0xf6) // xor esi, esi
	a.syscall()
	a.op(0x48, 0x89, 0xe3)                                       // mov rbx, rsp        ; rbx = &argc
	a.op(append([]byte{0x48, 0x81, 0xec}, imm32(bufSize)...)...) // sub rsp, bufSize
	a.op(0x49, 0x89, 0xe4)                                       // mov r12, rsp        ; r12 = buffer
	a.op(0x45, 0x31, 0xed)                                       // xor r13d, r13d      ; r13 = bytes read

	// The filter first: the caller writes it as soon as we are forked,
	// and we load it while the caller is still placing us (cgroups, the
	// container's /proc).
	a.label("read")
	a.movEAX(sysRead)
	a.movEDI(3)
	a.op(0x4b, 0x8d, 0x34, 0x2c) // lea rsi, [r12+r13]
	a.movEDX(bufSize)
	a.op(0x4c, 0x29, 0xea) // sub rdx, r13
	a.syscall()
	a.testRAX()
	a.jump(0x84, "short")                                                                                         // jz short             ; the caller died
	a.jump(0x88, "fail")                                                                                          // js fail
	a.op(0x49, 0x01, 0xc5)                                                                                        // add r13, rax
	a.op(0x49, 0x83, 0xfd, header)                                                                                // cmp r13, header
	a.jump(0x82, "read")                                                                                          // jb read              ; the header is not all there
	a.op(0x49, 0x8b, 0x0c, 0x24)                                                                                  // mov rcx, [r12]       ; the filter's length in bytes
	a.op(append([]byte{0x48, 0x81, 0xf9}, imm32(bufSize-header-1)...)...)                                         // cmp rcx, bufSize-25  ; room for the header and the go-ahead
	a.jump(0x87, "toobig")                                                                                        // ja toobig
	a.op(0xf6, 0xc1, 0x07)                                                                                        // test cl, 7
	a.jump(0x85, "badlen")                                                                                        // jnz badlen           ; not whole instructions
	a.op(append([]byte{0x49, 0xf7, 0x44, 0x24, 0x10}, imm32(^uint32(helperOrphanKill|helperBlockSignals))...)...) // test qword [r12+16], ~known ; flags it does not know
	a.jump(0x85, "badlen")                                                                                        // jnz badlen
	a.op(0x48, 0x83, 0xc1, header)                                                                                // add rcx, header
	a.op(0x49, 0x39, 0xcd)                                                                                        // cmp r13, rcx
	a.jump(0x82, "read")                                                                                          // jb read              ; the filter is not all there

	a.op(0x4d, 0x8b, 0x74, 0x24, 0x08) // mov r14, [r12+8]      ; the capability mask
	a.op(0x45, 0x31, 0xff)             // xor r15d, r15d        ; capability number
	a.label("cap")
	a.op(0x4d, 0x0f, 0xa3, 0xfe) // bt r14, r15
	a.jump(0x82, "nextcap")      // jc nextcap           ; kept
	a.movEAX(sysPrctl)           // prctl(PR_CAPBSET_DROP, r15)
	a.movEDI(24)
	a.op(0x4c, 0x89, 0xfe) // mov rsi, r15
	a.syscall()
	a.op(0x48, 0x83, 0xf8, 0xea) // cmp rax, -EINVAL      ; beyond the kernel's last capability
	a.jump(0x84, "nextcap")
	a.testRAX()
	a.jump(0x85, "fail")
	a.label("nextcap")
	a.op(0x49, 0xff, 0xc7)       // inc r15
	a.op(0x49, 0x83, 0xff, 0x40) // cmp r15, 64
	a.jump(0x82, "cap")          // jb cap

	// Every signal to its default action and none blocked: execve keeps
	// the ignored ones of the program that forked us, and a PID 1 that
	// ignores SIGTERM makes every Stop wait out its timeout.
	for range 4 {
		a.op(0x6a, 0x00) // push 0                ; a zeroed struct sigaction (32 bytes): SIG_DFL
	}
	a.op(0x41, 0xbf, 1, 0, 0, 0) // mov r15d, 1
	a.label("sig")
	a.movEAX(sysRtSigaction) // rt_sigaction(r15, rsp, NULL, 8); SIGKILL and SIGSTOP fail, harmlessly
	a.op(0x44, 0x89, 0xff)   // mov edi, r15d
	a.sigsetCall()
	a.op(0x49, 0xff, 0xc7)                                 // inc r15
	a.op(0x49, 0x83, 0xff, 0x41)                           // cmp r15, 65
	a.jump(0x82, "sig")                                    // jb sig
	a.op(0x41, 0xf6, 0x44, 0x24, 0x10, helperBlockSignals) // test byte [r12+16], blockSignals
	a.jump(0x84, "setmask")                                // jz setmask          ; none blocked
	a.op(0x48, 0xc7, 0x04, 0x24, 0xff, 0xff, 0xff, 0xff)   // mov qword [rsp], -1  ; all blocked
	a.label("setmask")
	a.setMaskRSP()
	a.testRAX()
	a.jump(0x85, "fail")
	a.op(0x48, 0x83, 0xc4, 0x20) // add rsp, 32
	a.movEAX(sysFcntl)           // fcntl(4, F_SETFD, FD_CLOEXEC)
	a.movEDI(4)
	a.movESI(2)
	a.movEDX(1)
	a.syscall()
	a.testRAX()
	a.jump(0x85, "fail")                                 // jnz fail
	a.op(0x41, 0xf6, 0x44, 0x24, 0x10, helperOrphanKill) // test byte [r12+16], orphanKill ; a parent-death SIGKILL?
	a.jump(0x84, "nodeath")                              // jz nodeath
	a.movEAX(sysPrctl)                                   // prctl(PR_SET_PDEATHSIG, SIGKILL)
	a.movEDI(1)
	a.movESI(9)
	a.syscall()
	a.testRAX()
	a.jump(0x85, "fail")
	a.op(0x6a, helperArmed) // push 'A'
	a.movEAX(sysWrite)      // write(4, rsp, 1)         ; armed: the caller may go ahead
	a.movEDI(4)
	a.op(0x48, 0x89, 0xe6) // mov rsi, rsp
	a.movEDX(1)
	a.syscall()
	a.op(0x48, 0x83, 0xc4, 0x08) // add rsp, 8
	a.testRAX()
	a.jump(0x88, "fail") // js fail
	a.label("nodeath")
	a.movEAX(sysPrctl) // prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
	a.movEDI(38)
	a.movESI(1)
	a.op(0x31, 0xd2)       // xor edx, edx
	a.op(0x4d, 0x31, 0xd2) // xor r10, r10
	a.op(0x4d, 0x31, 0xc0) // xor r8, r8
	a.syscall()
	a.testRAX()
	a.jump(0x85, "fail")
	a.op(0x49, 0x8b, 0x0c, 0x24)         // mov rcx, [r12]
	a.op(0x48, 0xc1, 0xe9, 0x03)         // shr rcx, 3            ; instructions
	a.jump(0x84, "filtered")             // jz filtered          ; no filter
	a.op(0x48, 0x83, 0xec, 0x10)         // sub rsp, 16           ; struct sock_fprog
	a.op(0x48, 0x89, 0x0c, 0x24)         // mov [rsp], rcx        ; .len (and zero padding)
	a.op(0x49, 0x8d, 0x44, 0x24, header) // lea rax, [r12+24]   ; the filter, after the header
	a.op(0x48, 0x89, 0x44, 0x24, 0x08)   // mov [rsp+8], rax      ; .filter
	a.movEAX(sysSeccomp)                 // seccomp(SECCOMP_SET_MODE_FILTER, 0, rsp)
	a.movEDI(1)
	a.op(0x31, 0xf6)       // xor esi, esi
	a.op(0x48, 0x89, 0xe2) // mov rdx, rsp
	a.syscall()
	a.testRAX()
	a.jump(0x85, "fail")
	a.op(0x48, 0x83, 0xc4, 0x10) // add rsp, 16

	// Then the go-ahead: one byte, and EOF.
	a.label("filtered")
	a.label("read2")
	a.movEAX(sysRead)
	a.movEDI(3)
	a.op(0x4b, 0x8d, 0x34, 0x2c) // lea rsi, [r12+r13]
	a.movEDX(bufSize)
	a.op(0x4c, 0x29, 0xea) // sub rdx, r13
	a.syscall()
	a.testRAX()
	a.jump(0x84, "eof")                                          // jz eof
	a.jump(0x88, "fail")                                         // js fail
	a.op(0x49, 0x01, 0xc5)                                       // add r13, rax
	a.op(append([]byte{0x49, 0x81, 0xfd}, imm32(bufSize)...)...) // cmp r13, bufSize
	a.jump(0x82, "read2")                                        // jb read2             ; else judge what is there

	a.label("eof")
	a.op(0x49, 0x8b, 0x0c, 0x24)             // mov rcx, [r12]
	a.op(0x48, 0x83, 0xc1, header+1)         // add rcx, 25           ; header, filter and one byte
	a.op(0x49, 0x39, 0xcd)                   // cmp r13, rcx
	a.jump(0x85, "short")                    // jne short
	a.op(0x43, 0x0f, 0xb6, 0x44, 0x2c, 0xff) // movzx eax, byte [r12+r13-1]
	a.op(0x83, 0xf8, 'G')                    // cmp eax, 'G'
	a.jump(0x85, "short")                    // jne short

	a.movEAX(sysClose)
	a.movEDI(3)
	a.syscall()

	a.label("exec")
	a.execArgv(0) // execve(argv[0], argv+1, envp)

	a.label("fail")              // rax = -errno
	a.op(0x48, 0xf7, 0xd8)       // neg rax
	a.op(0x41, 0x89, 0x04, 0x24) // mov [r12], eax
	a.movEAX(sysWrite)           // write(4, r12, 4)
	a.movEDI(4)
	a.op(0x4c, 0x89, 0xe6) // mov rsi, r12
	a.movEDX(4)
	a.syscall()
	a.movEAX(sysExitGroup)
	a.movEDI(127)
	a.syscall()

	a.label("short")
	a.op(0x48, 0xc7, 0xc0, 0xe0, 0xff, 0xff, 0xff) // mov rax, -EPIPE  ; no go-ahead
	a.jump(0, "fail")

	a.label("badlen")
	a.op(0x48, 0xc7, 0xc0, 0xea, 0xff, 0xff, 0xff) // mov rax, -EINVAL ; not whole instructions, or unknown flags
	a.jump(0, "fail")

	a.label("toobig")
	a.op(0x48, 0xc7, 0xc0, 0xf9, 0xff, 0xff, 0xff) // mov rax, -E2BIG  ; the filter does not fit
	a.jump(0, "fail")

	return elf64(62 /* EM_X86_64 */, a.bytes())
}

// initImage returns the init for amd64 (docker run --init; docker's is
// tini): a static ELF program that runs as the container's PID 1 with the
// container's credentials, capabilities and seccomp filter, and
//
//  1. sets SIGCHLD to its default action (were it ignored, the kernel
//     would reap the children itself and send no SIGCHLD), blocks every
//     signal (its launcher execs it with all blocked already, so that
//     none sent meanwhile is lost) and forks;
//  2. in the child: moves into a process group of its own, makes it the
//     terminal's foreground group when there is a terminal, unblocks all
//     signals and execs argv[1] with argv[2:]; if that fails, writes
//     "berth-init: exec PATH failed" to stderr and exits 126, or 127 when
//     the file is gone;
//  3. in itself: waits for signals (rt_sigtimedwait; blocked signals
//     reach a PID 1, which ignores every unblocked one it has no handler
//     for); on SIGCHLD reaps every child that ended, so that orphans the
//     kernel gives it do not stay zombies; forwards every other signal
//     but SIGTTIN and SIGTTOU to its child. Should rt_sigtimedwait fail
//     for good (a filter refusing it), it only reaps, blocking in wait4;
//  4. exits once its child ended: with its exit code, or 128+N when a
//     signal N killed it, as a shell reports it.
func initImage() []byte {
	const (
		sysWrite          = 1
		sysRtSigaction    = 13
		sysIoctl          = 16
		sysGetpid         = 39
		sysFork           = 57
		sysWait4          = 61
		sysKill           = 62
		sysSetpgid        = 109
		sysRtSigtimedwait = 128
		sysExitGroup      = 231
		tiocspgrp         = 0x5410
		sigchld           = 17
		sigttin           = 21
		sigttou           = 22
		eintr             = 4
		enoent            = 2
		execMsg           = "berth-init: exec "
		execMsgEnd        = " failed\n"
	)
	a := &asm{}
	wait4 := func(wnohang bool) { // wait4(-1, rsp+8, WNOHANG or 0, NULL): the status at [rsp+8]
		a.movEAX(sysWait4)
		a.op(0x48, 0xc7, 0xc7, 0xff, 0xff, 0xff, 0xff) // mov rdi, -1
		a.op(0x48, 0x8d, 0x74, 0x24, 0x08)             // lea rsi, [rsp+8]
		if wnohang {
			a.movEDX(1)
		} else {
			a.op(0x31, 0xd2) // xor edx, edx
		}
		a.op(0x45, 0x31, 0xd2) // xor r10d, r10d
		a.syscall()
	}

	a.op(0x48, 0x89, 0xe3) // mov rbx, rsp          ; rbx = &argc
	for range 4 {
		a.op(0x6a, 0x00) // push 0               ; a zeroed struct sigaction (32 bytes): SIG_DFL
	}
	a.movEAX(sysRtSigaction) // rt_sigaction(SIGCHLD, rsp, NULL, 8)
	a.movEDI(sigchld)
	a.sigsetCall()
	a.op(0x48, 0x83, 0xc4, 0x20)                         // add rsp, 32
	a.op(0x48, 0x83, 0xec, 0x10)                         // sub rsp, 16           ; [rsp] a signal set, [rsp+8] a status
	a.op(0x48, 0xc7, 0x04, 0x24, 0xff, 0xff, 0xff, 0xff) // mov qword [rsp], -1   ; every signal
	a.setMaskRSP()                                       //                       ; all blocked
	a.movEAX(sysFork)                                    // fork()
	a.syscall()
	a.testRAX()
	a.jump(0x88, "forkfail")
	a.jump(0x84, "child")
	a.op(0x49, 0x89, 0xc4) // mov r12, rax          ; the child's pid

	a.label("wait")
	a.movEAX(sysRtSigtimedwait) // rt_sigtimedwait(rsp (all), NULL, NULL, 8)
	a.op(0x48, 0x89, 0xe7)      // mov rdi, rsp
	a.op(0x31, 0xf6)            // xor esi, esi
	a.op(0x31, 0xd2)            // xor edx, edx
	a.op(0x41, 0xba, 8, 0, 0, 0)
	a.syscall()
	a.testRAX()
	a.jump(0x89, "got")                 // jns got
	a.op(0x48, 0x83, 0xf8, 0x100-eintr) // cmp rax, -EINTR
	a.jump(0x84, "wait")                // je wait              ; interrupted
	a.jump(0, "blockwait")              //                      ; refused for good
	a.label("got")
	a.op(0x83, 0xf8, sigchld)
	a.jump(0x84, "reap")
	a.op(0x83, 0xf8, sigttin)
	a.jump(0x84, "wait")
	a.op(0x83, 0xf8, sigttou)
	a.jump(0x84, "wait")
	a.op(0x89, 0xc6)       // mov esi, eax          ; kill(child, signal)
	a.op(0x4c, 0x89, 0xe7) // mov rdi, r12
	a.movEAX(sysKill)
	a.syscall()
	a.jump(0, "wait")

	a.label("reap")
	wait4(true) // wait4(-1, rsp+8, WNOHANG, NULL)
	a.testRAX()
	a.jump(0x8e, "wait")   // jle wait             ; none ended (0), or none left (-ECHILD)
	a.op(0x4c, 0x39, 0xe0) // cmp rax, r12
	a.jump(0x85, "reap")   // jne reap             ; an orphan: reaped, look again
	a.label("status")
	a.op(0x8b, 0x44, 0x24, 0x08)             // mov eax, [rsp+8]      ; the child's status
	a.op(0x89, 0xc1)                         // mov ecx, eax
	a.op(0x83, 0xe1, 0x7f)                   // and ecx, 0x7f         ; the signal that killed it
	a.jump(0x84, "exited")                   // jz exited
	a.op(0x8d, 0xb9, 0x80, 0x00, 0x00, 0x00) // lea edi, [rcx+128]
	a.jump(0, "exit")
	a.label("exited")
	a.op(0xc1, 0xe8, 0x08)             // shr eax, 8
	a.op(0x25, 0xff, 0x00, 0x00, 0x00) // and eax, 0xff         ; its exit code
	a.op(0x89, 0xc7)                   // mov edi, eax
	a.label("exit")
	a.movEAX(sysExitGroup)
	a.syscall()

	a.label("blockwait")
	wait4(false) // wait4(-1, rsp+8, 0, NULL)
	a.testRAX()
	a.jump(0x88, "forkfail")
	a.op(0x4c, 0x39, 0xe0) // cmp rax, r12
	a.jump(0x85, "blockwait")
	a.jump(0, "status")

	a.label("child")
	a.movEAX(sysSetpgid) // setpgid(0, 0)
	a.op(0x31, 0xff)     // xor edi, edi
	a.op(0x31, 0xf6)     // xor esi, esi
	a.syscall()
	a.movEAX(sysGetpid)
	a.syscall()
	a.op(0x89, 0x44, 0x24, 0x08) // mov [rsp+8], eax
	a.movEAX(sysIoctl)           // ioctl(0, TIOCSPGRP, rsp+8): fails, harmlessly, without a terminal
	a.op(0x31, 0xff)             // xor edi, edi
	a.movESI(tiocspgrp)
	a.op(0x48, 0x8d, 0x54, 0x24, 0x08) // lea rdx, [rsp+8]
	a.syscall()
	a.op(0x48, 0xc7, 0x04, 0x24, 0, 0, 0, 0) // mov qword [rsp], 0   ; no signal
	a.setMaskRSP()                           //                      ; none blocked
	a.execArgv(1)                            // execve(argv[1], argv+2, envp)
	a.op(0x49, 0x89, 0xc5)                   // mov r13, rax          ; -errno
	a.writeStderr("execmsg", len(execMsg))
	a.op(0x48, 0x8b, 0x73, 0x10) // mov rsi, [rbx+16]    ; argv[1]
	a.op(0x31, 0xd2)             // xor edx, edx
	a.label("strlen")
	a.op(0x80, 0x3c, 0x16, 0x00) // cmp byte [rsi+rdx], 0
	a.jump(0x84, "strdone")
	a.op(0x48, 0xff, 0xc2) // inc rdx
	a.jump(0, "strlen")
	a.label("strdone")
	a.movEAX(sysWrite) // write(2, argv[1], rdx)
	a.movEDI(2)
	a.syscall()
	a.writeStderr("execmsgend", len(execMsgEnd))
	a.movEDI(126)
	a.op(0x49, 0x83, 0xfd, 0x100-enoent) // cmp r13, -ENOENT
	a.jump(0x85, "childexit")
	a.movEDI(127)
	a.label("childexit")
	a.movEAX(sysExitGroup)
	a.syscall()

	a.label("forkfail")
	a.movEDI(1)
	a.movEAX(sysExitGroup)
	a.syscall()

	a.label("execmsg")
	a.op([]byte(execMsg)...)
	a.label("execmsgend")
	a.op([]byte(execMsgEnd)...)
	return elf64(62 /* EM_X86_64 */, a.bytes())
}

// imm32 is v as a little-endian 32-bit immediate.
func imm32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// The instructions both programs use most, named.
func (a *asm) movEAX(v uint32) { a.op(append([]byte{0xb8}, imm32(v)...)...) } // mov eax, imm32
func (a *asm) movEDI(v uint32) { a.op(append([]byte{0xbf}, imm32(v)...)...) } // mov edi, imm32
func (a *asm) movESI(v uint32) { a.op(append([]byte{0xbe}, imm32(v)...)...) } // mov esi, imm32
func (a *asm) movEDX(v uint32) { a.op(append([]byte{0xba}, imm32(v)...)...) } // mov edx, imm32
func (a *asm) syscall()        { a.op(0x0f, 0x05) }

// writeStderr writes n bytes at label to fd 2 (write(2, label, n)).
func (a *asm) writeStderr(label string, n int) {
	a.movEAX(1) // write
	a.movEDI(2)
	a.op(0x48, 0x8d, 0x35) // lea rsi, [rip+label]
	a.rel(label)
	a.movEDX(uint32(n))
	a.syscall()
}
func (a *asm) testRAX() { a.op(0x48, 0x85, 0xc0) } // test rax, rax

// setMaskRSP is rt_sigprocmask(SIG_SETMASK, rsp, NULL, 8): the signal
// mask becomes the 8 bytes at the top of the stack.
// sigsetCall makes the system call in eax (rt_sigprocmask or
// rt_sigaction, edi its first argument) with the struct at rsp, no old
// one, and the kernel's 8-byte signal set.
func (a *asm) sigsetCall() {
	a.op(0x48, 0x89, 0xe6)       // mov rsi, rsp
	a.op(0x31, 0xd2)             // xor edx, edx
	a.op(0x41, 0xba, 8, 0, 0, 0) // mov r10d, 8
	a.syscall()
}

func (a *asm) setMaskRSP() {
	a.movEAX(14) // rt_sigprocmask
	a.movEDI(2)  // SIG_SETMASK
	a.sigsetCall()
}

// execArgv is execve(argv[i], argv+i+1, envp) of the program's own
// arguments, with rbx = &argc as both programs keep it.
func (a *asm) execArgv(i byte) {
	a.op(0x48, 0x8b, 0x0b)             // mov rcx, [rbx]            ; argc
	a.op(0x48, 0x8d, 0x54, 0xcb, 0x10) // lea rdx, [rbx+rcx*8+16]   ; envp
	a.op(0x48, 0x8b, 0x7b, 8*(i+1))    // mov rdi, [rbx+8*(i+1)]    ; argv[i]: the path
	a.op(0x48, 0x8d, 0x73, 8*(i+2))    // lea rsi, [rbx+8*(i+2)]    ; argv+i+1
	a.movEAX(59)                       // execve
	a.syscall()
}
