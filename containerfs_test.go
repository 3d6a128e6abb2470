package berth_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// fsEnt is one tar entry of a test: type 'f' file, 'd' directory, 'l'
// symlink, 'h' hardlink.
type fsEnt struct {
	typ        byte
	name, body string // body: content, or the link target
	mode       int64
	uid        int
}

func fsTar(t *testing.T, ents ...fsEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: time.Unix(1700000000, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch e.typ {
		case 'f':
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case 'd':
			h.Typeflag = tar.TypeDir
		case 'l':
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.body, 0o777
		case 'h':
			h.Typeflag, h.Linkname = tar.TypeLink, e.body
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == 'f' {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarListing describes a tar, one sorted line per entry: name, type,
// mode, owner and content or link target.
func tarListing(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		line := fmt.Sprintf("%s %c %o %d:%d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid)
		switch h.Typeflag {
		case tar.TypeReg:
			body, _ := io.ReadAll(tr)
			line += " " + string(body)
		case tar.TypeSymlink, tar.TypeLink:
			line += " -> " + h.Linkname
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// tarNames returns the entry names of a tar as absolute paths.
func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		out = append(out, "/"+strings.TrimSuffix(h.Name, "/"))
	}
	slices.Sort(out)
	return out
}

func copyFrom(t *testing.T, c *berth.Container, p string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := c.CopyFrom(context.Background(), p, &buf); err != nil {
		t.Fatalf("CopyFrom(%q): %v", p, err)
	}
	return buf.Bytes()
}

func copyTo(t *testing.T, c *berth.Container, p string, tarball []byte, opts ...berth.CopyOption) {
	t.Helper()
	if err := c.CopyTo(context.Background(), p, bytes.NewReader(tarball), opts...); err != nil {
		t.Fatalf("CopyTo(%q): %v", p, err)
	}
}

// fileBody returns the content of the one file a CopyFrom tar holds.
func fileBody(t *testing.T, b []byte) string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	if _, err := tr.Next(); err != nil {
		t.Fatalf("reading tar: %v", err)
	}
	body, _ := io.ReadAll(tr)
	return string(body)
}

// keepMountinfo fails the test if the process's mount table differs at its
// end from its start: berth's private mounts must never show on the host.
func keepMountinfo(t *testing.T) {
	t.Helper()
	before := hostMountinfo(t)
	t.Cleanup(func() {
		after := hostMountinfo(t)
		if before != after {
			t.Errorf("host mount table changed (%d lines before, %d after):\n%s", strings.Count(before, "\n"), strings.Count(after, "\n"), diffLinesFS(before, after))
		}
	})
}

func diffLinesFS(want, got string) string {
	var b strings.Builder
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "-%s\n", l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+%s\n", l)
		}
	}
	return b.String()
}

func fsRuntime(t *testing.T) *berth.Runtime {
	t.Helper()
	berthtest.Skip(t)
	keepMountinfo(t)
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	return rt
}

// fsContainer runs script in image; running containers are started with
// the script followed by "touch /ready; sleep 1000" and returned once
// /ready exists, stopped ones once the script exited 0.
func fsContainer(t *testing.T, rt *berth.Runtime, image, script string, running bool, stdout io.Writer) *berth.Container {
	t.Helper()
	ctx := context.Background()
	if running {
		script += "\ntouch /ready; sleep 1000"
	}
	c, err := rt.Run(ctx, image, &berth.Process{Args: []string{"sh", "-c", script}, Stdout: stdout, Stderr: stdout})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	if !running {
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("container script failed: %v", err)
		}
		return c
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.CopyFrom(ctx, "/ready", io.Discard) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the container did not get ready in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

func runningName(running bool) string {
	if running {
		return "running"
	}
	return "stopped"
}

// lockedBuffer is a bytes.Buffer safe for a container's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestCopyRoundTrip(t *testing.T) {
	tree := []fsEnt{
		{typ: 'd', name: "tree/", mode: 0o755},
		{typ: 'f', name: "tree/a", body: "A", mode: 0o640},
		{typ: 'l', name: "tree/link", body: "a"},
		{typ: 'f', name: "tree/own", body: "O", uid: 1000},
		{typ: 'd', name: "tree/sub/", mode: 0o750},
		{typ: 'f', name: "tree/sub/b", body: "B", mode: 0o600},
		{typ: 'h', name: "tree/sub/h", body: "tree/a"},
	}
	treeListing := func(prefix string, ownUID int) []string {
		l := []string{
			prefix + "/ 5 755 0:0",
			prefix + "/a 0 640 0:0 A",
			prefix + "/link 2 777 0:0 -> a",
			fmt.Sprintf("%s/own 0 644 %d:%d O", prefix, ownUID, ownUID),
			prefix + "/sub/ 5 750 0:0",
			prefix + "/sub/b 0 600 0:0 B",
			prefix + "/sub/h 1 640 0:0 -> " + prefix + "/a",
		}
		slices.Sort(l)
		return l
	}
	for _, running := range []bool{true, false} {
		t.Run(runningName(running), func(t *testing.T) {
			rt := fsRuntime(t)
			ctx := context.Background()
			out := &lockedBuffer{}
			script := "mkdir /data && echo old > /data/existing"
			if running {
				// Proves the container sees what CopyTo wrote. CopyTo makes
				// the file before it writes it, as docker cp does, so the
				// loop waits for the content, not for the name.
				script += "; (until grep -q container /data/seen 2>/dev/null; do usleep 10000; done; cat /data/seen) &"
			}
			c := fsContainer(t, rt, "busybox", script, running, out)

			// A file into an existing directory keeps its name; ownership
			// becomes root's.
			copyTo(t, c, "/data", fsTar(t, fsEnt{typ: 'f', name: "f.txt", body: "hello", mode: 0o640, uid: 1000}))
			if got, want := tarListing(t, copyFrom(t, c, "/data/f.txt")), []string{"f.txt 0 640 0:0 hello"}; !slices.Equal(got, want) {
				t.Errorf("file into a directory: got %q, want %q", got, want)
			}
			// A file to a new name takes that name.
			copyTo(t, c, "/data/renamed.txt", fsTar(t, fsEnt{typ: 'f', name: "f.txt", body: "x"}))
			if got, want := tarListing(t, copyFrom(t, c, "/data/renamed.txt")), []string{"renamed.txt 0 644 0:0 x"}; !slices.Equal(got, want) {
				t.Errorf("file to a new name: got %q, want %q", got, want)
			}
			// A file over a file replaces it.
			copyTo(t, c, "/data/existing", fsTar(t, fsEnt{typ: 'f', name: "whatever", body: "new"}))
			if got := fileBody(t, copyFrom(t, c, "/data/existing")); got != "new" {
				t.Errorf("file over a file: content %q, want %q", got, "new")
			}
			// A tree to a new name, with ownership kept (docker cp -a).
			copyTo(t, c, "/data/newtree", fsTar(t, tree...), berth.WithCopyOwnership())
			if got, want := tarListing(t, copyFrom(t, c, "/data/newtree")), treeListing("newtree", 1000); !slices.Equal(got, want) {
				t.Errorf("tree to a new name:\ngot  %q\nwant %q", got, want)
			}
			// A tree into an existing directory.
			copyTo(t, c, "/data/", fsTar(t, tree...))
			if got, want := tarListing(t, copyFrom(t, c, "/data/tree")), treeListing("tree", 0); !slices.Equal(got, want) {
				t.Errorf("tree into a directory:\ngot  %q\nwant %q", got, want)
			}
			// "DIR/." copies the content; such a tar makes a new directory.
			contents := copyFrom(t, c, "/data/tree/.")
			if names := tarNames(t, contents); !slices.Contains(names, "/.") || !slices.Contains(names, "/./sub/b") {
				t.Errorf("CopyFrom(tree/.) names = %q, want ./ and ./sub/b among them", names)
			}
			copyTo(t, c, "/data/copy", contents)
			if got, want := tarListing(t, copyFrom(t, c, "/data/copy")), treeListing("copy", 0); !slices.Equal(got, want) {
				t.Errorf("contents to a new directory:\ngot  %q\nwant %q", got, want)
			}

			file := fsTar(t, fsEnt{typ: 'f', name: "f", body: "x"})
			for _, tc := range []struct {
				dst     string
				tarball []byte
				want    error
			}{
				{"/data/missing/", file, berth.ErrNotFound},
				{"/nope/f", file, berth.ErrNotFound},
				{"/data/existing", fsTar(t, tree...), berth.ErrInvalid},
				{"/data/existing/", file, berth.ErrInvalid},
				{"/data", fsTar(t, fsEnt{typ: 'f', name: "tree", body: "x"}), berth.ErrInvalid},
				{"/data", fsTar(t, fsEnt{typ: 'f', name: "../escape", body: "x"}), berth.ErrInvalid},
				{"/data/two", fsTar(t, fsEnt{typ: 'f', name: "a", body: "x"}, fsEnt{typ: 'f', name: "b", body: "y"}), berth.ErrInvalid},
			} {
				if err := c.CopyTo(ctx, tc.dst, bytes.NewReader(tc.tarball)); !errors.Is(err, tc.want) {
					t.Errorf("CopyTo(%q) = %v, want %v", tc.dst, err, tc.want)
				}
			}
			if err := c.CopyFrom(ctx, "/data/nothing", io.Discard); !errors.Is(err, berth.ErrNotFound) {
				t.Errorf("CopyFrom(missing) = %v, want ErrNotFound", err)
			}

			if running {
				copyTo(t, c, "/data", fsTar(t, fsEnt{typ: 'f', name: "seen", body: "seen by the container\n"}))
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(out.String(), "seen by the container") {
					if time.Now().After(deadline) {
						t.Fatalf("the container did not see /data/seen; output %q", out.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// TestCopyResolvesInContainer checks that absolute symlinks in the
// container resolve to the container's files, never the host's, also
// through /proc/PID/root of a running container.
func TestCopyResolvesInContainer(t *testing.T) {
	for _, running := range []bool{true, false} {
		t.Run(runningName(running), func(t *testing.T) {
			rt := fsRuntime(t)
			host := t.TempDir()
			if err := os.MkdirAll(filepath.Join(host, "dir"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(host, "dir", "f"), []byte("host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			script := fmt.Sprintf("mkdir -p %[1]s/dir && echo container > %[1]s/dir/f && ln -s %[1]s/dir /abs && ln -s / /rootlink", host)
			c := fsContainer(t, rt, "busybox", script, running, nil)

			for _, p := range []string{"/abs/f", "/rootlink" + host + "/dir/f", "/abs/../../../../abs/f"} {
				if got := fileBody(t, copyFrom(t, c, p)); got != "container\n" {
					t.Errorf("CopyFrom(%q) = %q, want the container's file", p, got)
				}
			}
			if got, want := tarListing(t, copyFrom(t, c, "/abs")), []string{"abs 2 777 0:0 -> " + host + "/dir"}; !slices.Equal(got, want) {
				t.Errorf("CopyFrom(/abs) = %q, want the symlink itself %q", got, want)
			}
			if got := tarNames(t, copyFrom(t, c, "/abs/")); !slices.Equal(got, []string{"/abs", "/abs/f"}) {
				t.Errorf("CopyFrom(/abs/) names = %q, want the directory it points to", got)
			}
			copyTo(t, c, "/abs", fsTar(t, fsEnt{typ: 'f', name: "new", body: "n"}))
			copyTo(t, c, "/rootlink"+host+"/dir/f", fsTar(t, fsEnt{typ: 'f', name: "f", body: "overwritten"}))
			if got := fileBody(t, copyFrom(t, c, host+"/dir/new")); got != "n" {
				t.Errorf("the file copied through /abs: %q, want %q", got, "n")
			}
			if _, err := os.Lstat(filepath.Join(host, "dir", "new")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("CopyTo through a symlink wrote on the host: %v", err)
			}
			if b, _ := os.ReadFile(filepath.Join(host, "dir", "f")); string(b) != "host\n" {
				t.Errorf("the host file changed to %q", b)
			}
		})
	}
}

// TestCopySymlinkRace is CVE-2018-15664: the container swaps a directory
// on the copied path for symlinks to its root while the host copies.
func TestCopySymlinkRace(t *testing.T) {
	rt := fsRuntime(t)
	ctx := context.Background()
	host := t.TempDir()
	sentinel := filepath.Join(host, "sentinel")
	if err := os.WriteFile(sentinel, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1600000000, 0)
	if err := os.Chtimes(sentinel, old, old); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mkdir -p %[1]s && echo decoy > %[1]s/sentinel && "+
		"(while true; do ln -sfn / /swap; rm -f /swap; ln -sfn ../../../../../../../.. /swap; rm -f /swap; "+
		"mkdir -p /swap%[1]s; echo decoy > /swap%[1]s/sentinel; rm -rf /swap; done) &", host)
	c := fsContainer(t, rt, "busybox", script, true, nil)

	reads, writes := 0, 0
	evil := fsTar(t, fsEnt{typ: 'f', name: "written", body: "evil"})
	over := fsTar(t, fsEnt{typ: 'f', name: "sentinel", body: "evil"})
	errs := map[string]int{}
	note := func(err error) bool {
		if err != nil {
			errs[err.Error()]++
		}
		return err == nil
	}
	for i := 0; i < 200 || reads+writes < 20 && i < 5000; i++ {
		switch i % 3 {
		case 0:
			var buf bytes.Buffer
			if err := c.CopyFrom(ctx, "/swap"+host+"/sentinel", &buf); note(err) {
				reads++
				// The container's own file, in whatever state its loop and
				// earlier copies left it ("decoy", "evil", half of each):
				// never the host's.
				if got := fileBody(t, buf.Bytes()); strings.Contains(got, "secret") {
					t.Fatalf("CopyFrom read the host's file: %q", got)
				}
			}
		case 1:
			if note(c.CopyTo(ctx, "/swap"+host+"/", bytes.NewReader(evil))) {
				writes++
			}
		case 2:
			if note(c.CopyTo(ctx, "/swap"+host+"/sentinel", bytes.NewReader(over))) {
				writes++
			}
		}
	}
	t.Logf("%d reads and %d writes succeeded while the container swapped /swap; %d distinct errors", reads, writes, len(errs))
	if reads+writes == 0 {
		t.Error("no copy succeeded: the race was not exercised")
	}
	b, err := os.ReadFile(sentinel)
	if err != nil || string(b) != "host secret\n" {
		t.Errorf("host sentinel = %q, %v; want it untouched", b, err)
	}
	if st, err := os.Stat(sentinel); err != nil || !st.ModTime().Equal(old) {
		t.Errorf("host sentinel mtime changed: %v", err)
	}
	if names, _ := os.ReadDir(host); len(names) != 1 {
		t.Errorf("files appeared on the host next to the sentinel: %v", names)
	}
	if _, err := os.Lstat("/written"); err == nil {
		t.Error("/written appeared on the host")
	}
}

// diffImage is busybox with a directory /d (old1, sub/x) and /keep.
func diffImage(t *testing.T, rt *berth.Runtime) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(berthtest.BusyboxTar(t)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	mtime := time.Unix(1700000000, 0)
	for _, e := range []struct{ name, body string }{{"d/", ""}, {"d/old1", "1"}, {"d/sub/", ""}, {"d/sub/x", "x"}, {"keep/", ""}, {"keep/k", "k"}} {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.body)), ModTime: mtime}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		tw.WriteHeader(h)
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	all := buf.Bytes()
	if _, err := rt.Import(context.Background(), bytes.NewReader(all), "diffimg"); err != nil {
		t.Fatal(err)
	}
}

func TestDiff(t *testing.T) {
	rt := fsRuntime(t)
	ctx := context.Background()
	diffImage(t, rt)
	script := "echo new > /newfile && echo changed >> /etc/passwd && rm /etc/group && " +
		"rm -rf /d && mkdir /d && echo f > /d/fresh && mkdir -p /n/m && touch /n/m/deep && chmod 700 /keep"
	c := fsContainer(t, rt, "diffimg", script, true, nil)
	want := []string{
		"C /d", "A /d/fresh", "D /d/old1", "D /d/sub", "C /etc", "D /etc/group", "C /etc/passwd", "C /keep",
		"A /n", "A /n/m", "A /n/m/deep", "A /newfile", "A /ready",
	}
	check := func(state string) {
		t.Helper()
		changes, err := c.Diff(ctx)
		if err != nil {
			t.Fatalf("Diff (%s): %v", state, err)
		}
		var got []string
		for _, ch := range changes {
			got = append(got, ch.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("Diff of the %s container (-want +got):\n%s", state, diffLinesFS(strings.Join(want, "\n"), strings.Join(got, "\n")))
		}
	}
	check("running")
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	check("stopped")
}

func TestExport(t *testing.T) {
	rt := fsRuntime(t)
	ctx := context.Background()
	script := "mkdir -p /x/y && echo hi > /x/y/z && ln -s /x /xl && rm /bin/vi && find / -xdev > /list.txt"
	c := fsContainer(t, rt, "busybox", script, true, nil)
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(fileBody(t, copyFrom(t, c, "/list.txt"))), "\n") {
		if l != "/" {
			want = append(want, l)
		}
	}
	// Export keeps the mount points as their (empty) directories, as
	// docker export does.
	want = append(want, "/dev", "/proc", "/sys", "/ready")
	slices.Sort(want)
	want = slices.Compact(want)

	check := func(state string) {
		t.Helper()
		var buf bytes.Buffer
		if err := c.Export(ctx, &buf); err != nil {
			t.Fatalf("Export (%s): %v", state, err)
		}
		if got := tarNames(t, buf.Bytes()); !slices.Equal(got, want) {
			t.Errorf("Export of the %s container: names differ from the container's find -xdev:\n%s\ngot %q", state, diffLinesFS(strings.Join(want, "\n"), strings.Join(got, "\n")), got)
		}
		listing := tarListing(t, buf.Bytes())
		for _, l := range []string{"x/y/z 0 644 0:0 hi\n", "xl 2 777 0:0 -> /x"} {
			if !slices.Contains(listing, l) {
				t.Errorf("Export of the %s container lacks %q", state, l)
			}
		}
		// The files berth binds over the root filesystem are their empty
		// mount points, running or not: their content is the host's.
		for _, l := range listing {
			f := strings.SplitN(l, " ", 5)
			if slices.Contains([]string{"etc/hosts", "etc/hostname", "etc/resolv.conf"}, f[0]) && (len(f) < 5 || f[4] != "") {
				t.Errorf("Export of the %s container has the bound file's content: %q", state, l)
			}
		}
	}
	check("running")
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	check("stopped")
}

func TestTop(t *testing.T) {
	rt := fsRuntime(t)
	ctx := context.Background()
	start := time.Now()
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "sleep 1000 & sleep 1001 & wait"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	st, _ := c.State(ctx)
	want := []string{"sh -c sleep 1000 & sleep 1001 & wait", "sleep 1000", "sleep 1001"}
	var procs []berth.ProcessInfo
	var cmds []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		if procs, err = c.Top(ctx); err != nil {
			t.Fatalf("Top: %v", err)
		}
		cmds = nil
		for _, p := range procs {
			cmds = append(cmds, p.Cmd)
		}
		slices.Sort(cmds)
		// The shell's children show its command line until they exec.
		if slices.Equal(cmds, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Equal(cmds, want) {
		t.Errorf("Top commands = %q, want %q", cmds, want)
	}
	for _, p := range procs {
		if p.UID != 0 || p.User != "root" || p.TTY != "?" {
			t.Errorf("%q: UID %d, User %q, TTY %q; want 0, root, ?", p.Cmd, p.UID, p.User, p.TTY)
		}
		if p.StartTime.Before(start.Add(-2*time.Second)) || p.StartTime.After(time.Now().Add(time.Second)) {
			t.Errorf("%q: StartTime %v, want around %v", p.Cmd, p.StartTime, start)
		}
		if p.CPUTime < 0 || p.CPUTime > time.Minute {
			t.Errorf("%q: CPUTime %v", p.Cmd, p.CPUTime)
		}
		if p.Cmd != "sh -c sleep 1000 & sleep 1001 & wait" && p.PPID != st.Pid {
			t.Errorf("%q: PPID %d, want the shell's pid %d", p.Cmd, p.PPID, st.Pid)
		}
	}
	if !slices.ContainsFunc(procs, func(p berth.ProcessInfo) bool { return p.PID == st.Pid }) {
		t.Errorf("Top does not list the container's first process %d", st.Pid)
	}
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Top(ctx); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Top of a stopped container = %v, want ErrNotRunning", err)
	}
}

// blockingWriter takes its first write, then blocks until release closes.
type blockingWriter struct {
	first   chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.first) })
	<-w.release
	return len(p), nil
}

// TestRemoveWaitsForCopy: a Remove of a stopped container waits for a copy
// that has its overlay mounted. Removed meanwhile, the container's upper
// directory became a spare with the copy's mount still on it, which the
// next container would mount again.
func TestRemoveWaitsForCopy(t *testing.T) {
	rt := fsRuntime(t)
	ctx := context.Background()
	c := fsContainer(t, rt, "busybox", "head -c 1048576 /dev/zero > /big", false, nil)
	w := &blockingWriter{first: make(chan struct{}), release: make(chan struct{})}
	copied := make(chan error, 1)
	go func() { copied <- c.CopyFrom(ctx, "/big", w) }()
	select {
	case <-w.first:
	case err := <-copied:
		t.Fatalf("CopyFrom ended before writing: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("CopyFrom wrote nothing in 10 s")
	}
	removed := make(chan error, 1)
	go func() { removed <- c.Remove(ctx) }()
	select {
	case err := <-removed:
		close(w.release)
		t.Fatalf("Remove returned (%v) while a copy had the container's overlay mounted", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(w.release)
	if err := <-copied; err != nil {
		t.Errorf("CopyFrom: %v", err)
	}
	select {
	case err := <-removed:
		if err != nil {
			t.Errorf("Remove after the copy: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Remove still waits 10 s after the copy ended")
	}
}

// TestCopyStoppedContainerVolumes: a copy from or to a stopped container
// sees its volumes and binds as a running one does (docker cp mounts
// them): what the container wrote to its volume comes out, and what is
// copied in lands in the volume, not under its mount point in the
// container's own layer, where a commit would keep it.
func TestCopyStoppedContainerVolumes(t *testing.T) {
	rt := fsRuntime(t)
	ctx := context.Background()
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "h"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := berth.WithMounts(
		berth.Mount{Type: berth.MountVolume, Source: "cpvol", Target: "/data"},
		berth.Mount{Type: berth.MountBind, Source: host, Target: "/host"},
	)
	c, err := rt.Run(ctx, "busybox", sh("echo kept > /data/f"), mounts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fileBody(t, copyFrom(t, c, "/data/f")); got != "kept\n" {
		t.Errorf("CopyFrom /data/f of the stopped container = %q, want the volume's", got)
	}
	if got := fileBody(t, copyFrom(t, c, "/host/h")); got != "from the host\n" {
		t.Errorf("CopyFrom /host/h of the stopped container = %q, want the bind's", got)
	}
	copyTo(t, c, "/data", tarOf(t, "g", "copied in\n"))
	out, err := output(t, rt, "busybox", sh("cat /data/g"), mounts)
	if err != nil || out != "copied in\n" {
		t.Errorf("the file copied into the stopped container's volume, from another container: %q, %v", out, err)
	}
	changes, err := c.Diff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range changes {
		if strings.HasPrefix(ch.Path, "/data/") {
			t.Errorf("the copy wrote into the container's own layer: %+v", ch)
		}
	}
}

// TestCopySamePathConcurrently: copies of one file into a running
// container at the same time all succeed, and the file is whole, one
// copy's (the last writer's, as with docker cp). The second used to fail
// with "file exists" when the first made the name again between its
// removal of the old file and its own create.
func TestCopySamePathConcurrently(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithDetach())
	defer c.Remove(ctx, berth.WithForce())
	bodies := []string{strings.Repeat("a", 100000), strings.Repeat("b", 100000)}
	var wg sync.WaitGroup
	for _, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := c.CopyTo(ctx, "/", bytes.NewReader(fsTar(t, fsEnt{typ: 'f', name: "shared", body: body}))); err != nil {
					t.Errorf("copy %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := execOut(t, c, &berth.Process{Args: []string{"cat", "/shared"}}); !slices.Contains(bodies, got) {
		t.Errorf("/shared holds %d bytes, not one copy's whole content", len(got))
	}
}
