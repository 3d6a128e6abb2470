package berth_test

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
)

// TestAttach checks docker run -d -i and docker attach: a detached
// container's input stays open with no data (a shell waits instead of
// exiting), another program attaches to it and types into it, sees what
// it prints from then on on the right streams, and gets its exit; an
// attachment ending leaves the container running.
func TestAttach(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()

	closed, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh"}}, berth.WithDetach())
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Wait(ctx); err != nil {
		t.Errorf("sh without WithOpenStdin: %v, want it to read end-of-file and exit 0", err)
	}
	if err := closed.Attach(ctx, nil, io.Discard, io.Discard); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Attach to an exited container: %v, want ErrNotRunning", err)
	}

	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh"}}, berth.WithDetach(), berth.WithOpenStdin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	time.Sleep(100 * time.Millisecond)
	if st, _ := c.State(ctx); st.Status != "running" {
		t.Fatalf("sh with WithOpenStdin: %s, want it running, waiting for input", st.Status)
	}
	if info, err := c.Inspect(ctx); err != nil || !info.OpenStdin || !info.KeepStdinOpen {
		t.Errorf("inspect: %+v, %v; want OpenStdin and KeepStdinOpen", info, err)
	}

	// Another program attaches; its attachment ends with its context.
	other, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	oc, err := other.Container(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- oc.Attach(actx, strings.NewReader("echo one; echo two >&2\n"), &out, &errOut) }()
	if !eventually(5*time.Second, func() bool { return out.String() == "one\n" && errOut.String() == "two\n" }) {
		t.Errorf("attached output: stdout %q, stderr %q; want one, two", out.String(), errOut.String())
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Attach after its context ended: %v", err)
	}
	if st, _ := c.State(ctx); st.Status != "running" {
		t.Fatalf("after the attachment ended: %s, want running", st.Status)
	}

	// A second attachment sees only what comes after it, and the exit.
	out = syncBuffer{}
	go func() { done <- c.Attach(ctx, strings.NewReader("echo three; exit 3\n"), &out, nil) }()
	wantAttachExit(t, done, 3, "the second attachment")
	if got := out.String(); got != "three\n" {
		t.Errorf("the second attachment saw %q, want only what came after it", got)
	}
}

// TestAttachTerminal checks docker run -dit and attach with a terminal:
// what Attach writes is the terminal's input, and ResizeTTY from another
// program sets the size the detached container's terminal reports.
func TestAttachTerminal(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh"}, TTY: true}, berth.WithDetach(), berth.WithOpenStdin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	plain, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithDetach())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Remove(context.Background(), berth.WithForce()) })
	if err := plain.Attach(ctx, strings.NewReader("x"), io.Discard, nil); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Attach with input to a container whose input is closed: %v, want ErrInvalid", err)
	}
	if err := plain.ResizeTTY(ctx, 30, 100); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("ResizeTTY of a container without a terminal: %v, want ErrInvalid", err)
	}
	// A terminal's container that put another file on its standard input:
	// ResizeTTY touches nothing that is not a terminal of the host's.
	swapped, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "exec 0</etc/passwd; exec sleep 300"}, TTY: true}, berth.WithDetach())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { swapped.Remove(context.Background(), berth.WithForce()) })
	if !eventually(5*time.Second, func() bool {
		return errors.Is(swapped.ResizeTTY(ctx, 30, 100), berth.ErrInvalid)
	}) {
		t.Errorf("ResizeTTY of a container whose stdin is a file now: %v, want ErrInvalid", swapped.ResizeTTY(ctx, 30, 100))
	}

	other, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	oc, err := other.Container(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := oc.ResizeTTY(ctx, 31, 101); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- oc.Attach(ctx, strings.NewReader("stty size; exit 5\r"), &out, nil) }()
	wantAttachExit(t, done, 5, "the terminal's attachment")
	if got := out.String(); !strings.Contains(got, "31 101\r\n") {
		t.Errorf("the terminal's output %q lacks the size set, 31 101", got)
	}
}

// TestAttachEnds checks that Attach returns the exit of the run it
// attached to when a restart policy starts the container again, when the
// container is removed at its exit, and when it keeps no log.
func TestAttachEnds(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for name, opt := range map[string]berth.RunOption{
		"restart policy": berth.WithRestartPolicy(berth.RestartPolicy{Name: "on-failure", MaxRetries: 1}),
		"auto-remove":    berth.WithAutoRemove(),
		"no log":         berth.WithoutLog(),
	} {
		c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh"}}, berth.WithDetach(), berth.WithOpenStdin(), opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
		done := make(chan error, 1)
		go func() { done <- c.Attach(ctx, strings.NewReader("exit 3\n"), io.Discard, nil) }()
		wantAttachExit(t, done, 3, name)
	}
}

// wantAttachExit checks that the Attach whose result done brings returns
// the container's exit code within 10 seconds.
func wantAttachExit(t *testing.T, done <-chan error, code int, what string) {
	t.Helper()
	select {
	case err := <-done:
		var ee *berth.ExitError
		if !errors.As(err, &ee) || ee.Code != code {
			t.Errorf("%s: Attach returned %v, want the exit code %d", what, err, code)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s: Attach did not return at the exit", what)
	}
}

// TestAttachStdinOnce checks docker's StdinOnce (create -i, then start -ai
// with input piped in): the input stays open until an attachment comes,
// and closes when that attachment's input ends, so `cat` copies it and
// exits; each start gives one attachment again. Without WithStdinOnce the
// end of an attachment's input leaves the container's input open, and
// WithStdinOnce alone is refused.
func TestAttachStdinOnce(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, detached := range []bool{false, true} {
		opts := []berth.RunOption{berth.WithOpenStdin(), berth.WithStdinOnce()}
		if detached {
			opts = append(opts, berth.WithDetach())
		}
		c, err := rt.Create(ctx, "busybox", &berth.Process{Args: []string{"cat"}}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
		if info, err := c.Inspect(ctx); err != nil || !info.StdinOnce || !info.KeepStdinOpen {
			t.Errorf("inspect: %+v, %v; want StdinOnce and KeepStdinOpen", info, err)
		}
		for _, input := range []string{"first\n", "second\n"} {
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			// Open and empty until an attachment comes: cat waits.
			time.Sleep(100 * time.Millisecond)
			if st, _ := c.State(ctx); st.Status != "running" {
				t.Fatalf("detached %v: before any attachment: %s, want cat waiting", detached, st.Status)
			}
			var out syncBuffer
			done := make(chan error, 1)
			go func() { done <- c.Attach(ctx, strings.NewReader(input), &out, nil) }()
			select {
			case err := <-done:
				if err != nil || out.String() != input {
					t.Errorf("detached %v: attachment with %q: %v, output %q", detached, input, err, out.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("detached %v: cat did not exit at the end of the attachment's input", detached)
			}
		}
	}

	open, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"cat"}}, berth.WithDetach(), berth.WithOpenStdin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { open.Remove(context.Background(), berth.WithForce()) })
	var out syncBuffer
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- open.Attach(actx, strings.NewReader("kept\n"), &out, nil) }()
	if !eventually(5*time.Second, func() bool { return out.String() == "kept\n" }) {
		t.Errorf("attached output %q", out.String())
	}
	time.Sleep(100 * time.Millisecond)
	if st, _ := open.State(ctx); st.Status != "running" {
		t.Errorf("without WithStdinOnce, after the attachment's input ended: %s, want running", st.Status)
	}
	cancel()
	<-done

	if _, err := rt.Create(ctx, "busybox", &berth.Process{Args: []string{"cat"}}, berth.WithStdinOnce()); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("WithStdinOnce without WithOpenStdin: %v, want ErrInvalid", err)
	}
}

// TestAttachStdinOnceLimits: a terminal's input stays open at the end of
// an attachment's (as docker's StdinOnce leaves it), and a first run that
// reads its starter's Process.Stdin takes no attachment's input
// (ErrInvalid) but shows its output to one without.
func TestAttachStdinOnceLimits(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()

	tty, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh"}, TTY: true}, berth.WithDetach(), berth.WithOpenStdin(), berth.WithStdinOnce())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Remove(context.Background(), berth.WithForce()) })
	actx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := tty.Attach(actx, strings.NewReader("echo one\n"), io.Discard, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the first attachment to a terminal: %v, want it to last until its context ends", err)
	}
	done := make(chan error, 1)
	go func() { done <- tty.Attach(ctx, strings.NewReader("exit 7\n"), io.Discard, nil) }()
	wantAttachExit(t, done, 7, "a second attachment to a terminal")

	pr, pw := io.Pipe()
	defer pw.Close()
	var out syncBuffer
	first, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"cat"}, Stdin: pr, Stdout: &out}, berth.WithOpenStdin(), berth.WithStdinOnce())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Remove(context.Background(), berth.WithForce()) })
	if err := first.Attach(ctx, strings.NewReader("other\n"), io.Discard, nil); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Attach with input to a run reading its starter's: %v, want ErrInvalid", err)
	}
	var seen syncBuffer
	go func() { done <- first.Attach(ctx, nil, &seen, nil) }()
	if !eventually(5*time.Second, func() bool {
		io.WriteString(pw, "line\n")
		return strings.Contains(seen.String(), "line\n")
	}) {
		t.Errorf("an attachment without input saw %q", seen.String())
	}
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the attachment at cat's exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the attachment did not end at cat's exit")
	}
}

// TestOpenStdinStartsLeakNothing: each start of a container with an open
// input leaves no goroutine or thread behind in the program that owns it
// (the copy out of the stdin FIFO ends with the run).
func TestOpenStdinStartsLeakNothing(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	// With WithStdinOnce: its watch and the goroutine waiting on it too.
	c, err := rt.Create(ctx, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithOpenStdin(), berth.WithStdinOnce())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	cycle := func() {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Stop(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // the runtime's own goroutines and threads come up
	goroutines, threads := runtime.NumGoroutine(), threadCount(t)
	for range 10 {
		cycle()
	}
	if !eventually(5*time.Second, func() bool {
		return runtime.NumGoroutine() <= goroutines+2 && threadCount(t) <= threads+2
	}) {
		t.Errorf("after 10 starts: %d goroutines (%d before), %d threads (%d before)", runtime.NumGoroutine(), goroutines, threadCount(t), threads)
	}
}

func threadCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
