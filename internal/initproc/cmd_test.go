package initproc

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// A child exec'd from /proc/self/fd/N, as the sealed binary is, starts
// even when N is the number right above the highest fd it is handed: Go's
// forked child puts its error pipe there before execve, and without
// fdPathFor it exec'd the pipe (EACCES). The numbers are made so here: a
// free pair k, k+1, /dev/null handed as fd 3 from k, the program at k+1.
func TestCmdExecFromFdAboveExtraFiles(t *testing.T) {
	k := freeFdPair(t)
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(null, k, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(null)
	extra := os.NewFile(uintptr(k), "null")
	defer extra.Close()
	prog, err := unix.Open("/bin/true", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(prog, k+1, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(prog)
	defer unix.Close(k + 1)

	for _, extras := range [][]*os.File{{extra}, {extra, extra, extra}} {
		c := &Cmd{Path: "/proc/self/fd/" + strconv.Itoa(k+1), Args: []string{"true"}, ExtraFiles: extras}
		if err := c.Start(); err != nil {
			t.Fatalf("starting /bin/true from fd %d with fd %d handed over: %v", k+1, k, err)
		}
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := unix.FcntlInt(uintptr(k+1), unix.F_GETFD, 0); err != nil {
		t.Fatalf("fd %d after the starts: %v; want it still open", k+1, err)
	}
}

// freeFdPair returns k such that neither k nor k+1 is open.
func freeFdPair(t *testing.T) int {
	t.Helper()
	for k := 200; k < 1000; k++ {
		_, e1 := unix.FcntlInt(uintptr(k), unix.F_GETFD, 0)
		_, e2 := unix.FcntlInt(uintptr(k+1), unix.F_GETFD, 0)
		if e1 == unix.EBADF && e2 == unix.EBADF {
			return k
		}
	}
	t.Fatal("no two free fds between 200 and 1000")
	return 0
}
