package berth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
)

// numbered is n lines "line 1" .. "line n", each padded to 100 bytes of
// output, the way the test containers print them.
func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "line %-94d\n", i)
	}
	return b.String()
}

// printLines is a script printing lines from..to as numbered does, in one
// process (busybox seq and printf).
func printLines(from, to int) string {
	return fmt.Sprintf(`for i in $(seq %d %d); do printf 'line %%-94d\n' $i; done`, from, to)
}

// wholeLines drops what precedes the first line starting "line ": a log
// rotated away can take the start of a line the output wrote in two
// pieces (records), as docker's json-file log can.
func wholeLines(s string) string {
	if i := strings.Index(s, "line "); i > 0 {
		if j := strings.Index(s, "\nline "); j >= 0 {
			return s[j+1:]
		}
	}
	return s
}

// keptRun reads the container's log (Logs) and reports the number of
// its first whole line, and whether the lines run from there to last,
// whole and in order.
func keptRun(t *testing.T, c *berth.Container, last int) (first int, ok bool) {
	t.Helper()
	var out bytes.Buffer
	if err := c.Logs(context.Background(), &out, nil); err != nil {
		t.Fatal(err)
	}
	got := wholeLines(out.String())
	fmt.Sscanf(got, "line %d", &first)
	return first, got == numbered(first, last)
}

// logFiles lists a container's log files on disk, with their sizes.
func logFiles(t *testing.T, rt *berth.Runtime, c *berth.Container) map[string]int64 {
	t.Helper()
	info, err := c.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(info.LogPath + "*")
	files := map[string]int64{}
	for _, p := range m {
		if fi, err := os.Stat(p); err == nil {
			files[filepath.Base(p)] = fi.Size()
		}
	}
	return files
}

// TestLogRotation: with WithLogRotation the log is rotated at its size
// and at most maxFiles files are kept; Logs reads what is kept oldest
// first, whole lines in order across the files, --tail reaches back over
// files, and a follower started before the output gets every line
// although the log rotates under it many times.
func TestLogRotation(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	// Each output line is a record of ~140 bytes (timestamp, stream, tag).
	c := mustRun(t, rt, "busybox", sh(printLines(1, 2000)), berth.WithLogRotation(16<<10, 3))
	defer c.Remove(ctx)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	files := logFiles(t, rt, c)
	full := func(n int64) bool { return n > 16<<10-200 && n <= 16<<10 }
	if len(files) != 3 || files["log"] == 0 || !full(files["log.1"]) || !full(files["log.2"]) {
		t.Errorf("log files %v: want log, log.1 and log.2, the rotated ones full to within a record", files)
	}
	var total int64
	for _, n := range files {
		total += n
	}
	if total > 3*16<<10 {
		t.Errorf("the logs take %d bytes, more than 3 files of 16 KiB", total)
	}
	if first, ok := keptRun(t, c, 2000); first <= 1 || !ok {
		t.Errorf("Logs after rotation: from line %d; want the kept lines, whole and in order, to line 2000", first)
	}
	var out bytes.Buffer
	if err := c.Logs(ctx, &out, nil, berth.WithTail(150)); err != nil {
		t.Fatal(err)
	}
	if out.String() != numbered(1851, 2000) {
		t.Errorf("Logs --tail 150 across files: %d bytes, want lines 1851-2000", out.Len())
	}

	// A follower from the start sees every line once, in order, while the
	// log rotates under it some seven times (ten files of 64 KiB keep all
	// of the ~420 KiB, so it cannot fall behind what is deleted).
	f := mustRun(t, rt, "busybox", sh("sleep 0.5; "+printLines(1, 3000)+"; exec sleep 300"), berth.WithLogRotation(64<<10, 10), berth.WithDetach())
	defer f.Remove(ctx, berth.WithForce())
	var followed syncBuffer
	done := make(chan error, 1)
	go func() { done <- f.Logs(ctx, &followed, nil, berth.WithFollow()) }()
	// All of it while the container still runs: the follower keeps up.
	if !eventually(20*time.Second, func() bool { return strings.HasSuffix(followed.String(), numbered(3000, 3000)) }) {
		t.Errorf("the follower did not reach the last line while the container ran (%d bytes)", len(followed.String()))
	}
	if err := f.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the follower did not end with the container")
	}
	if got := followed.String(); got != numbered(1, 3000) {
		t.Errorf("followed across rotations: %d bytes, want lines 1-3000 (%d bytes)", len(got), len(numbered(1, 3000)))
		prev := 0
		for _, l := range strings.Split(got, "\n") {
			n := 0
			fmt.Sscanf(l, "line %d", &n)
			if n != prev+1 {
				t.Logf("after %d: %d %q", prev, n, l[:min(len(l), 20)])
			}
			prev = n
		}
	}
	if n := len(logFiles(t, rt, f)); n < 5 || n > 10 {
		t.Errorf("%d log files, want the 5 to 10 the output takes", n)
	}
}

// TestLogRotationOneFile: maxFiles 0 (docker's default of one file) keeps
// only the newest output, in a log that never grows past the limit.
func TestLogRotationOneFile(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh(printLines(1, 500)), berth.WithLogRotation(4<<10, 0))
	defer c.Remove(ctx)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if files := logFiles(t, rt, c); len(files) != 1 || files["log"] > 4<<10 {
		t.Errorf("log files %v: want one, of at most 4 KiB", files)
	}
	if first, ok := keptRun(t, c, 500); first <= 1 || !ok {
		t.Errorf("Logs of one rotated file: from line %d, want the last lines, whole and in order", first)
	}
	for _, bad := range []berth.RunOption{berth.WithLogRotation(-1, 1), berth.WithLogRotation(0, 3), berth.WithLogRotation(1<<20, 101)} {
		if _, err := rt.Run(ctx, "busybox", sh("true"), bad); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("bad rotation: %v, want ErrInvalid", err)
		}
	}
}

// TestLogsDuringRotation: Logs called again and again while the log
// rotates under it returns each time a run of whole lines in order with
// no gap, the files opened as one set (a reader never sees a rotation
// half done).
func TestLogsDuringRotation(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh(printLines(1, 6000)), berth.WithLogRotation(8<<10, 100), berth.WithDetach())
	defer c.Remove(ctx, berth.WithForce())
	for i := 0; ; i++ {
		// The state first: one that has ended then has all its output in
		// the log the Logs call reads.
		st, err := c.State(ctx)
		ended := err != nil || !st.Running
		var out bytes.Buffer
		if err := c.Logs(ctx, &out, nil); err != nil {
			t.Fatalf("Logs during rotation: %v", err)
		}
		got := wholeLines(out.String())
		got = got[:strings.LastIndex(got, "\n")+1] // a line the container is still writing may show in part
		first, n := 0, strings.Count(got, "\n")
		fmt.Sscanf(got, "line %d", &first)
		if n > 0 && got != numbered(first, first+n-1) {
			prev := first - 1
			for _, l := range strings.Split(got, "\n") {
				k := 0
				fmt.Sscanf(l, "line %d", &k)
				if k != prev+1 {
					t.Logf("after %d: %q", prev, l[:min(len(l), 30)])
				}
				prev = k
			}
			t.Fatalf("Logs call %d during rotation: %d lines from line %d, not a run of whole lines in order", i, n, first)
		}
		if ended {
			if n == 0 || first+n-1 != 6000 {
				t.Errorf("after the exit: lines %d to %d, want the run to end at 6000", first, first+n-1)
			}
			return
		}
	}
}

// TestLogRotationRestart: a container started again appends to its log
// with the size it had, so that the limit holds across runs, and Logs
// shows both runs' output in order.
func TestLogRotationRestart(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh(`n=$(cat /n 2>/dev/null || echo 0); echo $((n+1)) > /n; for i in $(seq 1 20); do printf 'line %-94d\n' $((n*20+i)); done`),
		berth.WithLogRotation(4<<10, 3), berth.WithDetach())
	defer c.Remove(ctx, berth.WithForce())
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	files := logFiles(t, rt, c)
	if len(files) != 2 || files["log.1"] > 4<<10 || files["log"] > 4<<10 {
		t.Errorf("log files after two runs of ~2.8 KiB each: %v; want log and log.1, each at most 4 KiB", files)
	}
	var out bytes.Buffer
	if err := c.Logs(ctx, &out, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != numbered(1, 40) {
		t.Errorf("Logs of both runs: %d bytes, want lines 1-40", out.Len())
	}
}

// TestWithoutLog: a container run WithoutLog gives its output to the
// caller and keeps none: Logs fails saying so, and no log file is there.
func TestWithoutLog(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	var stdout bytes.Buffer
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"echo", "to the caller"}, Stdout: &stdout}, berth.WithoutLog())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx)
	if err := c.Wait(ctx); err != nil || stdout.String() != "to the caller\n" {
		t.Fatalf("attached output: %q, %v", stdout.String(), err)
	}
	if err := c.Logs(ctx, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "keeps no log") {
		t.Errorf("Logs of a container without a log: %v", err)
	}
	if files := logFiles(t, rt, c); len(files) != 0 {
		t.Errorf("log files %v: want none", files)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithoutLog(), berth.WithLogRotation(1<<20, 2)); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("WithoutLog and WithLogRotation: %v, want ErrInvalid", err)
	}
}

// TestLogsUntil: WithUntil leaves out what was logged after its time, and
// ends a following Logs once its time has passed while the container runs.
func TestLogsUntil(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("echo early; sleep 1; echo late"))
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var stamped bytes.Buffer
	if err := c.Logs(ctx, &stamped, nil, berth.WithTimestamps()); err != nil {
		t.Fatal(err)
	}
	ts, _, _ := strings.Cut(stamped.String(), " ")
	early, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatalf("the first line's timestamp %q: %v", ts, err)
	}
	var out bytes.Buffer
	if err := c.Logs(ctx, &out, nil, berth.WithUntil(early.Add(500*time.Millisecond))); err != nil || out.String() != "early\n" {
		t.Errorf("Logs until half a second after the first line: %q, %v", out.String(), err)
	}
	out.Reset()
	if err := c.Logs(ctx, &out, nil, berth.WithSince(early.Add(500*time.Millisecond)), berth.WithUntil(early.Add(time.Hour))); err != nil || out.String() != "late\n" {
		t.Errorf("Logs from half a second after the first line: %q, %v", out.String(), err)
	}

	running := sleeper(t, rt, "until-follow")
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- running.Logs(ctx, io.Discard, nil, berth.WithFollow(), berth.WithUntil(start.Add(300*time.Millisecond)))
	}()
	select {
	case err := <-done:
		if err != nil || time.Since(start) < 300*time.Millisecond {
			t.Errorf("following until 300 ms from now: %v after %v", err, time.Since(start))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("following Logs of a running container did not end at its until time")
	}
}
