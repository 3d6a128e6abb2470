package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth"
)

// buildCommand is docker build: BuildKit's progress on stderr (plain lines,
// or a view redrawn in place on a terminal; nothing with -q) and the image
// ID.
func buildCommand(fs *flagSet) runFunc {
	var (
		tags, buildArgs, secrets, labels, addHosts, outputs []string
		cacheFrom, cacheTo                                  []string
		file, target, progress, network, iidfile            string
		noCache, quiet, pull                                bool
	)
	fs.Strings(&tags, "t", "tag", `Name and optionally a tag in the "name:tag" format`)
	fs.String(&file, "f", "file", "string", "", `Name of the Dockerfile (Default is "PATH/Dockerfile")`)
	fs.Strings(&buildArgs, "", "build-arg", "Set build-time variables")
	fs.String(&target, "", "target", "string", "", "Set the target build stage to build")
	fs.Bool(&noCache, "", "no-cache", "Do not use cache when building the image")
	fs.Bool(&quiet, "q", "quiet", "Suppress the build output and print image ID on success")
	fs.Strings(&secrets, "", "secret", `Secret to expose to the build (format: "id=mysecret[,src=/local/secret]")`)
	fs.String(&progress, "", "progress", "string", "auto", `Set type of progress output ("auto", "plain", "tty", "quiet")`)
	fs.Strings(&labels, "", "label", "Set metadata for an image")
	fs.String(&network, "", "network", "string", "default", `Set the networking mode for the RUN instructions during build ("default", "none", "host")`)
	fs.Strings(&addHosts, "", "add-host", "Add a custom host-to-IP mapping (host:ip)")
	fs.Strings(&outputs, "o", "output", `Output destination (format: "type=local,dest=path")`)
	fs.String(&iidfile, "", "iidfile", "string", "", "Write the image ID to the file")
	fs.Bool(&pull, "", "pull", "Always attempt to pull a newer version of the image")
	fs.Strings(&cacheFrom, "", "cache-from", `External cache sources (e.g., "user/app:cache", "type=local,src=path/to/dir")`)
	fs.Strings(&cacheTo, "", "cache-to", `Cache export destinations (e.g., "user/app:cache", "type=local,dest=path/to/dir")`)
	return func(ctx context.Context, c *cli, args []string) (retErr error) {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		if iidfile != "" {
			// docker's: a stale ID never outlives a failed build.
			if err := os.Remove(iidfile); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing the iidfile: %w", err)
			}
		}
		opts := []berth.BuildOption{berth.WithBuildTags(tags...)}
		contextDir, stdin := args[0], io.Reader(c.stdin)
		fi, err := os.Stat(contextDir)
		switch {
		case contextDir != "-" && err == nil && fi.IsDir():
			// docker's order: stdin, a directory that exists, then git,
			// then a URL ("github.com/me/app" may be a directory).
		case isGitURL(contextDir):
			return fmt.Errorf("unable to prepare context: %s: git repositories are not supported as contexts; clone it and build the directory", contextDir)
		case isHTTPURL(contextDir):
			// docker build URL: a context archive, or a lone Dockerfile,
			// downloaded.
			body, err := fetchContext(ctx, contextDir)
			if err != nil {
				return err
			}
			defer body.Close()
			in, isArchive, err := peekArchive(body)
			if err != nil {
				return fmt.Errorf("unable to prepare context: reading %s: %w", contextDir, err)
			}
			switch {
			case isArchive:
				opts = append(opts, berth.WithContextArchive(in))
			case file == "-":
				return fmt.Errorf("unable to prepare context: %s is not an archive, and the Dockerfile is on stdin", contextDir)
			default:
				// docker: the text is the Dockerfile, whatever -f says.
				b, err := io.ReadAll(io.LimitReader(in, maxRemoteDockerfile+1))
				if err != nil {
					return fmt.Errorf("unable to prepare context: reading %s: %w", contextDir, err)
				}
				if len(b) > maxRemoteDockerfile {
					return fmt.Errorf("unable to prepare context: the Dockerfile at %s is larger than %d bytes", contextDir, maxRemoteDockerfile)
				}
				file = ""
				opts = append(opts, berth.WithDockerfileContent(string(b)))
			}
			contextDir = ""
		case contextDir == "-":
			// docker build -: a context archive, or a lone Dockerfile, on
			// stdin.
			if file == "-" {
				return errors.New("invalid argument: can't use stdin for both build context and dockerfile")
			}
			in, isArchive, err := peekArchive(c.stdin)
			if err != nil {
				return fmt.Errorf("reading the build context from stdin: %w", err)
			}
			switch {
			case isArchive:
				opts = append(opts, berth.WithContextArchive(in))
			case file != "":
				return errors.New("ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles")
			default:
				file, stdin = "-", in
			}
			contextDir = ""
		}
		switch file {
		case "":
		case "-": // docker build -f -: the Dockerfile on stdin
			b, err := io.ReadAll(stdin)
			if err != nil {
				return fmt.Errorf("reading the Dockerfile from stdin: %w", err)
			}
			opts = append(opts, berth.WithDockerfileContent(string(b)))
		default: // relative to the working directory, as docker's -f
			if contextDir == "" {
				// docker: inside the archive, relative to its root.
				opts = append(opts, berth.WithDockerfile(file))
				break
			}
			abs, err := filepath.Abs(file)
			if err != nil {
				return err
			}
			opts = append(opts, berth.WithDockerfile(abs))
		}
		if len(labels) > 0 {
			m, err := parseLabels(labels)
			if err != nil {
				return err
			}
			opts = append(opts, berth.WithBuildLabels(m))
		}
		if network != "" {
			opts = append(opts, berth.WithBuildNetwork(network))
		}
		if len(addHosts) > 0 {
			opts = append(opts, berth.WithBuildExtraHosts(addHosts...))
		}
		toStdout := false
		switch len(outputs) {
		case 0:
		case 1:
			opt, stdout, closeOut, err := parseOutput(outputs[0], c.stdout)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := closeOut(); retErr == nil && cerr != nil {
					retErr = fmt.Errorf("writing the output: %w", cerr)
				}
			}()
			toStdout = stdout
			opts = append(opts, opt)
		default: // docker 20.10 takes one too
			return fmt.Errorf("invalid --output: %d given, one is supported", len(outputs))
		}
		if len(buildArgs) > 0 {
			m := map[string]string{}
			for _, kv := range buildArgs {
				k, v, hasValue := strings.Cut(kv, "=")
				if !hasValue {
					// docker: the value of the environment's variable, or
					// none at all (the ARG's default holds).
					if v, hasValue = os.LookupEnv(k); !hasValue {
						continue
					}
				}
				m[k] = v
			}
			opts = append(opts, berth.WithBuildArgs(m))
		}
		for _, s := range secrets {
			id, src, err := parseSecret(s)
			if err != nil {
				return err
			}
			opts = append(opts, berth.WithBuildSecret(id, src))
		}
		if target != "" {
			opts = append(opts, berth.WithTarget(target))
		}
		if noCache {
			opts = append(opts, berth.WithNoCache())
		}
		if pull {
			opts = append(opts, berth.WithBuildPull())
		}
		for _, s := range cacheFrom {
			o, err := parseCache("--cache-from", s)
			if err != nil {
				return err
			}
			opts = append(opts, o...)
		}
		for _, s := range cacheTo {
			o, err := parseCache("--cache-to", s)
			if err != nil {
				return err
			}
			opts = append(opts, o...)
		}
		var view buildView
		switch progress {
		case "auto":
			if isTerminal(c.stderr) {
				view = newTTYView(c.stderr)
			} else {
				view = &plainView{w: c.stderr}
			}
		case "tty":
			view = newTTYView(c.stderr)
		case "plain":
			view = &plainView{w: c.stderr}
		case "quiet":
			quiet = true
		default:
			return fmt.Errorf("invalid --progress %q: want auto, plain, tty or quiet", progress)
		}
		if !quiet {
			opts = append(opts, berth.WithBuildProgress(view.event))
		} else {
			// Quiet hides the steps, not what went wrong with a cache.
			opts = append(opts, berth.WithBuildProgress(func(ev berth.BuildEvent) {
				if ev.Warning != "" {
					printWarning(c.stderr, ev.Warning)
				}
			}))
		}
		img, err := rt.Build(ctx, contextDir, opts...)
		if err == nil && iidfile != "" {
			if werr := os.WriteFile(iidfile, []byte(img.ID), 0o666); werr != nil {
				err = fmt.Errorf("writing the iidfile: %w", werr)
			}
		}
		if quiet {
			if err == nil && !toStdout {
				fmt.Fprintln(c.stdout, img.ID)
			}
			return err
		}
		view.done(img, tags, err)
		return err
	}
}

// parseOutput reads docker build's --output: a directory, "-" (a tar on
// stdout), or type=local,dest=DIR and type=tar,dest=FILE (dest=- is
// stdout). stdout reports an output to stdout; closeOut closes a file the
// output is written to.
func parseOutput(s string, stdout io.Writer) (opt berth.BuildOption, toStdout bool, closeOut func() error, err error) {
	typ, dest := "", ""
	switch {
	case s == "-":
		typ, dest = "tar", "-"
	case !strings.Contains(s, "="):
		typ, dest = "local", s
	default:
		// CSV, as docker reads it: a field may be quoted.
		fields, err := csv.NewReader(strings.NewReader(s)).Read()
		if err != nil {
			return nil, false, nil, fmt.Errorf("invalid --output %q: %w", s, err)
		}
		for _, field := range fields {
			k, v, _ := strings.Cut(field, "=")
			switch strings.ToLower(k) {
			case "type":
				typ = v
			case "dest":
				dest = v
			default:
				return nil, false, nil, fmt.Errorf("invalid --output %q: unknown key %q", s, k)
			}
		}
	}
	none := func() error { return nil }
	switch {
	case dest == "":
		return nil, false, nil, fmt.Errorf("invalid --output %q: dest is required", s)
	case typ == "local" && dest == "-":
		return nil, false, nil, fmt.Errorf("invalid --output %q: a local output needs a directory", s)
	case typ == "local":
		return berth.WithBuildOutputDir(dest), false, none, nil
	case typ == "tar" && dest == "-":
		if isTerminal(stdout) {
			return nil, false, nil, errors.New("refusing to write output to console")
		}
		return berth.WithBuildOutputTar(stdout), true, none, nil
	case typ == "tar":
		f, err := os.Create(dest)
		if err != nil {
			return nil, false, nil, err
		}
		return berth.WithBuildOutputTar(f), false, f.Close, nil
	default:
		return nil, false, nil, fmt.Errorf("invalid --output %q: type %q is not supported (local, tar)", s, typ)
	}
}

// cacheTuning are the keys of BuildKit's cache exporters that tune how
// BuildKit writes its own format (media types, compression): berth's
// format has one way, so they are taken and have no effect.
var cacheTuning = map[string]bool{"oci-mediatypes": true, "image-manifest": true, "compression": true, "compression-level": true, "force-compression": true}

// parseCache reads docker build's --cache-from or --cache-to (flag):
// registry references, comma-separated (none for an empty value, which
// docker ignores too), or type=local with src= (from) or dest= (to), or
// type=registry with ref=; an export may add mode=min or mode=max (an
// import takes a mode and ignores it, as BuildKit does, so that one
// string can serve both flags).
func parseCache(flag, s string) ([]berth.BuildOption, error) {
	export := flag == "--cache-to"
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("invalid %s %q: %s", flag, s, fmt.Sprintf(format, a...))
	}
	fields, err := csv.NewReader(strings.NewReader(s)).Read()
	if err != nil && s != "" {
		return nil, invalid("%v", err)
	}
	registry := func(ref string, mode berth.CacheMode) berth.BuildOption {
		if export {
			return berth.WithCacheToRegistry(ref, mode)
		}
		return berth.WithCacheFromRegistry(ref)
	}
	if !strings.Contains(s, "=") {
		var opts []berth.BuildOption
		for _, ref := range fields {
			if ref = strings.TrimSpace(ref); ref != "" {
				opts = append(opts, registry(ref, berth.CacheModeMin))
			}
		}
		return opts, nil
	}
	typ, dir, ref, mode := "", "", "", berth.CacheModeMin
	for _, field := range fields {
		k, v, _ := strings.Cut(field, "=")
		switch k = strings.ToLower(k); {
		case k == "type":
			typ = v
		case k == "src" && !export, k == "dest" && export:
			dir = v
		case k == "ref":
			ref = v
		case k == "mode":
			if v != "min" && v != "max" {
				return nil, invalid("mode %q: want min or max", v)
			}
			mode = berth.CacheMode(v)
		case cacheTuning[k]:
		default:
			return nil, invalid("unknown key %q", k)
		}
	}
	one := func(o berth.BuildOption) ([]berth.BuildOption, error) { return []berth.BuildOption{o}, nil }
	switch {
	case typ == "local" && dir != "" && ref == "":
		if export {
			return one(berth.WithCacheToDir(dir, mode))
		}
		return one(berth.WithCacheFromDir(dir))
	case typ == "local":
		return nil, invalid("type=local needs %s= and no ref=", map[bool]string{true: "dest", false: "src"}[export])
	case typ == "registry" && ref != "" && dir == "":
		return one(registry(ref, mode))
	case typ == "registry":
		return nil, invalid("type=registry needs ref= and nothing else")
	case typ == "":
		return nil, invalid("type= is required")
	default:
		return nil, invalid("type %q is not supported (local, registry)", typ)
	}
}

// maxRemoteDockerfile bounds a Dockerfile downloaded as a build's context.
const maxRemoteDockerfile = 16 << 20

func isHTTPURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// isGitURL is docker's test for a context that names a git repository.
func isGitURL(s string) bool {
	if isHTTPURL(s) {
		u, _, _ := strings.Cut(s, "#") // docker's test: .git(#.+)?$
		return strings.HasSuffix(u, ".git")
	}
	for _, p := range []string{"git://", "git@", "github.com/"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// fetchContext starts the download of a remote build context, failing on
// an answer of 400 or above (docker's rule) with its status and the
// start of its body.
func fetchContext(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("unable to prepare context: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("unable to prepare context: unable to download remote context %s: %w", url, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("unable to prepare context: unable to download remote context %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	return resp.Body, nil
}

// peekArchive tells a tar stream, plain or compressed, from a Dockerfile at
// the start of r, as docker build - does, and returns a reader of the
// whole input.
func peekArchive(r io.Reader) (io.Reader, bool, error) {
	br := bufio.NewReaderSize(r, 1024)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF {
		return nil, false, err
	}
	for _, magic := range [][]byte{{0x1f, 0x8b}, []byte("BZh"), {0xfd, '7', 'z', 'X', 'Z', 0}, {0x28, 0xb5, 0x2f, 0xfd}} {
		if bytes.HasPrefix(head, magic) {
			return br, true, nil
		}
	}
	_, terr := tar.NewReader(bytes.NewReader(head)).Next()
	return br, terr == nil, nil
}

// parseSecret reads docker build's --secret value: id=ID,src=PATH (source=
// also; type=file is the only type). Docker also takes a secret from an
// environment variable when src is missing; berth needs src.
func parseSecret(s string) (id, src string, err error) {
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return "", "", fmt.Errorf("invalid --secret %q: fields are key=value", s)
		}
		switch strings.ToLower(k) {
		case "id":
			id = v
		case "src", "source":
			src = v
		case "type":
			if v != "file" {
				return "", "", fmt.Errorf("invalid --secret %q: only type=file is supported", s)
			}
		default:
			return "", "", fmt.Errorf("invalid --secret %q: unknown key %q", s, k)
		}
	}
	if id == "" || src == "" {
		return "", "", fmt.Errorf("invalid --secret %q: want id=ID,src=PATH", s)
	}
	return id, src, nil
}

// printWarning prints a build's warning as BuildKit's client does.
func printWarning(w io.Writer, msg string) { fmt.Fprintf(w, "WARNING: %s\n", msg) }

// buildView shows a build's progress events.
type buildView interface {
	event(ev berth.BuildEvent)
	done(img *berth.Image, tags []string, err error)
}

// plainView prints BuildKit's plain progress: a line per step, CACHED,
// and each line a step prints.
type plainView struct {
	w    io.Writer
	last int
}

func (v *plainView) event(ev berth.BuildEvent) {
	v.last = max(v.last, ev.Step)
	switch {
	case ev.Warning != "":
		printWarning(v.w, ev.Warning)
	case ev.Output != "":
		fmt.Fprintf(v.w, "#%d %s\n", ev.Step, ev.Output)
	case ev.Cached:
		fmt.Fprintf(v.w, "#%d [%s] %s\n#%d CACHED\n", ev.Step, ev.Stage, ev.Instruction, ev.Step)
	default:
		fmt.Fprintf(v.w, "#%d [%s] %s\n", ev.Step, ev.Stage, ev.Instruction)
	}
}

func (v *plainView) done(img *berth.Image, tags []string, err error) {
	if err != nil {
		return
	}
	fmt.Fprintf(v.w, "#%d writing image %s done\n", v.last+1, img.ID)
	for _, t := range tags {
		fmt.Fprintf(v.w, "naming to %s done\n", t)
	}
}

// ttyView is BuildKit's terminal view, compacted: a header with the
// elapsed time, a line per step with its own time, and the last lines of
// the steps still running, redrawn in place (ANSI cursor movement).
type ttyView struct {
	w      io.Writer
	start  time.Time
	now    func() time.Time
	steps  []*ttyStep
	byNum  map[int]*ttyStep
	drawn  int // lines drawn last time, which the next redraw overwrites
	lastAt time.Time
	warns  []string // printed below the view at the end
}

type ttyStep struct {
	num         int
	stage, text string
	cached      bool
	start, end  time.Time
	output      []string
}

// ttyOutputLines is how many lines of a running step's output the view
// shows.
const ttyOutputLines = 6

func newTTYView(w io.Writer) *ttyView {
	return &ttyView{w: w, start: time.Now(), now: time.Now, byNum: map[int]*ttyStep{}}
}

func (v *ttyView) event(ev berth.BuildEvent) {
	if ev.Warning != "" {
		v.warns = append(v.warns, ev.Warning)
		return
	}
	now := v.now()
	st, ok := v.byNum[ev.Step]
	if !ok {
		// A new step ends the one its stage ran before.
		for _, s := range v.steps {
			if s.stage == ev.Stage && s.end.IsZero() {
				s.end = now
			}
		}
		st = &ttyStep{num: ev.Step, stage: ev.Stage, text: ev.Instruction, start: now}
		v.steps = append(v.steps, st)
		v.byNum[ev.Step] = st
	}
	if ev.Cached {
		st.cached, st.end = true, now
	}
	if ev.Output != "" {
		st.output = append(st.output, ev.Output)
		if len(st.output) > ttyOutputLines {
			st.output = st.output[len(st.output)-ttyOutputLines:]
		}
		// Output may come fast: redraw at most every 50 ms for it.
		if now.Sub(v.lastAt) < 50*time.Millisecond {
			return
		}
	}
	v.draw(false)
}

func (v *ttyView) done(img *berth.Image, tags []string, err error) {
	now := v.now()
	for _, s := range v.steps {
		if s.end.IsZero() {
			s.end = now
		}
	}
	v.draw(err == nil)
	for _, w := range v.warns {
		printWarning(v.w, w)
	}
	if err != nil {
		return
	}
	fmt.Fprintf(v.w, " => writing image %s\n", img.ID)
	for _, t := range tags {
		fmt.Fprintf(v.w, " => naming to %s\n", t)
	}
}

func (v *ttyView) draw(final bool) {
	now := v.now()
	v.lastAt = now
	var lines []string
	finished := 0
	for _, s := range v.steps {
		if !s.end.IsZero() {
			finished++
		}
	}
	state := "Building"
	if final {
		state = "Built"
	}
	lines = append(lines, fmt.Sprintf("[+] %s %.1fs (%d/%d)", state, now.Sub(v.start).Seconds(), finished, len(v.steps)))
	for _, s := range v.steps {
		prefix := " => "
		if s.cached {
			prefix += "CACHED "
		}
		end := s.end
		if end.IsZero() {
			end = now
		}
		lines = append(lines, fmt.Sprintf("%s[%s] %s  %.1fs", prefix, s.stage, s.text, end.Sub(s.start).Seconds()))
		if s.end.IsZero() {
			for _, o := range s.output {
				lines = append(lines, " => => "+o)
			}
		}
	}
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	for _, l := range lines {
		b.WriteString("\x1b[2K" + l + "\n")
	}
	// Lines left over from a taller drawing are cleared.
	for i := len(lines); i < v.drawn; i++ {
		b.WriteString("\x1b[2K\n")
	}
	if extra := v.drawn - len(lines); extra > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", extra)
	}
	io.WriteString(v.w, b.String())
	v.drawn = len(lines)
}
