package berth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"golang.org/x/sys/unix"
)

// commitChanges makes, inside a busybox container, every kind of change a
// commit must carry into the new layer.
const commitChanges = `set -e
rm /etc/group                                         # whiteout of a file
rm -rf /root                                          # whiteout of a directory
rm -rf /usr && mkdir -p /usr/local && echo new > /usr/local/f   # opaque directory
rm -rf /var && ln -s /tmp /var                        # directory replaced by a symlink
ln -s ../etc/passwd /home/rel && ln -s /nonexistent /home/dangling
echo pair > /h1 && ln /h1 /h2                         # hardlink pair
mknod /null2 c 1 3 && chown 1000:50 /null2 && chmod 620 /null2   # device node
mknod /fifo p && chmod 600 /fifo
mkdir -p /home/user/deep && echo data > /home/user/deep/file
chown -R 1000:1000 /home/user && chmod 700 /home/user
echo s > /suid && chown 1000:50 /suid && chmod 4751 /suid       # setuid, after chown
echo g > /sgid && chmod 2710 /sgid && mkdir /sticky && chmod 1777 /sticky
echo changed >> /etc/passwd                           # copy-up of a lower file
chmod 750 /home                                       # metadata-only change of a lower dir
chown 1:1 /tmp
echo x > /xa && mkdir /xd                             # xattrs set from the host
`

// commitListing prints a canonical listing of the container's tree: path,
// type, mode, owner and, by type, size, link count, mtime and content
// checksum, symlink target, device numbers. Directory sizes and link
// counts are left out: overlayfs reports them by layer structure, not
// content. The kernel's and berth's mounts (/proc, /sys, /dev and the bound
// /etc files) are per container.
const commitListing = `find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf \) -prune -o -print | sort | while read -r f; do
  line=$(stat -c '%n|%F|%a|%u:%g' "$f")
  case "$(stat -c %F "$f")" in
  directory) ;;
  "regular file"|"regular empty file") line="$line|size=$(stat -c %s "$f")|links=$(stat -c %h "$f")|mtime=$(stat -c %Y "$f")|sha256=$(sha256sum < "$f" | cut -d' ' -f1)";;
  "symbolic link") line="$line|-> $(readlink "$f")";;
  *) line="$line|dev=$(stat -c %t,%T "$f")|links=$(stat -c %h "$f")";;
  esac
  echo "$line"
done
echo LISTED
`

// hostXattrs are set on files of a running container from the host,
// through the container's root, because the host's busybox has no
// setfattr applet: they land in the container's upper directory as a
// setfattr in the container would put them there.
var hostXattrs = []struct{ path, name, value string }{
	{"/xa", "user.berth", "file value"},
	{"/xa", "trusted.berth", "trusted value"},
	{"/xd", "user.berth.dir", "dir value"},
}

// commitBuffer is a bytes.Buffer that a container's output copier writes
// while the test reads it.
type commitBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *commitBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *commitBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// awaitOutput waits until out contains marker or the container ends.
func awaitOutput(t *testing.T, c *berth.Container, out, errOut *commitBuffer, marker string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), marker) {
		st, err := c.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running || time.Now().After(deadline) {
			t.Fatalf("container never printed %q (state %+v)\nstdout:\n%s\nstderr:\n%s", marker, st, out, errOut)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := out.String()
	return s[:strings.Index(s, marker)]
}

// startListed runs script, then the listing, in a container of image that
// keeps running afterwards, and returns it with its listing.
func startListed(t *testing.T, rt *berth.Runtime, image, script string) (*berth.Container, string) {
	t.Helper()
	var out, errOut commitBuffer
	p := &berth.Process{Args: []string{"sh", "-c", script + commitListing + "exec sleep 300"}, Stdout: &out, Stderr: &errOut}
	c, err := rt.Run(context.Background(), image, p)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		c.Unpause(ctx) // a frozen process would not die
		c.Remove(ctx, berth.WithForce())
	})
	listing := awaitOutput(t, c, &out, &errOut, "LISTED\n")
	if errOut.String() != "" {
		t.Fatalf("the container's script wrote to stderr:\n%s", errOut.String())
	}
	return c, listing
}

// withXattrs appends to each line of listing the xattrs of its path,
// read from the host through the running container's root.
func withXattrs(t *testing.T, c *berth.Container, listing string) string {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil || st.Pid == 0 {
		t.Fatalf("container state: %+v, %v", st, err)
	}
	root := fmt.Sprintf("/proc/%d/root", st.Pid)
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(listing, "\n"), "\n") {
		p, _, _ := strings.Cut(line, "|")
		xs := readXattrs(t, root+p)
		if len(xs) > 0 {
			line += "|xattrs=" + strings.Join(xs, ",")
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n") + "\n"
}

func readXattrs(t *testing.T, p string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listing xattrs of %s: %v", p, err)
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("reading xattr %s of %s: %v", name, p, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", name, v[:m]))
	}
	sort.Strings(out)
	return out
}

func setHostXattrs(t *testing.T, c *berth.Container) {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil || st.Pid == 0 {
		t.Fatalf("container state: %+v, %v", st, err)
	}
	for _, x := range hostXattrs {
		p := fmt.Sprintf("/proc/%d/root%s", st.Pid, x.path)
		if err := unix.Lsetxattr(p, x.name, []byte(x.value), 0); err != nil {
			t.Fatalf("setxattr %s on %s: %v", x.name, p, err)
		}
	}
}

// lineDiff is a (-want +got) diff of two listings, line by line.
func lineDiff(want, got string) string {
	if want == got {
		return ""
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
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
	if b.Len() == 0 {
		b.WriteString("(same lines, different order or count)\n")
	}
	return b.String()
}

// TestCommitRoundTrip makes every kind of filesystem change in a
// container, commits it, moves the image through Save and Load into a
// fresh root and checks that a container of the committed image sees the
// same tree, xattrs included, as the original saw right before the
// commit.
func TestCommitRoundTrip(t *testing.T) {
	berthtest.Skip(t)
	for _, tc := range []struct {
		name string
		stop bool
		tag  string
		opts []berth.CommitOption
	}{
		{name: "running", tag: "committed:running"},
		{name: "running-nopause", opts: []berth.CommitOption{berth.WithCommitPause(false)}},
		{name: "stopped", stop: true, tag: "committed:stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rt := berthtest.NewRuntime(t)
			berthtest.Busybox(t, rt, "busybox")
			c, listing := startListed(t, rt, "busybox", commitChanges)
			setHostXattrs(t, c)
			want := withXattrs(t, c, listing)
			for _, x := range hostXattrs {
				if !strings.Contains(want, x.name) {
					t.Fatalf("xattr %s set from the host is not visible in the container:\n%s", x.name, want)
				}
			}
			if tc.stop {
				if err := c.Stop(ctx, 0); err != nil {
					t.Fatal(err)
				}
				if st, _ := c.State(ctx); st.Running {
					t.Fatalf("state after Stop: %+v", st)
				}
			}
			opts := tc.opts
			if tc.tag != "" {
				opts = append(opts, berth.WithCommitTag(tc.tag))
			}
			img, err := c.Commit(ctx, opts...)
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if st, _ := c.State(ctx); !tc.stop && st.Status != "running" {
				t.Errorf("state after Commit: %q, want running", st.Status)
			}
			if want := []string(nil); tc.tag == "" && !slices.Equal(img.RepoTags, want) {
				t.Errorf("untagged commit has RepoTags %v", img.RepoTags)
			}
			if tc.tag != "" && !slices.Equal(img.RepoTags, []string{tc.tag}) {
				t.Errorf("RepoTags = %v, want [%s]", img.RepoTags, tc.tag)
			}
			parent, err := rt.Image(ctx, "busybox")
			if err != nil {
				t.Fatal(err)
			}
			if len(img.Layers) != len(parent.Layers)+1 || img.Layers[0] != parent.Layers[0] {
				t.Fatalf("layers %+v, want the parent's %+v and one more", img.Layers, parent.Layers)
			}
			if mt := img.Layers[len(img.Layers)-1].MediaType; mt != "application/vnd.docker.image.rootfs.diff.tar" {
				t.Errorf("new layer media type %s", mt)
			}
			if err := rt.Check(ctx); err != nil {
				t.Errorf("Check after Commit: %v", err)
			}

			saveRef := img.ID
			if tc.tag != "" {
				saveRef = tc.tag
			}
			archive := filepath.Join(t.TempDir(), "committed.tar")
			f, err := os.Create(archive)
			if err != nil {
				t.Fatal(err)
			}
			if err := rt.Save(ctx, f, saveRef); err != nil {
				t.Fatalf("Save: %v", err)
			}
			f.Close()

			fresh := berthtest.NewRuntime(t)
			f, err = os.Open(archive)
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := fresh.Load(ctx, f)
			f.Close()
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(loaded) != 1 || loaded[0].ID != img.ID {
				t.Fatalf("Load returned %+v, want image %s", loaded, img.ID)
			}
			c2, listing2 := startListed(t, fresh, img.ID, "")
			got := withXattrs(t, c2, listing2)
			if d := lineDiff(want, got); d != "" {
				t.Errorf("tree of the committed image differs (-want +got):\n%s", d)
			}
			if t.Failed() || os.Getenv("BERTH_COMMIT_LISTING") != "" {
				t.Logf("listing before the commit:\n%s", want)
			}
			t.Run("docker", func(t *testing.T) { compareWithDocker(t, archive, img.ID, want) })
		})
	}
}

// compareWithDocker loads the archive into docker, when docker runs here,
// and compares the listing of a docker container of the image. Xattrs are
// not compared there: reading them needs the container's pid through
// docker inspect and root on docker's host.
func compareWithDocker(t *testing.T, archive, id, want string) {
	t.Helper()
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no docker daemon to compare with: `docker info` failed: %v: %s", err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command("docker", "load", "-i", archive).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	defer exec.Command("docker", "rmi", "-f", id).Run()
	out, err := exec.Command("docker", "run", "--rm", id, "sh", "-c", commitListing).Output()
	if err != nil {
		t.Fatalf("docker run: %v", err)
	}
	got := strings.TrimSuffix(string(out), "LISTED\n")
	var wantNoX []string
	for _, l := range strings.Split(strings.TrimSuffix(want, "\n"), "\n") {
		l, _, _ = strings.Cut(l, "|xattrs=")
		wantNoX = append(wantNoX, l)
	}
	var gotLines []string
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		// docker's init layer adds /.dockerenv and, where the image has
		// none, the /etc/mtab symlink: they are docker's, not the image's.
		if !strings.HasPrefix(l, "/.dockerenv|") && l != "/etc/mtab|symbolic link|777|0:0|-> /proc/mounts" {
			gotLines = append(gotLines, l)
		}
	}
	if d := lineDiff(strings.Join(wantNoX, "\n"), strings.Join(gotLines, "\n")); d != "" {
		t.Errorf("tree of the committed image in docker differs (-want +got):\n%s", d)
	}
}

// TestCommitConfig checks docker's rules for the committed config: the
// container's command, environment and labels, changes applied in order,
// message and author in the history, and that a container of the image
// runs with it.
func TestCommitConfig(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "echo hi > /hi"}, Env: []string{"FROM_RUN=1"}},
		berth.WithLabels(map[string]string{"run.label": "x"}), berth.WithStopSignal("SIGUSR1"), berth.WithExpose("8080"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, berth.WithForce())
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	plain, err := c.Commit(ctx, berth.WithCommitMessage("plain commit"), berth.WithCommitAuthor("Ann <ann@example.com>"))
	if err != nil {
		t.Fatal(err)
	}
	wantPlain := berth.ImageConfig{
		Env:          []string{"FROM_RUN=1"},
		Cmd:          []string{"sh", "-c", "echo hi > /hi"},
		Labels:       map[string]string{"run.label": "x"},
		StopSignal:   "SIGUSR1",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}}, // WithExpose's, as docker commit keeps them
	}
	if d := lineDiff(fmt.Sprintf("%+v", wantPlain), fmt.Sprintf("%+v", plain.Config)); d != "" {
		t.Errorf("config of a plain commit (-want +got):\n%s", d)
	}
	h := plain.History[len(plain.History)-1]
	if h.Comment != "plain commit" || h.Author != "Ann <ann@example.com>" || h.CreatedBy != "sh -c echo hi > /hi" || h.EmptyLayer {
		t.Errorf("history entry %+v", h)
	}
	if plain.Author != "Ann <ann@example.com>" || time.Since(plain.Created) > time.Minute {
		t.Errorf("author %q, created %v", plain.Author, plain.Created)
	}
	if len(plain.RepoTags) != 0 {
		t.Errorf("untagged commit has tags %v", plain.RepoTags)
	}
	imgs, err := rt.Images(ctx)
	if err != nil || !slices.ContainsFunc(imgs, func(i *berth.Image) bool { return i.ID == plain.ID }) {
		t.Errorf("Images does not list the untagged commit: %v", err)
	}

	img, err := c.Commit(ctx, berth.WithCommitTag("changed"), berth.WithChanges(
		`ENV A=1 B="two words"`,
		"ENV C=$A-${B}",
		"EXPOSE 80 53/udp 8000-8001",
		`LABEL a=b "c d"=e`,
		"LABEL expanded=$A",
		"USER 1000:50",
		`VOLUME ["/data", "/logs"]`,
		"VOLUME /more",
		"WORKDIR /app",
		"WORKDIR sub",
		"STOPSIGNAL SIGINT",
		"ONBUILD RUN echo onbuild",
		`ENTRYPOINT ["sh", "-c"]`,
		"CMD [\"echo $A $C; pwd; id -u; id -g\"]",
	))
	if err != nil {
		t.Fatal(err)
	}
	want := berth.ImageConfig{
		User:         "1000:50",
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8080/tcp": {}},
		Env:          []string{"FROM_RUN=1", "A=1", "B=two words", "C=1-two words"},
		Entrypoint:   []string{"sh", "-c"},
		Cmd:          []string{"echo $A $C; pwd; id -u; id -g"},
		Volumes:      map[string]struct{}{"/data": {}, "/logs": {}, "/more": {}},
		WorkingDir:   "/app/sub",
		Labels:       map[string]string{"run.label": "x", "a": "b", "c d": "e", "expanded": "1"},
		StopSignal:   "SIGINT",
		OnBuild:      []string{"RUN echo onbuild"},
	}
	if d := lineDiff(fmt.Sprintf("%+v", want), fmt.Sprintf("%+v", img.Config)); d != "" {
		t.Errorf("config with changes (-want +got):\n%s", d)
	}
	if !slices.Equal(img.RepoTags, []string{"changed:latest"}) {
		t.Errorf("RepoTags %v", img.RepoTags)
	}
	out, errOut, err := runOut(t, rt, "changed", &berth.Process{}, berth.WithAutoRemove())
	if err != nil || out != "1 1-two words\n/app/sub\n1000\n50\n" {
		t.Errorf("running the committed image: %q, %q, %v", out, errOut, err)
	}

	// An ENTRYPOINT without a CMD drops the container's CMD, as in a
	// Dockerfile; shell forms run through /bin/sh -c.
	img, err = c.Commit(ctx, berth.WithChanges("ENTRYPOINT echo from shell form"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Config.Entrypoint, []string{"/bin/sh", "-c", "echo from shell form"}) || img.Config.Cmd != nil {
		t.Errorf("shell-form ENTRYPOINT: entrypoint %q cmd %q", img.Config.Entrypoint, img.Config.Cmd)
	}

	for _, bad := range []struct{ change, word string }{
		{"RUN echo no", "RUN"},
		{"FROM busybox", "FROM"},
		{"COPY a b", "COPY"},
		{"NOSUCH x", "NOSUCH"},
		{"STOPSIGNAL NOSUCHSIG", "NOSUCHSIG"},
		{"EXPOSE 80/bogus", "bogus"},
	} {
		_, err := c.Commit(ctx, berth.WithChanges(bad.change))
		if !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), bad.word) {
			t.Errorf("change %q: %v, want ErrInvalid naming %s", bad.change, err, bad.word)
		}
	}
	if _, err := c.Commit(ctx, berth.WithCommitTag("x@sha256:"+strings.Repeat("0", 64))); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("digest tag: %v, want ErrInvalid", err)
	}
}

// TestPauseConcurrent: two Pauses at once leave the container paused and
// frozen, one of them refused; the other's failure used to thaw the
// winner's freeze, leaving a container recorded paused that ran.
func TestPauseConcurrent(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := mustRun(t, rt, "busybox", sh("while :; do :; done"))
	t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
	var freezer string
	for _, d := range cgroupDirs(t, rt.Root()) {
		if strings.Contains(d, "/freezer/") && strings.HasSuffix(d, c.ID) {
			freezer = filepath.Join(d, "freezer.state")
		}
	}
	if freezer == "" {
		t.Skip("no v1 freezer cgroup for the container on this host")
	}
	for i := range 30 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[j] = c.Pause(ctx)
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: Pause errors %v and %v, want one success and one refusal", i, errs[0], errs[1])
		}
		st, _ := c.State(ctx)
		state, _ := os.ReadFile(freezer)
		if st.Status != "paused" || strings.TrimSpace(string(state)) != "FROZEN" {
			t.Fatalf("round %d: status %q with the freezer %s, want paused and FROZEN", i, st.Status, state)
		}
		if err := c.Unpause(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCommitPause checks Pause and Unpause on a counting container: the
// count stops while paused and resumes, the state says "paused", and a
// commit of a paused container leaves it paused.
func TestCommitPause(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	var out, errOut commitBuffer
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "echo start; while :; do echo tick; usleep 5000; done"}, Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Unpause(ctx)
		c.Remove(ctx, berth.WithForce())
	})
	awaitOutput(t, c, &out, &errOut, "tick")
	ticks := func() int { return strings.Count(out.String(), "tick") }

	if err := c.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	st, err := c.State(ctx)
	if err != nil || st.Status != "paused" || !st.Running {
		t.Fatalf("state after Pause: %+v, %v", st, err)
	}
	if err := c.Pause(ctx); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("second Pause: %v, want ErrInvalid", err)
	}
	time.Sleep(50 * time.Millisecond) // output already written drains
	before := ticks()
	time.Sleep(300 * time.Millisecond)
	if n := ticks(); n != before {
		t.Errorf("the counter advanced while paused: %d → %d", before, n)
	}
	if _, err := c.Commit(ctx); err != nil {
		t.Fatalf("Commit of a paused container: %v", err)
	}
	if st, _ := c.State(ctx); st.Status != "paused" {
		t.Errorf("a commit unpaused a container paused by the caller: %q", st.Status)
	}

	if err := c.Unpause(ctx); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	if st, _ := c.State(ctx); st.Status != "running" || !st.Running {
		t.Errorf("state after Unpause: %+v", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ticks() <= before+5 {
		if time.Now().After(deadline) {
			t.Fatalf("the counter did not resume after Unpause (%d ticks)", ticks())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Unpause(ctx); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("Unpause of a running container: %v, want ErrInvalid", err)
	}

	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(ctx); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Pause of a stopped container: %v, want ErrNotRunning", err)
	}
	if err := c.Unpause(ctx); !errors.Is(err, berth.ErrNotRunning) {
		t.Errorf("Unpause of a stopped container: %v, want ErrNotRunning", err)
	}
}

// TestCommitPauseDetached pauses a detached container from a second
// Runtime on the same root, as another program would.
func TestCommitPauseDetached(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	rt := berthtest.NewRuntime(t)
	berthtest.Busybox(t, rt, "busybox")
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "300"}}, berth.WithDetach())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Unpause(ctx)
		c.Remove(ctx, berth.WithForce())
	})
	other, err := berth.New(rt.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c2, err := other.Container(ctx, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if st, _ := c.State(ctx); st.Status != "paused" {
		t.Errorf("state seen by the first runtime: %q", st.Status)
	}
	if _, err := c2.Commit(ctx, berth.WithCommitTag("fromdetached")); err != nil {
		t.Errorf("Commit: %v", err)
	}
	if err := c.Unpause(ctx); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	if st, _ := c2.State(ctx); st.Status != "running" {
		t.Errorf("state after Unpause: %q", st.Status)
	}
}

// BenchmarkCommit commits a running container holding a 10 MB change,
// paused (the default). Target: ≤ 60 ms median.
func BenchmarkCommit(b *testing.B) {
	berthtest.Skip(b)
	ctx := context.Background()
	rt := berthtest.NewRuntime(b)
	berthtest.Busybox(b, rt, "busybox")
	times := make([]time.Duration, 0, b.N)
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		// A fresh container each time, so every commit makes and unpacks
		// a new layer rather than finding the previous one stored.
		var out, errOut commitBuffer
		c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "dd if=/dev/urandom of=/data bs=1M count=10 2>/dev/null && echo ready && exec sleep 300"}, Stdout: &out, Stderr: &errOut})
		if err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "ready"); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("the container never became ready: %s", errOut.String())
			}
		}
		b.StartTimer()
		start := time.Now()
		img, err := c.Commit(ctx)
		times = append(times, time.Since(start))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		c.Remove(ctx, berth.WithForce())
		rt.RemoveImage(ctx, img.ID)
	}
	reportMedian(b, times)
}
