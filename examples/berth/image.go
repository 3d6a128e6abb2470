package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth"
)

// image finds an image by reference or ID, with docker's message when
// there is none.
func (c *cli) image(ctx context.Context, ref string) (*berth.Image, error) {
	rt, err := c.runtime()
	if err != nil {
		return nil, err
	}
	img, err := rt.Image(ctx, ref)
	if err != nil {
		return nil, noSuchImage(ref, err)
	}
	return img, nil
}

// noSuchImage is docker's message for an image that is not in the store;
// other errors pass through.
func noSuchImage(name string, err error) error {
	if errors.Is(err, berth.ErrNotFound) {
		return fmt.Errorf("No such image: %s", name)
	}
	return err
}

// pullCommand is docker pull.
func pullCommand(fs *flagSet) runFunc {
	var platform string
	var quiet bool
	fs.String(&platform, "", "platform", "string", "", "Set platform if the registry has several (os/arch[/variant])")
	fs.Bool(&quiet, "q", "quiet", "Suppress verbose output")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		var opts []berth.PullOption
		if platform != "" {
			opts = append(opts, berth.WithPlatform(platform))
		}
		if _, err := pullImage(ctx, rt, c.stdout, args[0], quiet, opts...); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, parseReference(args[0]))
		return nil
	}
}

// pullImage pulls name and, unless quiet, reports on w as docker pull
// does: the repository, a status line per layer, the digest and whether
// the image changed. docker pull shows this on stdout, docker run on stderr.
func pullImage(ctx context.Context, rt *berth.Runtime, w io.Writer, name string, quiet bool, opts ...berth.PullOption) (*berth.Image, error) {
	ref := parseReference(name)
	var before string
	if old, err := rt.Image(ctx, ref.String()); err == nil {
		before = old.Digest
	}
	if !quiet {
		if ref.defaultTag {
			fmt.Fprintf(w, "Using default tag: %s\n", ref.tag)
		}
		fmt.Fprintf(w, "%s: Pulling from %s\n", ref.tagOrDigest(), ref.path)
		prog := &pullProgress{w: newStatusWriter(w)}
		opts = append(opts, berth.WithProgress(prog.report))
	}
	img, err := rt.Pull(ctx, name, opts...)
	if err != nil {
		return nil, err
	}
	if !quiet {
		fmt.Fprintf(w, "Digest: %s\n", img.Digest)
		if before == img.Digest {
			fmt.Fprintf(w, "Status: Image is up to date for %s\n", ref.familiar())
		} else {
			fmt.Fprintf(w, "Status: Downloaded newer image for %s\n", ref.familiar())
		}
	}
	return img, nil
}

// pushCommand is docker push.
func pushCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		ref := parseReference(args[0])
		img, err := rt.Image(ctx, args[0])
		if errors.Is(err, berth.ErrNotFound) {
			return fmt.Errorf("An image does not exist locally with the tag: %s", ref.familiarRepository())
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "The push refers to repository [%s]\n", ref.familiarRepository())
		if err := rt.Push(ctx, img, args[0]); err != nil {
			return err
		}
		// berth reports push progress for the whole image, not per layer,
		// so the per-layer lines come once the push succeeded; docker
		// lists layers top first, by diff ID.
		for _, l := range slices.Backward(img.Layers) {
			fmt.Fprintf(c.stdout, "%s: Pushed\n", shortDigest(l.DiffID))
		}
		fmt.Fprintf(c.stdout, "%s: digest: %s size: %d\n", ref.tagOrDigest(), img.Digest, len(img.RawManifest()))
		return nil
	}
}

// imageRow is one line of docker images, and the object its --format
// template sees.
type imageRow struct {
	Repository, Tag, ID, Digest string
	CreatedSince, CreatedAt     string
	Size                        string
}

// imageHeader is what a "table" --format prints as the header line.
var imageHeader = imageRow{
	Repository: "REPOSITORY", Tag: "TAG", ID: "IMAGE ID", Digest: "DIGEST",
	CreatedSince: "CREATED", CreatedAt: "CREATED AT", Size: "SIZE",
}

const (
	defaultImagesFormat       = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
	defaultImagesDigestFormat = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
)

// imagesCommand is docker images.
func imagesCommand(fs *flagSet) runFunc {
	var quiet, noTrunc, all, digests bool
	var format string
	var filterArgs []string
	fs.Bool(&all, "a", "all", "Show all images (berth keeps no intermediate images, so this changes nothing)")
	fs.Bool(&digests, "", "digests", "Show digests")
	fs.Strings(&filterArgs, "f", "filter", "Filter output based on conditions provided (dangling, label, before, since, reference)")
	fs.String(&format, "", "format", "string", "", "Pretty-print images using a Go template")
	fs.Bool(&noTrunc, "", "no-trunc", "Don't truncate output")
	fs.Bool(&quiet, "q", "quiet", "Only show image IDs")
	name := fs.Name() // "berth images" or "berth image ls", for the help hint of a malformed filter
	return func(ctx context.Context, c *cli, args []string) error {
		format = tableFormat(format)
		filters, err := parseFilters(name, filterArgs, "dangling", "label", "before", "since", "reference")
		if err != nil {
			return err
		}
		if len(args) == 1 { // docker's client adds the argument as a reference filter
			filters["reference"] = append(filters["reference"], args[0])
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		f, err := newImageFilter(ctx, rt, filters)
		if err != nil {
			return err
		}
		images, err := rt.Images(ctx)
		if err != nil {
			return err
		}
		// docker fills the digest of a tagged row only when it is shown.
		needDigest := digests || strings.Contains(format, "{{.Digest}}")
		rows, err := imageRows(images, f, imageRowOptions{noTrunc: noTrunc, needDigest: needDigest, digests: digests}, time.Now())
		if err != nil {
			return err
		}
		switch {
		case format == "" && quiet: // a --format wins over -q, as in docker
			// berth prints an image's ID once, where docker repeats it
			// for every tag the listing shows.
			seen := map[string]bool{}
			for _, r := range rows {
				if !seen[r.ID] {
					seen[r.ID] = true
					fmt.Fprintln(c.stdout, r.ID)
				}
			}
			return nil
		case format == "" && digests:
			format = defaultImagesDigestFormat
		case format == "":
			format = defaultImagesFormat
		case digests && strings.HasPrefix(format, "table") && !strings.Contains(format, "{{.Digest}}"):
			format += "\t{{.Digest}}" // docker adds the column to a table that lacks it
		}
		return printRows(c.stdout, format, imageHeader, rows)
	}
}

// imageFilter is images' --filter, resolved: docker's dangling, label,
// before, since and reference keys (a REPOSITORY[:TAG] argument is one
// more reference).
type imageFilter struct {
	dangling      string // "true", "false", or "" when not filtered
	before, since []time.Time
	labels        []string
	references    []string
}

// newImageFilter checks filters as docker's daemon does and looks up the
// images before= and since= name.
func newImageFilter(ctx context.Context, rt *berth.Runtime, filters filterArgs) (*imageFilter, error) {
	f := &imageFilter{labels: filters["label"], references: filters["reference"]}
	var err error
	if f.dangling, err = danglingFilter(filters["dangling"], []string{"true"}, []string{"false"}); err != nil {
		return nil, err
	}
	for _, key := range []string{"before", "since"} {
		for _, v := range filters[key] {
			img, err := rt.Image(ctx, v)
			if err != nil {
				return nil, noSuchImage(normalizedImageName(v), err)
			}
			if key == "before" {
				f.before = append(f.before, img.Created)
			} else {
				f.since = append(f.since, img.Created)
			}
		}
	}
	return f, nil
}

// normalizedImageName is how docker's daemon names an image it did not
// find: an ID as given, a reference familiar with its tag ("x:latest").
func normalizedImageName(s string) string {
	if strings.HasPrefix(s, "sha256:") {
		return s
	}
	return parseReference(s).familiar()
}

// keep reports whether img passes the filters on the image itself:
// created strictly before (since: after) one of the images named, and
// carrying every label= (docker's rule for labels: all must match).
func (f *imageFilter) keep(img *berth.Image) bool {
	if len(f.before) > 0 && !slices.ContainsFunc(f.before, img.Created.Before) {
		return false
	}
	if len(f.since) > 0 && !slices.ContainsFunc(f.since, img.Created.After) {
		return false
	}
	return matchLabels(f.labels, img.Config.Labels)
}

// matchingRefs are the references among refs that a reference= pattern
// matches (all of them without one). A pattern is a path.Match pattern
// tried on the familiar reference ("busybox:latest", "repo@sha256:…") and
// then on its repository ("busybox"), as docker's reference.FamiliarMatch.
func (f *imageFilter) matchingRefs(refs []string) ([]string, error) {
	if len(f.references) == 0 {
		return refs, nil
	}
	var out []string
	for _, ref := range refs {
		repo, _, _ := splitRepoTag(ref)
		for _, pattern := range f.references {
			ok, err := path.Match(pattern, ref)
			if err != nil {
				return nil, err // docker's "syntax error in pattern"
			}
			if !ok {
				ok, _ = path.Match(pattern, repo)
			}
			if ok {
				out = append(out, ref)
				break
			}
		}
	}
	return out, nil
}

// imageRowOptions say how imageRows shows images: full IDs, the digest
// of tagged rows (needDigest: --digests or a {{.Digest}} template), and a
// row per digest of a repository the image has no tag in (--digests).
type imageRowOptions struct {
	noTrunc, needDigest, digests bool
}

// imageRows makes the rows of docker images that pass f, as docker's
// daemon and client make them: a row per tag (per tag and digest of its
// repository when the digest is shown), a "repo <none>" row for a
// repository the image has only digests in, and one "<none> <none>" row
// for an image with no reference. A reference filter keeps the matching
// references only, and drops an image left with none; dangling=true keeps
// the images without a tag, dangling=false drops those without any
// reference.
func imageRows(images []*berth.Image, f *imageFilter, opts imageRowOptions, now time.Time) ([]imageRow, error) {
	var rows []imageRow
	for _, img := range images {
		if !f.keep(img) {
			continue
		}
		tags, err := f.matchingRefs(img.RepoTags)
		if err != nil {
			return nil, err
		}
		digestRefs, err := f.matchingRefs(img.RepoDigests)
		if err != nil {
			return nil, err
		}
		if f.dangling == "true" && len(tags) > 0 {
			continue
		}
		id := img.ShortID()
		if opts.noTrunc {
			id = img.ID
		}
		base := imageRow{
			ID:           id,
			CreatedSince: createdSince(img.Created, now),
			CreatedAt:    img.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
			Size:         humanSize(img.Size),
		}
		row := func(repo, tag, digest string) {
			r := base
			r.Repository, r.Tag, r.Digest = repo, tag, digest
			rows = append(rows, r)
		}
		if len(tags) == 0 && len(digestRefs) == 0 {
			if f.dangling == "false" || len(f.references) > 0 {
				continue
			}
			row("<none>", "<none>", "<none>")
			continue
		}
		var repos []string // in the order of their first tag
		tagsOf, digestsOf := map[string][]string{}, map[string][]string{}
		for _, t := range tags {
			repo, tag, _ := splitRepoTag(t)
			if _, ok := tagsOf[repo]; !ok {
				repos = append(repos, repo)
			}
			tagsOf[repo] = append(tagsOf[repo], tag)
		}
		for _, d := range digestRefs {
			repo, _, digest := splitRepoTag(d)
			digestsOf[repo] = append(digestsOf[repo], digest)
		}
		for _, repo := range repos {
			digests := digestsOf[repo]
			delete(digestsOf, repo)
			if !opts.needDigest {
				digests = nil
			}
			for _, tag := range tagsOf[repo] {
				if len(digests) == 0 {
					row(repo, tag, "<none>")
				}
				for _, d := range digests {
					row(repo, tag, d)
				}
			}
		}
		for _, repo := range sortedKeys(digestsOf) {
			if !opts.digests {
				row(repo, "<none>", "") // docker's, digest and all
				continue
			}
			for _, d := range digestsOf[repo] {
				row(repo, "<none>", d)
			}
		}
	}
	return rows, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// printRows prints rows through a docker --format template; a "table"
// template gets a header line and aligned columns.
func printRows[T any](w io.Writer, format string, header T, rows []T) error {
	table := false
	if rest, ok := strings.CutPrefix(format, "table"); ok {
		table, format = true, strings.TrimLeft(rest, " ")
	}
	// docker's --format turns the two characters \t and \n into a tab and
	// a newline (inspect's does not).
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := parseTemplate(format + "\n")
	if err != nil { // 1, as docker ps and images exit (64 is inspect's)
		return &statusError{code: exitFailure, msg: "Template parsing error: " + err.Error()}
	}
	out := w
	tw := newTable(w)
	if table {
		out = tw
		if err := tmpl.Execute(out, header); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if err := tmpl.Execute(out, r); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// historyRow is one line of docker history.
type historyRow struct {
	ID, CreatedSince, CreatedAt, CreatedBy, Size, Comment string
}

var historyHeader = historyRow{ID: "IMAGE", CreatedSince: "CREATED", CreatedAt: "CREATED AT", CreatedBy: "CREATED BY", Size: "SIZE", Comment: "COMMENT"}

const defaultHistoryFormat = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"

// historyCommand is docker history: an image's history, newest first,
// each entry with the size of the layer it made ("0B" for none). Only
// the newest names the image: berth keeps no image per step, so the
// others are "<missing>", as docker shows an image built by BuildKit or
// pulled.
func historyCommand(fs *flagSet) runFunc {
	var quiet, noTrunc bool
	var format string
	fs.String(&format, "", "format", "string", "", "Pretty-print history using a Go template")
	fs.Bool(&noTrunc, "", "no-trunc", "Don't truncate output")
	fs.Bool(&quiet, "q", "quiet", "Only show image IDs")
	return func(ctx context.Context, c *cli, args []string) error {
		format = tableFormat(format)
		img, err := c.image(ctx, args[0])
		if err != nil {
			return err
		}
		rows := historyRows(img, noTrunc, time.Now())
		if quiet && format == "" { // a --format wins over -q, as in docker
			for _, r := range rows {
				fmt.Fprintln(c.stdout, r.ID)
			}
			return nil
		}
		return printRows(c.stdout, cmp.Or(format, defaultHistoryFormat), historyHeader, rows)
	}
}

// historyRows are img's history entries, newest first, each non-empty one
// with its layer's size.
func historyRows(img *berth.Image, noTrunc bool, now time.Time) []historyRow {
	rows := make([]historyRow, len(img.History))
	layer := 0
	for i, h := range img.History {
		var size int64
		if !h.EmptyLayer && layer < len(img.Layers) {
			l := img.Layers[layer]
			size = cmp.Or(l.UncompressedSize, l.Size)
			layer++
		}
		by := strings.ReplaceAll(h.CreatedBy, "\t", " ")
		if !noTrunc {
			by = ellipsis(by, 45)
		}
		rows[len(rows)-1-i] = historyRow{
			ID: "<missing>", CreatedSince: createdSince(h.Created, now), CreatedAt: h.Created.Local().Format(time.RFC3339),
			CreatedBy: by, Size: humanSize(size), Comment: h.Comment,
		}
	}
	if len(rows) > 0 {
		rows[0].ID = img.ShortID()
		if noTrunc {
			rows[0].ID = img.ID
		}
	}
	return rows
}

// tagCommand is docker tag.
func tagCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		img, err := c.image(ctx, args[0])
		if err != nil {
			return err
		}
		rt, _ := c.runtime() // c.image opened it
		return rt.Tag(ctx, img, args[1])
	}
}

// rmiCommand is docker rmi. Like docker it goes on past an image that
// fails, and exits 1 if any did; with -f an image that does not exist is
// reported but is no failure.
func rmiCommand(fs *flagSet) runFunc {
	var force bool
	fs.Bool(&force, "f", "force", "Force removal of the image")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		var opts []berth.RemoveImageOption
		if force {
			opts = append(opts, berth.WithForceRemove())
		}
		var errs []string
		failed := false
		for _, name := range args {
			if err := removeImage(ctx, c.stdout, rt, name, opts); err != nil {
				if !errors.Is(err, berth.ErrNotFound) || !force {
					failed = true
				}
				errs = append(errs, "Error: "+noSuchImage(name, err).Error())
			}
		}
		if len(errs) == 0 {
			return nil
		}
		msg := strings.Join(errs, "\n")
		if !failed {
			fmt.Fprintln(c.stderr, msg)
			return nil
		}
		return &statusError{code: exitFailure, msg: msg}
	}
}

// removeImage removes one image and prints what it untagged and deleted.
// berth does not say whether the content went too, so the image ID is
// looked up again: when nothing resolves it any more, it was deleted.
func removeImage(ctx context.Context, w io.Writer, rt *berth.Runtime, name string, opts []berth.RemoveImageOption) error {
	img, err := rt.Image(ctx, name)
	if err != nil {
		return err
	}
	untagged, err := rt.RemoveImage(ctx, name, opts...)
	for _, u := range untagged {
		fmt.Fprintf(w, "Untagged: %s\n", u)
	}
	if err != nil {
		return err
	}
	if _, err := rt.Image(ctx, img.ID); errors.Is(err, berth.ErrNotFound) {
		fmt.Fprintf(w, "Deleted: %s\n", img.ID)
	}
	return nil
}

// imageInspect is the object docker image inspect prints, with the fields
// berth knows.
// ID is docker's {{.ID}}, beside the JSON's {{.Id}}.
func (i imageInspect) ID() string { return i.Id }

type imageInspect struct {
	Id            string
	RepoTags      []string
	RepoDigests   []string
	Parent        string
	Comment       string
	Created       string
	DockerVersion string
	Author        string
	Config        containerConfig
	Architecture  string
	Variant       string `json:",omitempty"`
	Os            string
	Size          int64
	VirtualSize   int64
	RootFS        rootFS
}

type rootFS struct {
	Type   string
	Layers []string
}

// containerConfig is docker's container config as image inspect shows it:
// the fields scripts read are there even when empty (null).
type containerConfig struct {
	Hostname     string
	Domainname   string
	User         string
	MacAddress   string `json:",omitempty"` // a container's --mac-address
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Healthcheck  *berth.HealthConfig `json:",omitempty"`
	ArgsEscaped  bool                `json:",omitempty"`
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
	StopSignal   string   `json:",omitempty"`
	Shell        []string `json:",omitempty"`
}

// newImageInspect shapes img as docker image inspect does.
func newImageInspect(img *berth.Image) imageInspect {
	// Fields of the image config that berth.Image does not carry.
	var raw struct {
		Comment       string `json:"comment"`
		DockerVersion string `json:"docker_version"`
		Parent        string `json:"parent"`
	}
	_ = json.Unmarshal(img.RawConfig(), &raw) // berth validated the config; missing fields stay empty

	out := imageInspect{
		Id:            img.ID,
		RepoTags:      []string{},
		RepoDigests:   []string{},
		Parent:        raw.Parent,
		Comment:       raw.Comment,
		Created:       img.Created.UTC().Format(time.RFC3339Nano),
		DockerVersion: raw.DockerVersion,
		Author:        img.Author,
		Architecture:  img.Architecture,
		Variant:       img.Variant,
		Os:            img.OS,
		Size:          img.Size,
		VirtualSize:   img.Size,
		RootFS:        rootFS{Type: "layers", Layers: []string{}},
	}
	for _, name := range img.RepoTags {
		if strings.Contains(name, "@") {
			out.RepoDigests = append(out.RepoDigests, name)
		} else {
			out.RepoTags = append(out.RepoTags, name)
		}
	}
	for _, l := range img.Layers {
		out.RootFS.Layers = append(out.RootFS.Layers, l.DiffID)
	}
	cfg := img.Config
	out.Config = containerConfig{
		User: cfg.User, ExposedPorts: cfg.ExposedPorts, Env: cfg.Env, Cmd: cfg.Cmd,
		Healthcheck: cfg.Healthcheck, ArgsEscaped: cfg.ArgsEscaped, Volumes: cfg.Volumes,
		WorkingDir: cfg.WorkingDir, Entrypoint: cfg.Entrypoint, OnBuild: cfg.OnBuild,
		Labels: cfg.Labels, StopSignal: cfg.StopSignal, Shell: cfg.Shell,
	}
	return out
}

// inspectCommand is docker inspect. Like docker it looks a name up as a
// container first, then as an image, unless --type says which; it prints
// what it found, then an error line per name it did not find, and exits 1
// if there was any; a template that does not parse exits 64.
func inspectCommand(fs *flagSet) runFunc {
	var kind, format string
	var size bool
	fs.String(&format, "f", "format", "string", "", "Format the output using the given Go template")
	fs.Bool(&size, "s", "size", "Display total file sizes (always shown for images)")
	fs.String(&kind, "", "type", "string", "", "Return JSON for specified type (container|image|network|volume)")
	return func(ctx context.Context, c *cli, args []string) error {
		notFound := "No such object"
		switch kind {
		case "":
		case "image", "container", "network", "volume":
			notFound = "No such " + kind
		default:
			return fmt.Errorf("%q is not a valid value for --type", kind)
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		var found []any
		var errs []string
		for _, name := range args {
			obj, err := inspectObject(ctx, rt, kind, name)
			switch {
			case errors.Is(err, berth.ErrNotFound):
				errs = append(errs, fmt.Sprintf("Error: %s: %s", notFound, name))
			case err != nil:
				errs = append(errs, "Error: "+err.Error())
			default:
				found = append(found, obj)
			}
		}
		if err := printInspect(c.stdout, format, found); err != nil {
			return err
		}
		return failures(errs)
	}
}

// inspectObject finds name as an object of kind ("container", "image",
// "network", "volume"), or, when kind is empty, as the first of them, in
// that order, as docker's inspect looks.
func inspectObject(ctx context.Context, rt *berth.Runtime, kind, name string) (any, error) {
	lookups := []struct {
		kind string
		find func() (any, error)
	}{
		{"container", func() (any, error) {
			ctr, err := rt.Container(ctx, name)
			if err != nil {
				return nil, err
			}
			info, err := ctr.Inspect(ctx)
			if err != nil {
				return nil, err
			}
			ci := newContainerInspect(info)
			ci.Mounts = inspectMounts(ctx, rt, info.Mounts)
			return ci, nil
		}},
		{"image", func() (any, error) {
			img, err := rt.Image(ctx, name)
			if err != nil {
				return nil, err
			}
			return newImageInspect(img), nil
		}},
		{"network", func() (any, error) { return inspectNetwork(ctx, rt, name) }},
		{"volume", func() (any, error) {
			v, err := rt.Volume(ctx, name)
			if err != nil {
				return nil, err
			}
			return newVolumeInspect(v), nil
		}},
	}
	err := berth.ErrNotFound
	for _, l := range lookups {
		if kind != "" && kind != l.kind {
			continue
		}
		var obj any
		if obj, err = l.find(); !errors.Is(err, berth.ErrNotFound) {
			return obj, err
		}
	}
	return nil, err
}

// printInspect prints objects as docker inspect does: an indented JSON
// array, or the template once per object.
func printInspect[T any](w io.Writer, format string, objs []T) error {
	if format == "" {
		if objs == nil {
			objs = []T{}
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // docker prints "<none>" as is
		enc.SetIndent("", "    ")
		return enc.Encode(objs)
	}
	tmpl, err := parseTemplate(format)
	if err != nil {
		return &statusError{code: exitTemplate, msg: "Template parsing error: " + err.Error()}
	}
	for _, o := range objs {
		if err := tmpl.Execute(w, o); err != nil {
			return &statusError{code: exitFailure, msg: "Template parsing error: " + err.Error()}
		}
		fmt.Fprintln(w)
	}
	return nil
}
