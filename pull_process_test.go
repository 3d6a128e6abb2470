package berth_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"github.com/google/go-containerregistry/pkg/compression"
)

// TestMain lets the test binary act as a separate program that pulls into
// a root or runs a container in it (see helperRun), for the tests that
// kill or race whole processes.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_TEST_PULL_ROOT") != "" {
		helperPull()
		return
	}
	if os.Getenv("BERTH_TEST_RUN_ROOT") != "" {
		helperRun()
		return
	}
	if os.Getenv("BERTH_TEST_EXE_WRITE") != "" {
		helperExeWrite()
		return
	}
	if os.Getenv("BERTH_TEST_EXEC_ROOT") != "" { // exec_test.go
		helperExecDetached()
		return
	}
	os.Exit(m.Run())
}

func helperPull() {
	rt, err := berth.New(os.Getenv("BERTH_TEST_PULL_ROOT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if _, err := rt.Pull(context.Background(), os.Getenv("BERTH_TEST_PULL_REF")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	os.Exit(0)
}

func pullProcess(t *testing.T, root, ref string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BERTH_TEST_PULL_ROOT="+root, "BERTH_TEST_PULL_REF="+ref)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// throttle makes blob downloads trickle (64 KiB every 2 ms) and counts the
// bytes sent, so a test can kill a pull at a chosen point.
func throttle(reg *fakeRegistry, sent *atomic.Int64) {
	reg.misbehave(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}
		next.ServeHTTP(&trickleWriter{ResponseWriter: w, sent: sent}, r)
		return true
	})
}

type trickleWriter struct {
	http.ResponseWriter
	sent *atomic.Int64
}

func (tw *trickleWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		m, err := tw.ResponseWriter.Write(p[:n])
		written += m
		tw.sent.Add(int64(m))
		if err != nil {
			return written, err
		}
		if f, ok := tw.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[n:]
		time.Sleep(2 * time.Millisecond)
	}
	return written, nil
}

// TestPullKilledAtAnyPoint kills a pulling process at points spread over
// the transfer and the unpack, then checks that the next New opens the
// root cleanly, Check passes, and the pull completes.
func TestPullKilledAtAnyPoint(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	reg := startFake(t)
	img := imageOf(t, true,
		layerOf(t, compression.GZip, randomTar(t, "a", 3<<20)),
		layerOf(t, compression.ZStd, randomTar(t, "b", 3<<20)),
		layerOf(t, compression.None, randomTar(t, "c", 2<<20)))
	ref := reg.push(t, "killme:1", img)
	var sent atomic.Int64
	throttle(reg, &sent)
	total := int64(0)
	for _, l := range mustLayers(t, img) {
		total += l
	}
	for _, frac := range []float64{0, 0.05, 0.3, 0.6, 0.9, 0.99, 1.0} {
		t.Run(fmt.Sprint(frac), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			sent.Store(0)
			cmd := pullProcess(t, root, ref)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			threshold := int64(frac * float64(total))
			deadline := time.After(30 * time.Second)
		wait:
			for sent.Load() < threshold {
				select {
				case err := <-done:
					t.Logf("pull finished before the kill point: %v", err)
					break wait
				case <-deadline:
					t.Fatal("pull made no progress")
				case <-time.After(500 * time.Microsecond):
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			rt, err := berth.New(root)
			if err != nil {
				t.Fatalf("New after the kill: %v", err)
			}
			defer rt.Close()
			if err := rt.Check(ctx); err != nil {
				t.Fatalf("Check after the kill: %v", err)
			}
			for _, leftover := range []string{"ingest", "tmp"} {
				if ents, _ := os.ReadDir(filepath.Join(root, leftover)); len(ents) > 0 {
					t.Errorf("%s/ not swept: %d entries", leftover, len(ents))
				}
			}
			if _, err := rt.Pull(ctx, ref); err != nil {
				t.Fatalf("pull after the kill: %v", err)
			}
			if err := rt.Check(ctx); err != nil {
				t.Fatalf("Check after the pull: %v", err)
			}
		})
	}
}

// TestConcurrentPullProcesses runs two programs pulling the same image
// into one root at once: both succeed and every blob is fetched once.
func TestConcurrentPullProcesses(t *testing.T) {
	berthtest.Skip(t)
	reg := startFake(t)
	img := imageOf(t, true,
		layerOf(t, compression.GZip, randomTar(t, "a", 1<<20)),
		layerOf(t, compression.GZip, randomTar(t, "b", 1<<20)),
		layerOf(t, compression.GZip, randomTar(t, "c", 1<<20)))
	ref := reg.push(t, "race:1", img)
	var sent atomic.Int64
	throttle(reg, &sent)
	var mu sync.Mutex
	fetched := map[string]int{}
	inner := reg.mangle.Load()
	reg.misbehave(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			mu.Lock()
			fetched[filepath.Base(r.URL.Path)]++
			mu.Unlock()
		}
		return (*inner)(w, r, next)
	})
	root := filepath.Join(t.TempDir(), "root")
	a, b := pullProcess(t, root, ref), pullProcess(t, root, ref)
	if err := a.Wait(); err != nil {
		t.Errorf("first pull: %v", err)
	}
	if err := b.Wait(); err != nil {
		t.Errorf("second pull: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fetched) != 4 { // config and three layers
		t.Errorf("fetched blobs %v, want 4 distinct", fetched)
	}
	for d, n := range fetched {
		if n != 1 {
			t.Errorf("blob %s fetched %d times", d, n)
		}
	}
	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Check(context.Background()); err != nil {
		t.Error(err)
	}
}
