package berth_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// The build conformance suite: every directory of testdata/build is one
// case, built by berth and compared with the golden want.json beside it.
//
//	Dockerfile    the Dockerfile (kept outside the context)
//	context/      the build context (may be missing: an empty context)
//	build.json    optional inputs: build args, target, setup of modes and
//	              links git cannot hold, rebuilds for the cache, base
//	want.json     what Docker (BuildKit) makes of it: the image config,
//	              the history the build added, the file tree the build
//	              changed against its base; or the error, with its line
//
// go test -run TestBuildConformance -update rewrites want.json from berth's
// results; each rewritten golden must be reviewed against Docker's
// documented behaviour (and, where possible, BERTH_COMPARE_DOCKER=1)
// before it is committed, or the suite proves nothing.
//
// BERTH_COMPARE_DOCKER=1 also builds every case with DOCKER_BUILDKIT=1
// docker build (BERTH_DOCKER names the docker CLI, default "docker"; it
// must have BuildKit built in or the buildx plugin) against a running
// dockerd and compares docker's image with the same golden. Cases under
// testdata/build-pending are not run: their features are not built yet,
// or they fail on a berth bug their README names.
var (
	updateConformance = flag.Bool("update", false, "rewrite testdata/build/*/want.json from berth's results (review every change by hand)")
	updateFromDocker  = flag.Bool("update-docker", false, "with BERTH_COMPARE_DOCKER=1, rewrite want.json from docker's results (review every change by hand)")
)

// conformanceInput is build.json.
type conformanceInput struct {
	// Args are build args (--build-arg).
	Args map[string]string `json:"args,omitempty"`
	// Target is the stage to build (--target).
	Target string `json:"target,omitempty"`
	// Base is the image the tree is compared against: "busybox" (the
	// default) or "scratch".
	Base string `json:"base,omitempty"`
	// Setup is applied to a copy of context/ before the build; see
	// applySetup.
	Setup []string `json:"setup,omitempty"`
	// Rebuilds are built one after another after the first build, each
	// after its Setup; want.json describes the image of the last one.
	Rebuilds []conformanceRebuild `json:"rebuilds,omitempty"`
	// Secrets maps a secret's id to its content (--secret id=ID,src=FILE,
	// the file written outside the context). The saved image must hold
	// none of the contents.
	Secrets map[string]string `json:"secrets,omitempty"`
	// SourceDateEpoch, in seconds, is passed with WithSourceDateEpoch; the
	// image and its history must then be created at that time, and a
	// second build without the cache must give the same image ID.
	SourceDateEpoch int64 `json:"sourceDateEpoch,omitempty"`
	// HTTP serves the case's http/ directory on 127.0.0.1; "{{HTTP}}" in
	// the Dockerfile becomes its URL.
	HTTP bool `json:"http,omitempty"`
	// RunHistory false reduces RUN's created_by to its name too, for
	// cases docker cannot check (heredocs).
	RunHistory *bool `json:"runHistory,omitempty"`
	// ExactHistory compares created_by as BuildKit writes it (see
	// normalizeHistory).
	ExactHistory bool `json:"exactHistory,omitempty"`
	// DockerDiffers, when set, says why docker 20.10 gives a different
	// result that the golden rightly does not follow (a behaviour later
	// BuildKit changed, or one that contradicts docker's documentation);
	// the docker comparison is then only logged.
	DockerDiffers string `json:"dockerDiffers,omitempty"`
	// Docker, when set, says why docker build cannot build the case
	// (docker 20.10's built-in Dockerfile frontend lacks the syntax).
	Docker string `json:"docker,omitempty"`
}

// conformanceRebuild is one more build of the same case.
type conformanceRebuild struct {
	Setup []string `json:"setup,omitempty"`
	// NoCache rebuilds with WithNoCache (--no-cache).
	NoCache bool `json:"noCache,omitempty"`
	// Cached and Rebuilt list instructions, as written, that must come
	// from the cache or be built anew.
	Cached  []string `json:"cached,omitempty"`
	Rebuilt []string `json:"rebuilt,omitempty"`
}

// conformanceWant is want.json.
type conformanceWant struct {
	Error   *conformanceError  `json:"error,omitempty"`
	Config  *conformanceConfig `json:"config,omitempty"`
	History []conformanceHist  `json:"history,omitempty"`
	// Tree maps every path whose entry differs from the base image to its
	// entry (see treeEntry.String), or to "absent" for a path the build
	// removed.
	Tree map[string]string `json:"tree,omitempty"`
}

// conformanceError is an expected failure: the line Docker reports and a
// phrase both messages contain.
type conformanceError struct {
	Line     int    `json:"line"`
	Contains string `json:"contains"`
}

// conformanceConfig holds the image config fields a build sets, named and
// encoded as in the image config.
type conformanceConfig struct {
	Author       string              `json:"author,omitempty"`
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Volumes      map[string]struct{} `json:"Volumes,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
	Shell        []string            `json:"Shell,omitempty"`
	Healthcheck  *struct {
		Test        []string      `json:"Test,omitempty"`
		Interval    time.Duration `json:"Interval,omitempty"`
		Timeout     time.Duration `json:"Timeout,omitempty"`
		StartPeriod time.Duration `json:"StartPeriod,omitempty"`
		Retries     int           `json:"Retries,omitempty"`
	} `json:"Healthcheck,omitempty"`
	OnBuild []string `json:"OnBuild,omitempty"`
}

// conformanceHist is one history entry the build added, normalized (see
// normalizeHistory).
type conformanceHist struct {
	CreatedBy  string `json:"created_by"`
	EmptyLayer bool   `json:"empty_layer,omitempty"`
}

// normalizeHistory reduces a history entry to what the suite holds berth
// to. Docker's two builders disagree on the form of created_by: the legacy
// builder writes "/bin/sh -c #(nop)  ENV A=1" and "/bin/sh -c #(nop) COPY
// file:<sha> in /x", BuildKit "ENV A=1" and "COPY a /x # buildkit", and
// each prints some instructions with Go's %v ("EXPOSE map[80/tcp:{}]").
// So by default an entry keeps its instruction's name, the whole command
// line for RUN (which both builders write alike, build args first), and
// empty_layer, except for WORKDIR: BuildKit gives every WORKDIR a layer
// (empty when the directory exists), the legacy builder none; the tree
// shows whether the directory was made. With exact (build.json's
// exactHistory) only the prefix and suffix are taken off, and the golden
// holds BuildKit's text.
func normalizeHistory(createdBy string, empty, exact, runText bool) conformanceHist {
	s := strings.TrimPrefix(createdBy, "/bin/sh -c #(nop) ")
	s = strings.TrimSpace(strings.TrimSuffix(s, " # buildkit"))
	if exact {
		return conformanceHist{CreatedBy: s, EmptyLayer: empty}
	}
	name, _, _ := strings.Cut(s, " ")
	switch name {
	case "RUN":
		if runText {
			return conformanceHist{CreatedBy: s, EmptyLayer: empty}
		}
	case "WORKDIR":
		return conformanceHist{CreatedBy: name}
	}
	return conformanceHist{CreatedBy: name, EmptyLayer: empty}
}

// conformanceImage is what the suite reads from a saved image.
type conformanceImage struct {
	config  conformanceConfig
	history []rawHist
	layers  int
	tree    map[string]treeEntry
}

type rawHist struct {
	CreatedBy  string `json:"created_by"`
	EmptyLayer bool   `json:"empty_layer"`
}

// treeEntry is one path of an image's merged filesystem; mtimes are left
// out on purpose.
type treeEntry struct {
	typ      byte
	mode     int64
	uid, gid int
	size     int64
	sum      string
	content  []byte // small files only
	target   string // symlinks
	dev      string // device nodes
}

// String is the entry as want.json writes it:
//
//	dir 0755 0:0
//	file 0644 0:0 "hi\n"               (short text)
//	file 0755 0:0 1024B sha256:0123…   (anything else)
//	symlink 0:0 -> target
//	char 0666 0:0 1,3
func (e treeEntry) String() string {
	own := fmt.Sprintf("%d:%d", e.uid, e.gid)
	switch e.typ {
	case tar.TypeDir:
		return fmt.Sprintf("dir %04o %s", e.mode, own)
	case tar.TypeSymlink:
		return fmt.Sprintf("symlink %s -> %s", own, e.target)
	case tar.TypeReg:
		if e.content != nil && len(e.content) <= 64 && utf8.Valid(e.content) {
			return fmt.Sprintf("file %04o %s %s", e.mode, own, strconv.Quote(string(e.content)))
		}
		return fmt.Sprintf("file %04o %s %dB sha256:%s", e.mode, own, e.size, e.sum[:16])
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		name := map[byte]string{tar.TypeChar: "char", tar.TypeBlock: "block", tar.TypeFifo: "fifo"}[e.typ]
		return fmt.Sprintf("%s %04o %s %s", name, e.mode, own, e.dev)
	}
	return fmt.Sprintf("type%c %04o %s", e.typ, e.mode, own)
}

// conformanceBase is the base image every case starts from: the busybox of
// berthtest with a PATH in its config, as every real base image has
// (without one BuildKit adds a default PATH to the built image, berth
// does not; the case default-path is about that).
type conformanceBase struct {
	ref     string
	archive []byte // berth's Save of it, for docker load
	rootfs  []byte // its layer, for docker import
	img     *conformanceImage
}

func TestBuildConformance(t *testing.T) {
	berthtest.Skip(t)
	// BERTH_CONFORMANCE_DIR=testdata/build-pending runs the pending cases,
	// to see which pass now.
	root := os.Getenv("BERTH_CONFORMANCE_DIR")
	if root == "" {
		root = filepath.Join("testdata", "build")
	}
	dirs, err := filepath.Glob(filepath.Join(root, "*", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatalf("no cases in %s", root)
	}
	rt := berthtest.NewRuntime(t)
	ctx := context.Background()
	base := conformanceBaseImage(t, rt)
	var dk *dockerBuilder
	if os.Getenv("BERTH_COMPARE_DOCKER") == "1" {
		dk = newDockerBuilder(t, base)
	}
	for _, df := range dirs {
		dir := filepath.Dir(df)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			runConformanceCase(t, ctx, rt, base, dk, dir)
		})
	}
}

func runConformanceCase(t *testing.T, ctx context.Context, rt *berth.Runtime, base *conformanceBase, dk *dockerBuilder, dir string) {
	var in conformanceInput
	if b, err := os.ReadFile(filepath.Join(dir, "build.json")); err == nil {
		if err := json.Unmarshal(b, &in); err != nil {
			t.Fatalf("build.json: %v", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var want conformanceWant
	wantPath := filepath.Join(dir, "want.json")
	if b, err := os.ReadFile(wantPath); err == nil {
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("want.json: %v", err)
		}
	} else if !*updateConformance && !*updateFromDocker {
		t.Fatalf("want.json: %v (run with -update, then review it)", err)
	}
	baseTree := base.img.tree
	baseHist := len(base.img.history)
	if in.Base == "scratch" {
		baseTree, baseHist = nil, 0
	}
	work := t.TempDir()
	ctxDir := filepath.Join(work, "context")
	dockerfile := filepath.Join(work, "Dockerfile")
	httpURL := ""
	if in.HTTP {
		srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "http"))))
		t.Cleanup(srv.Close)
		httpURL = srv.URL
	}
	prepareConformanceContext(t, dir, ctxDir, dockerfile, in, httpURL)
	tag := "conformance/" + filepath.Base(dir)

	var got conformanceWant
	events, err := berthBuild(ctx, rt, ctxDir, dockerfile, tag, in)
	for i, rb := range in.Rebuilds {
		if err != nil {
			break
		}
		applySetup(t, ctxDir, rb.Setup)
		var extra []berth.BuildOption
		if rb.NoCache {
			extra = append(extra, berth.WithNoCache())
		}
		events, err = berthBuild(ctx, rt, ctxDir, dockerfile, tag, in, extra...)
		if err == nil {
			checkCacheEvents(t, fmt.Sprintf("berth rebuild %d", i+1), rb, events)
		}
	}
	if err != nil {
		var be *berth.BuildError
		if !errors.As(err, &be) {
			t.Fatalf("build failed without a *BuildError: %v", err)
		}
		// The golden's phrase stands for a message that contains it.
		got.Error = &conformanceError{Line: be.Line, Contains: err.Error()}
		if want.Error != nil && containsFold(err.Error(), want.Error.Contains) {
			got.Error.Contains = want.Error.Contains
		}
	} else {
		var buf bytes.Buffer
		if err := rt.Save(ctx, &buf, tag); err != nil {
			t.Fatal(err)
		}
		checkNoSecrets(t, "berth", buf.Bytes(), in.Secrets)
		if in.SourceDateEpoch != 0 {
			checkReproducible(t, ctx, rt, ctxDir, dockerfile, tag, in, buf.Bytes(), baseHist)
		}
		img, err := readSavedImage(&buf)
		if err != nil {
			t.Fatal(err)
		}
		got = img.summary(baseTree, baseHist, in)
		if img.layers != nonEmptyLayers(img.history) {
			t.Errorf("berth's image has %d layers but %d history entries with a layer", img.layers, nonEmptyLayers(img.history))
		}
	}
	if *updateConformance {
		writeWant(t, wantPath, got)
	} else if *updateFromDocker {
		// The docker side below writes the golden.
	} else if diff := jsonDiff(want, got); diff != "" {
		t.Errorf("berth (-want +got):\n%s", diff)
	}

	if dk == nil {
		return
	}
	if in.Docker != "" {
		t.Logf("docker build skipped: %s", in.Docker)
		return
	}
	dgot, raw := dk.build(t, dir, in, want.Error, baseTree, baseHist)
	if *updateFromDocker {
		if dgot.Error != nil {
			t.Fatalf("docker failed, no golden written: %+v", *dgot.Error)
		}
		writeWant(t, wantPath, dgot)
		return
	}
	if want.Error != nil && dgot.Error != nil {
		// Docker's messages differ from berth's and between its
		// versions, and only its parser errors carry a line: that docker
		// fails too is what is compared.
		t.Logf("docker failed too: %+v", *dgot.Error)
		return
	}
	if diff := jsonDiff(want, dgot); diff != "" && in.DockerDiffers != "" {
		t.Logf("docker differs, as expected (%s) (-want +got):\n%s", in.DockerDiffers, diff)
	} else if diff != "" {
		t.Errorf("docker (-want +got):\n%s\ndocker's history: %s", diff, raw)
	}
}

func writeWant(t *testing.T, p string, w conformanceWant) {
	t.Helper()
	b, err := json.MarshalIndent(w, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkNoSecrets fails the test if a secret's content is anywhere in the
// saved image, in a layer or the config.
func checkNoSecrets(t *testing.T, who string, saved []byte, secrets map[string]string) {
	t.Helper()
	members, err := savedMembers(bytes.NewReader(saved))
	if err != nil {
		t.Fatal(err)
	}
	for id, content := range secrets {
		for name, b := range members {
			if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
				if gz, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
					b, _ = io.ReadAll(gz)
				}
			}
			if bytes.Contains(b, []byte(content)) {
				t.Errorf("%s: secret %q is in the image (%s)", who, id, name)
			}
		}
	}
}

// checkReproducible checks a SOURCE_DATE_EPOCH build: the image and its
// history are dated at the epoch, and building again without the cache
// gives the same image.
func checkReproducible(t *testing.T, ctx context.Context, rt *berth.Runtime, ctxDir, dockerfile, tag string, in conformanceInput, saved []byte, baseHist int) {
	t.Helper()
	members, err := savedMembers(bytes.NewReader(saved))
	if err != nil {
		t.Fatal(err)
	}
	var manifest []struct{ Config string }
	json.Unmarshal(members["manifest.json"], &manifest)
	var cf struct {
		Created time.Time `json:"created"`
		History []struct {
			Created time.Time `json:"created"`
		} `json:"history"`
	}
	if len(manifest) == 0 || json.Unmarshal(members[path.Clean(manifest[0].Config)], &cf) != nil {
		t.Fatal("no config in the saved image")
	}
	epoch := time.Unix(in.SourceDateEpoch, 0).UTC()
	if !cf.Created.Equal(epoch) {
		t.Errorf("image created %v, want SOURCE_DATE_EPOCH %v", cf.Created, epoch)
	}
	// The base image's entries keep their times; the build's are dated.
	for i, h := range cf.History[min(baseHist, len(cf.History)):] {
		if !h.Created.Equal(epoch) {
			t.Errorf("history[%d] created %v, want SOURCE_DATE_EPOCH %v", baseHist+i, h.Created, epoch)
		}
	}
	first, err := rt.Image(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	again := in
	again.Rebuilds = nil
	if _, err := berthBuild(ctx, rt, ctxDir, dockerfile, tag+"-again", again, berth.WithNoCache()); err != nil {
		t.Fatalf("second SOURCE_DATE_EPOCH build: %v", err)
	}
	second, err := rt.Image(ctx, tag+"-again")
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Errorf("SOURCE_DATE_EPOCH: a second build without the cache made %s, the first %s", second.ID, first.ID)
	}
}

// berthBuild builds a case with berth and returns its progress events.
func berthBuild(ctx context.Context, rt *berth.Runtime, ctxDir, dockerfile, tag string, in conformanceInput, extra ...berth.BuildOption) ([]berth.BuildEvent, error) {
	var events []berth.BuildEvent
	opts := append(extra,
		berth.WithDockerfile(dockerfile),
		berth.WithBuildTags(tag),
		berth.WithBuildProgress(func(ev berth.BuildEvent) {
			if ev.Output == "" {
				events = append(events, ev)
			}
		}),
	)
	if len(in.Args) > 0 {
		opts = append(opts, berth.WithBuildArgs(in.Args))
	}
	if in.Target != "" {
		opts = append(opts, berth.WithTarget(in.Target))
	}
	for id := range in.Secrets {
		opts = append(opts, berth.WithBuildSecret(id, secretPath(dockerfile, id)))
	}
	if in.SourceDateEpoch != 0 {
		opts = append(opts, berth.WithSourceDateEpoch(time.Unix(in.SourceDateEpoch, 0)))
	}
	_, err := rt.Build(ctx, ctxDir, opts...)
	return events, err
}

func checkCacheEvents(t *testing.T, who string, rb conformanceRebuild, events []berth.BuildEvent) {
	t.Helper()
	cached := map[string]bool{}
	for _, ev := range events {
		cached[ev.Instruction] = ev.Cached
	}
	checkCached(t, who, rb, cached)
}

// checkCached checks a rebuild's cache use: cached maps each instruction
// as written to whether it came from the cache.
func checkCached(t *testing.T, who string, rb conformanceRebuild, cached map[string]bool) {
	t.Helper()
	for _, want := range []struct {
		list   []string
		cached bool
	}{{rb.Cached, true}, {rb.Rebuilt, false}} {
		for _, inst := range want.list {
			c, ok := cached[inst]
			switch {
			case !ok:
				t.Errorf("%s: no step %q (steps: %v)", who, inst, cached)
			case c != want.cached:
				t.Errorf("%s: step %q cached = %v, want %v", who, inst, c, want.cached)
			}
		}
	}
}

func nonEmptyLayers(h []rawHist) int {
	n := 0
	for _, e := range h {
		if !e.EmptyLayer {
			n++
		}
	}
	return n
}

// summary is the image as want.json describes it: the history entries
// after the base's, and the tree's differences from the base tree.
func (img *conformanceImage) summary(baseTree map[string]treeEntry, baseHist int, in conformanceInput) conformanceWant {
	cfg := img.config
	w := conformanceWant{Config: &cfg, Tree: map[string]string{}}
	for i := baseHist; i < len(img.history); i++ {
		w.History = append(w.History, normalizeHistory(img.history[i].CreatedBy, img.history[i].EmptyLayer, in.ExactHistory, in.RunHistory == nil || *in.RunHistory))
	}
	for p, e := range img.tree {
		if b, ok := baseTree[p]; !ok || b.String() != e.String() {
			w.Tree[p] = e.String()
		}
	}
	for p := range baseTree {
		if _, ok := img.tree[p]; !ok {
			w.Tree[p] = "absent"
		}
	}
	return w
}

// prepareConformanceContext copies the case's context and Dockerfile into
// the work dir and applies the setup.
func prepareConformanceContext(t *testing.T, dir, ctxDir, dockerfile string, in conformanceInput, httpURL string) {
	t.Helper()
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "context")
	if _, err := os.Stat(src); err == nil {
		if err := os.CopyFS(ctxDir, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		// CopyFS makes files 0644 or 0755 and follows no symlinks (it
		// fails on them): the setup makes links and other modes.
	}
	for _, name := range []string{"Dockerfile", "Dockerfile.dockerignore"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("{{HTTP}}"), []byte(httpURL))
		if err := os.WriteFile(filepath.Join(filepath.Dir(dockerfile), name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for id, content := range in.Secrets {
		if err := os.WriteFile(secretPath(dockerfile, id), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	applySetup(t, ctxDir, in.Setup)
}

// secretPath is where a case's secret is written: beside the Dockerfile,
// outside the context.
func secretPath(dockerfile, id string) string {
	return filepath.Join(filepath.Dir(dockerfile), "secret-"+id)
}

// applySetup runs setup lines on the context, one operation each:
//
//	chmod 0600 PATH
//	chown 1000:1000 PATH
//	symlink TARGET PATH
//	mkdir PATH                  (an empty directory, which git cannot hold)
//	write PATH TEXT             (TEXT Go-quoted)
//	touch PATH                  (mtime set to now, content unchanged)
//	tar PATH NAME TEXT [NAME TEXT]…  (a tar of files, TEXT Go-quoted,
//	                            owned 0:0, or UID:GID:NAME for an owner)
func applySetup(t *testing.T, ctxDir string, setup []string) {
	t.Helper()
	for _, line := range setup {
		f, err := splitSetup(line)
		if err != nil || len(f) < 2 {
			t.Fatalf("setup %q: bad line (%v)", line, err)
		}
		p := filepath.Join(ctxDir, filepath.FromSlash(f[len(f)-1]))
		switch f[0] {
		case "chmod":
			m, _ := strconv.ParseUint(f[1], 8, 32)
			err = os.Chmod(p, os.FileMode(m&0o777)|unixModeBits(m))
		case "chown":
			u, g, _ := strings.Cut(f[1], ":")
			uid, _ := strconv.Atoi(u)
			gid, _ := strconv.Atoi(g)
			err = os.Lchown(p, uid, gid)
		case "symlink":
			os.MkdirAll(filepath.Dir(p), 0o755)
			err = os.Symlink(f[1], p)
		case "mkdir":
			err = os.MkdirAll(p, 0o755)
		case "touch":
			now := time.Now().Add(time.Minute)
			err = os.Chtimes(p, now, now)
		case "write":
			p = filepath.Join(ctxDir, filepath.FromSlash(f[1]))
			os.MkdirAll(filepath.Dir(p), 0o755)
			err = os.WriteFile(p, []byte(f[2]), 0o644)
		case "tar":
			p = filepath.Join(ctxDir, filepath.FromSlash(f[1]))
			err = writeSetupTar(p, f[2:])
		default:
			err = fmt.Errorf("unknown operation")
		}
		if err != nil {
			t.Fatalf("setup %q: %v", line, err)
		}
	}
}

func unixModeBits(m uint64) os.FileMode {
	var fm os.FileMode
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// splitSetup splits a setup line into words; a word starting with a
// double quote is a Go-quoted string.
func splitSetup(line string) ([]string, error) {
	var out []string
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, err
			}
			u, _ := strconv.Unquote(q)
			out = append(out, u)
			s = s[len(q):]
			continue
		}
		w, rest, _ := strings.Cut(s, " ")
		out = append(out, w)
		s = rest
	}
	return out, nil
}

func writeSetupTar(p string, pairs []string) error {
	if len(pairs)%2 != 0 {
		return fmt.Errorf("tar wants NAME TEXT pairs")
	}
	var buf bytes.Buffer
	var w io.Writer = &buf
	var gz *gzip.Writer
	if strings.HasSuffix(p, ".gz") {
		gz = gzip.NewWriter(&buf)
		w = gz
	}
	tw := tar.NewWriter(w)
	for i := 0; i < len(pairs); i += 2 {
		name, uid, gid := pairs[i], 0, 0
		if parts := strings.SplitN(name, ":", 3); len(parts) == 3 {
			uid, _ = strconv.Atoi(parts[0])
			gid, _ = strconv.Atoi(parts[1])
			name = parts[2]
		}
		hdr := &tar.Header{Name: name, Mode: 0o644, Uid: uid, Gid: gid, ModTime: time.Unix(1600000000, 0), Typeflag: tar.TypeReg, Size: int64(len(pairs[i+1]))}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, pairs[i+1]); err != nil && hdr.Size > 0 {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return err
		}
	}
	return os.WriteFile(p, buf.Bytes(), 0o644)
}

// conformanceBaseImage loads the suite's base image, "busybox": berthtest's
// busybox root filesystem with PATH set, as a docker archive.
func conformanceBaseImage(t *testing.T, rt *berth.Runtime) *conformanceBase {
	t.Helper()
	ctx := context.Background()
	layer := withRunNonce(t, berthtest.BusyboxTar(t))
	sum := sha256.Sum256(layer)
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      "2023-11-14T22:13:20Z",
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, "Cmd": []string{"sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []map[string]any{{"created": "2023-11-14T22:13:20Z", "created_by": "berthtest busybox"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if runtimeArch := runtime.GOARCH; runtimeArch != "amd64" {
		cfg = bytes.Replace(cfg, []byte(`"amd64"`), []byte(strconv.Quote(runtimeArch)), 1)
	}
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{"busybox:latest"}, "Layers": []string{"layer.tar"}}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range []struct {
		name string
		b    []byte
	}{{"manifest.json", manifest}, {cfgName, cfg}, {"layer.tar", layer}} {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.b)), ModTime: time.Unix(1700000000, 0)})
		tw.Write(m.b)
	}
	tw.Close()
	if _, err := rt.Load(ctx, &buf); err != nil {
		t.Fatalf("loading the base image: %v", err)
	}
	var saved bytes.Buffer
	if err := rt.Save(ctx, &saved, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	img, err := readSavedImage(bytes.NewReader(saved.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	// The case default-path builds from the same root filesystem imported
	// with no config at all, so no PATH.
	if _, err := rt.Import(ctx, bytes.NewReader(layer), "busybox-nopath:latest"); err != nil {
		t.Fatal(err)
	}
	return &conformanceBase{ref: "busybox:latest", archive: saved.Bytes(), rootfs: layer, img: img}
}

// withRunNonce adds /etc/conformance-run, different in every run, to a
// root filesystem tar: BuildKit matches its cache by layer content, and
// docker's cache outlives the test, so without it a rebuild could hit what
// an earlier run built and the cache cases would prove nothing.
func withRunNonce(t *testing.T, rootfs []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(rootfs))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 10) + "\n"
	if err := tw.WriteHeader(&tar.Header{Name: "etc/conformance-run", Mode: 0o644, Size: int64(len(nonce)), ModTime: time.Unix(1700000000, 0)}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tw, nonce)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readSavedImage reads the first image of a docker save archive (berth's
// or docker's): its config, history and merged file tree.
func readSavedImage(r io.Reader) (*conformanceImage, error) {
	members, err := savedMembers(r)
	if err != nil {
		return nil, err
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(members["manifest.json"], &manifest); err != nil || len(manifest) == 0 {
		return nil, fmt.Errorf("archive without a manifest.json: %v", err)
	}
	var cf struct {
		Author  string            `json:"author"`
		Config  conformanceConfig `json:"config"`
		History []rawHist         `json:"history"`
	}
	if err := json.Unmarshal(members[path.Clean(manifest[0].Config)], &cf); err != nil {
		return nil, fmt.Errorf("config %s: %w", manifest[0].Config, err)
	}
	img := &conformanceImage{config: cf.Config, history: cf.History, layers: len(manifest[0].Layers), tree: map[string]treeEntry{}}
	img.config.Author = cf.Author
	for _, l := range manifest[0].Layers {
		b, ok := members[path.Clean(l)]
		if !ok {
			return nil, fmt.Errorf("layer %s missing from the archive", l)
		}
		if err := applyLayerToTree(img.tree, b); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l, err)
		}
	}
	return img, nil
}

// savedMembers reads the regular files of a docker save archive.
func savedMembers(r io.Reader) (map[string][]byte, error) {
	members := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		members[path.Clean(hdr.Name)] = b
	}
	return members, nil
}

// applyLayerToTree applies a layer as overlayfs merges it: whiteouts and
// opaque directories first remove what lower layers had, then the entries
// are added.
func applyLayerToTree(tree map[string]treeEntry, layer []byte) error {
	var rd io.Reader = bytes.NewReader(layer)
	if len(layer) > 2 && layer[0] == 0x1f && layer[1] == 0x8b {
		gz, err := gzip.NewReader(rd)
		if err != nil {
			return err
		}
		rd = gz
	}
	type item struct {
		name string
		hdr  *tar.Header
		body []byte
	}
	var items []item
	tr := tar.NewReader(bufio.NewReader(rd))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + hdr.Name)
		var body []byte
		if hdr.Typeflag == tar.TypeReg {
			if body, err = io.ReadAll(tr); err != nil {
				return err
			}
		}
		items = append(items, item{name, hdr, body})
	}
	removeTree := func(p string, self bool) {
		for k := range tree {
			if (self && k == p) || strings.HasPrefix(k, strings.TrimSuffix(p, "/")+"/") {
				delete(tree, k)
			}
		}
	}
	for _, it := range items {
		base := path.Base(it.name)
		switch {
		case base == ".wh..wh..opq":
			removeTree(path.Dir(it.name), false)
		case strings.HasPrefix(base, ".wh."):
			removeTree(path.Join(path.Dir(it.name), strings.TrimPrefix(base, ".wh.")), true)
		}
	}
	for _, it := range items {
		base := path.Base(it.name)
		if strings.HasPrefix(base, ".wh.") || it.name == "/" {
			continue
		}
		h := it.hdr
		e := treeEntry{typ: h.Typeflag, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.typ = tar.TypeReg
			sum := sha256.Sum256(it.body)
			e.sum, e.size = hex.EncodeToString(sum[:]), int64(len(it.body))
			if len(it.body) <= 64 {
				e.content = slices.Clone(it.body)
				if e.content == nil {
					e.content = []byte{}
				}
			}
		case tar.TypeLink:
			// A hard link reads as the file it shares content with.
			target, ok := tree[path.Clean("/"+h.Linkname)]
			if !ok {
				return fmt.Errorf("hard link %s to missing %s", it.name, h.Linkname)
			}
			e = target
			e.mode, e.uid, e.gid = h.Mode&0o7777, h.Uid, h.Gid
		case tar.TypeSymlink:
			e.target, e.mode = h.Linkname, 0
		case tar.TypeChar, tar.TypeBlock:
			e.dev = fmt.Sprintf("%d,%d", h.Devmajor, h.Devminor)
		case tar.TypeDir:
		case tar.TypeFifo:
		default:
			continue
		}
		// A layer may leave out an entry's parents; extraction makes them
		// as root-owned 0755 directories.
		for d := path.Dir(it.name); d != "/"; d = path.Dir(d) {
			if _, ok := tree[d]; !ok {
				tree[d] = treeEntry{typ: tar.TypeDir, mode: 0o755}
			}
		}
		if old, ok := tree[it.name]; ok && old.typ == tar.TypeDir && e.typ != tar.TypeDir {
			removeTree(it.name, false)
		}
		tree[it.name] = e
	}
	return nil
}

// dockerBuilder builds cases with docker build for the comparison mode.
type dockerBuilder struct {
	bin string
}

func newDockerBuilder(t *testing.T, base *conformanceBase) *dockerBuilder {
	t.Helper()
	bin := os.Getenv("BERTH_DOCKER")
	if bin == "" {
		bin = "docker"
	}
	d := &dockerBuilder{bin: bin}
	if out, err := exec.Command(bin, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Fatalf("BERTH_COMPARE_DOCKER=1 needs a running dockerd (start it with: dockerd >/tmp/dockerd.log 2>&1 &): %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "load")
	cmd.Stdin = bytes.NewReader(base.archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker load of the base image: %v\n%s", err, out)
	}
	nopath := exec.Command(bin, "import", "-", "busybox-nopath:latest")
	nopath.Stdin = bytes.NewReader(base.rootfs)
	if out, err := nopath.CombinedOutput(); err != nil {
		t.Fatalf("docker import of busybox-nopath: %v\n%s", err, out)
	}
	return d
}

// build builds a case with docker and returns what want.json would say,
// and docker's history as it wrote it.
func (d *dockerBuilder) build(t *testing.T, dir string, in conformanceInput, wantErr *conformanceError, baseTree map[string]treeEntry, baseHist int) (conformanceWant, string) {
	t.Helper()
	work := t.TempDir()
	ctxDir := filepath.Join(work, "context")
	dockerfile := filepath.Join(work, "Dockerfile")
	httpURL := ""
	if in.HTTP {
		srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "http"))))
		t.Cleanup(srv.Close)
		httpURL = srv.URL
	}
	prepareConformanceContext(t, dir, ctxDir, dockerfile, in, httpURL)
	tag := "berth-conformance-" + strings.ToLower(filepath.Base(dir))
	t.Cleanup(func() { exec.Command(d.bin, "rmi", "-f", tag).Run() })
	out, err := d.run(ctxDir, dockerfile, tag, in, true)
	for i, rb := range in.Rebuilds {
		if err != nil {
			break
		}
		applySetup(t, ctxDir, rb.Setup)
		out, err = d.run(ctxDir, dockerfile, tag, in, rb.NoCache)
		if err == nil {
			checkCached(t, fmt.Sprintf("docker rebuild %d", i+1), rb, dockerCachedSteps(out))
		}
	}
	var got conformanceWant
	if err != nil {
		got.Error = &conformanceError{}
		for _, re := range []*regexp.Regexp{regexp.MustCompile(`line (\d+)`), regexp.MustCompile(`Dockerfile:(\d+)`)} {
			if m := re.FindStringSubmatch(out); m != nil {
				got.Error.Line, _ = strconv.Atoi(m[1])
				break
			}
		}
		got.Error.Contains = lastLines(out, 3)
		if wantErr != nil && containsFold(out, wantErr.Contains) {
			got.Error.Contains = wantErr.Contains
		}
		return got, ""
	}
	save := exec.Command(d.bin, "save", tag)
	var saved bytes.Buffer
	save.Stdout = &saved
	if err := save.Run(); err != nil {
		t.Fatalf("docker save: %v", err)
	}
	checkNoSecrets(t, "docker", saved.Bytes(), in.Secrets)
	img, err := readSavedImage(&saved)
	if err != nil {
		t.Fatal(err)
	}
	var hist []string
	for _, h := range img.history[min(baseHist, len(img.history)):] {
		hist = append(hist, fmt.Sprintf("%q empty=%v", h.CreatedBy, h.EmptyLayer))
	}
	return img.summary(baseTree, baseHist, in), "\n\t" + strings.Join(hist, "\n\t")
}

func (d *dockerBuilder) run(ctxDir, dockerfile, tag string, in conformanceInput, noCache bool) (string, error) {
	args := []string{"build", "--progress=plain", "-f", dockerfile, "-t", tag}
	if noCache {
		args = append(args, "--no-cache")
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range in.Args {
			if !yield(k) {
				return
			}
		}
	}) {
		args = append(args, "--build-arg", k+"="+in.Args[k])
	}
	if in.Target != "" {
		args = append(args, "--target", in.Target)
	}
	for _, id := range slices.Sorted(maps.Keys(in.Secrets)) {
		args = append(args, "--secret", "id="+id+",src="+secretPath(dockerfile, id))
	}
	cmd := exec.Command(d.bin, append(args, ctxDir)...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dockerCachedSteps reads BuildKit's plain progress: "#7 [2/4] COPY a /a"
// then, for a cache hit, "#7 CACHED".
func dockerCachedSteps(out string) map[string]bool {
	names := map[string]string{}
	cached := map[string]bool{}
	step := regexp.MustCompile(`^#(\d+) \[[^\]]*\] (.*)$`)
	hit := regexp.MustCompile(`^#(\d+) CACHED$`)
	for _, line := range strings.Split(out, "\n") {
		if m := step.FindStringSubmatch(line); m != nil {
			names[m[1]] = m[2]
			if _, ok := cached[m[2]]; !ok {
				cached[m[2]] = false
			}
		} else if m := hit.FindStringSubmatch(line); m != nil {
			if n, ok := names[m[1]]; ok {
				cached[n] = true
			}
		}
	}
	return cached
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// jsonDiff shows want and got as want.json would, line by line, with
// "-" for lines only in want and "+" for lines only in got; "" when they
// are equal.
func jsonDiff(want, got any) string {
	a, _ := json.MarshalIndent(want, "", "  ")
	b, _ := json.MarshalIndent(got, "", "  ")
	if bytes.Equal(a, b) {
		return ""
	}
	x, y := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	// lcs[i][j] is the length of the longest common subsequence of
	// x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			sb.WriteString("  " + x[i] + "\n")
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			sb.WriteString("+ " + y[j] + "\n")
			j++
		default:
			sb.WriteString("- " + x[i] + "\n")
			i++
		}
	}
	return sb.String()
}
