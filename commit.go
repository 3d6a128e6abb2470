package berth

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/snapshot"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sync/errgroup"
)

// Pause freezes every process of the running container through its
// cgroup freezer (docker pause) and returns once the kernel reports them
// frozen; the container's status becomes "paused" (State.Running stays
// true). Pausing a container that is not running fails with an error
// wrapping ErrNotRunning, pausing a paused one with ErrInvalid. If ctx ends
// before the freeze completes, the container is thawed again.
//
// A paused container's processes receive no signal until Unpause, SIGKILL
// included: unpause a container before stopping or removing it.
func (c *Container) Pause(ctx context.Context) error {
	unlock, err := c.rt.lockPause(ctx, c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	switch {
	case rec.State.Status == statusPaused:
		return fmt.Errorf("%w: container %s is already paused", ErrInvalid, c.Name)
	case rec.State.Status != statusRunning || !rec.alive():
		return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	cg, err := cgroup.Load(c.rt.cgroupPath(c.ID))
	if err != nil {
		return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	if err := cg.Freeze(ctx); err != nil {
		if !rec.alive() { // it exited meanwhile, and its cgroup went
			return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
		}
		return fmt.Errorf("pausing container %s: %w", c.Name, err)
	}
	paused, err := c.rt.updateRecord(ctx, c.ID, func(cur *containerRecord) error {
		if cur.State.Status != statusRunning {
			return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
		}
		cur.State.Status = statusPaused
		cur.State.unwatched()
		return nil
	})
	if err != nil {
		// Whatever happened meanwhile (an exit, a concurrent Pause), the
		// freeze must not outlive the failed call.
		cg.Thaw(context.WithoutCancel(ctx))
		return err
	}
	c.rt.containerEvent("pause", paused)
	return nil
}

// Unpause resumes the processes of a paused container (docker unpause);
// its status becomes "running" again. Unpausing a container that is not
// paused fails with an error wrapping ErrInvalid, or ErrNotRunning when it
// is not running at all.
func (c *Container) Unpause(ctx context.Context) error {
	unlock, err := c.rt.lockPause(ctx, c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return err
	}
	switch {
	case !rec.State.Running:
		return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	case rec.State.Status != statusPaused:
		return fmt.Errorf("%w: container %s is not paused", ErrInvalid, c.Name)
	}
	cg, err := cgroup.Load(c.rt.cgroupPath(c.ID))
	if err != nil {
		return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	if err := cg.Thaw(ctx); err != nil {
		if !rec.alive() {
			return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
		}
		return fmt.Errorf("unpausing container %s: %w", c.Name, err)
	}
	unpaused, err := c.rt.updateRecord(ctx, c.ID, func(cur *containerRecord) error {
		if cur.State.Status == statusPaused {
			cur.State.Status = statusRunning
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.rt.containerEvent("unpause", unpaused)
	return nil
}

// lockPause serialises Pause and Unpause of container id across programs:
// two Pauses at once both froze the cgroup, and the one whose record
// update found "paused" thawed the other's freeze, leaving a container
// recorded paused that ran. Exec holds it shared (lockExecStart).
func (r *Runtime) lockPause(ctx context.Context, id string) (func(), error) {
	return r.store.Lock(ctx, "pause-"+id, true)
}

// lockExecStart keeps container id from being paused while an Exec
// starts a process in it, other Execs being free to: an Exec that read
// "running" and then joined the cgroups of a container frozen meanwhile
// had its forking thread frozen with the container, in this program, and
// returned only after an Unpause.
func (r *Runtime) lockExecStart(ctx context.Context, id string) (func(), error) {
	return r.store.Lock(ctx, "pause-"+id, false)
}

// CommitOption configures Commit.
type CommitOption interface{ applyCommit(*commitConfig) }

type commitConfig struct {
	tag     string
	changes []string
	message string
	author  string
	pause   bool
}

type commitOptionFunc func(*commitConfig)

func (f commitOptionFunc) applyCommit(c *commitConfig) { f(c) }

// WithCommitTag tags the committed image ref (docker commit CONTAINER
// REPOSITORY[:TAG]); a missing tag means "latest". Default: the image is
// stored untagged, listed by Images with no RepoTags.
func WithCommitTag(ref string) CommitOption {
	return commitOptionFunc(func(c *commitConfig) { c.tag = ref })
}

// WithChanges applies Dockerfile instructions to the committed image's
// config (docker commit --change), in order, after the container's own
// config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
// VOLUME and WORKDIR, with Dockerfile syntax, variable expansion and
// rules (an ENTRYPOINT without a CMD among the changes clears the CMD).
// Any other instruction fails Commit with ErrInvalid. Each string may
// hold one instruction or several on separate lines. Default: none.
func WithChanges(lines ...string) CommitOption {
	return commitOptionFunc(func(c *commitConfig) { c.changes = append(c.changes, lines...) })
}

// WithCommitMessage sets the comment of the new layer's history entry
// (docker commit -m). Default: empty.
func WithCommitMessage(msg string) CommitOption {
	return commitOptionFunc(func(c *commitConfig) { c.message = msg })
}

// WithCommitAuthor sets the image's author and that of the new history
// entry (docker commit -a), "Name <email>" by convention. Default: empty.
func WithCommitAuthor(author string) CommitOption {
	return commitOptionFunc(func(c *commitConfig) { c.author = author })
}

// WithCommitPause sets whether Commit pauses a running container while it
// reads the container's changes (docker commit -p). Without the pause a
// file the container writes meanwhile can fail the commit or be captured
// half-written. Default: true.
func WithCommitPause(on bool) CommitOption {
	return commitOptionFunc(func(c *commitConfig) { c.pause = on })
}

// Commit makes a new image from the container's changes (docker commit):
// the container's image with one more layer, the difference between the
// image and the container's filesystem now (new, changed and deleted
// files, replaced directories, ownership, modes, xattrs, hardlinks and
// device nodes), and the container's configuration (command, entrypoint,
// environment, working directory, user, labels, stop signal; exposed
// ports and volumes from the image) as the image's config, with
// WithChanges applied on top. It works on running, paused and stopped
// containers; a running one is paused while its changes are read unless
// WithCommitPause(false). Volumes are not part of a container's
// filesystem and their content is not committed, as with docker.
//
// Like docker, Commit leaves out the mount points berth creates for a
// container (an empty /etc/hosts, /etc/hostname, /etc/resolv.conf, the
// directories of /proc, /dev and /sys), which live in the image's init
// layer rather than in the container's writable one, and adds no layer,
// only a history entry marked empty_layer, when the diff holds no entry
// at all. (A container whose image could have no init layer made them in
// its writable layer: the files are dropped from the diff, the
// directories above them, /etc for an image without the files, stay.)
//
// The new layer is stored uncompressed; the image's other layers keep
// their blobs and media types. The image is tagged as WithCommitTag says,
// else kept untagged.
func (c *Container) Commit(ctx context.Context, opts ...CommitOption) (*Image, error) {
	r := c.rt
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	cc := commitConfig{pause: true}
	for _, o := range opts {
		o.applyCommit(&cc)
	}
	var key string
	if cc.tag != "" {
		parsed, err := parseRef(cc.tag, false)
		if err != nil {
			return nil, err
		}
		if !isTag(parsed) {
			return nil, fmt.Errorf("%w: cannot tag a commit with a digest reference %q", ErrInvalid, cc.tag)
		}
		key = refKey(parsed)
	}
	rec, err := r.currentRecord(c.ID)
	if err != nil {
		return nil, err
	}
	parent, parentCF, err := r.commitParent(rec)
	if err != nil {
		return nil, fmt.Errorf("committing container %s: %w", c.Name, err)
	}
	cfg := commitRunConfig(parentCF, rec)
	if err := applyChanges(&cfg, cc.changes); err != nil {
		return nil, fmt.Errorf("committing container %s: %w", c.Name, err)
	}

	tr := newTracer("commit")
	defer tr.done()
	unlock, err := r.gcShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tr.mark("lock")
	parentDiffIDs := make([]string, len(parent.Layers))
	for i, l := range parent.Layers {
		parentDiffIDs[i] = l.DiffID
	}
	diffID, size, err := c.diff(ctx, rec, cc.pause, parentDiffIDs)
	tr.mark("diff")
	if err != nil {
		return nil, fmt.Errorf("committing container %s: %w", c.Name, err)
	}

	now := time.Now().UTC()
	cf := &v1.ConfigFile{
		Architecture: parentCF.Architecture,
		Variant:      parentCF.Variant,
		OS:           parentCF.OS,
		OSVersion:    parentCF.OSVersion,
		OSFeatures:   parentCF.OSFeatures,
		Author:       cc.author,
		Container:    rec.ID,
		Created:      v1.Time{Time: now},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: slices.Clone(parentCF.RootFS.DiffIDs)},
		History:      slices.Clone(parentCF.History),
	}
	layers := slices.Clone(parent.Layers)
	empty := diffID == emptyTarDiffID
	if !empty {
		h, err := v1.NewHash(diffID)
		if err != nil {
			return nil, err
		}
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, h)
		layers = append(layers, Layer{Digest: diffID, DiffID: diffID, MediaType: string(types.DockerUncompressedLayer), Size: size})
	}
	// docker commit records the container's command (CMD, not the
	// entrypoint) as created_by.
	cf.History = append(cf.History, v1.History{
		Created:    v1.Time{Time: now},
		CreatedBy:  strings.Join(rec.Config.Cmd, " "),
		Author:     cc.author,
		Comment:    cc.message,
		EmptyLayer: empty,
	})
	img, err := r.writeImage(ctx, cf, layers)
	if err != nil {
		return nil, fmt.Errorf("committing container %s: %w", c.Name, err)
	}
	tr.mark("write")
	if key != "" {
		err = r.setRef(ctx, key, img.Digest)
	} else {
		err = r.store.UpdateRefs(ctx, func(refs map[string]string) error {
			if !referenced(refs, img.Digest) {
				refs[danglingPrefix+img.Digest] = img.Digest
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	tr.mark("ref")
	return r.Image(ctx, img.Digest)
}

// commitParent reads the image the container was created from.
func (r *Runtime) commitParent(rec *containerRecord) (*Image, *v1.ConfigFile, error) {
	img, err := r.imageFromStore(rec.Config.ImageDigest, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the container's image %s: %w", shortID(rec.Config.ImageID), err)
	}
	if img.ID != rec.Config.ImageID {
		return nil, nil, fmt.Errorf("%w: the container's image manifest %s names config %s, not %s", ErrInvalid, shortID(img.Digest), shortID(img.ID), shortID(rec.Config.ImageID))
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(img.rawConfig))
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", shortID(img.ID), err)
	}
	if len(cf.RootFS.DiffIDs) != len(img.Layers) {
		return nil, nil, fmt.Errorf("%w: image %s lists %d diff IDs for %d layers", ErrInvalid, shortID(img.ID), len(cf.RootFS.DiffIDs), len(img.Layers))
	}
	return img, cf, nil
}

// commitRunConfig is the container's configuration as docker commit takes
// it: what the container runs with, minus what berth adds to every
// container at start (HOSTNAME, the default PATH, TERM for a terminal),
// over the image's other settings.
func commitRunConfig(parent *v1.ConfigFile, rec *containerRecord) v1.Config {
	pc := parent.Config
	cfg := v1.Config{
		Env:          containerEnv(rec.Config, pc.Env),
		Cmd:          slices.Clone(rec.Config.Cmd),
		Entrypoint:   slices.Clone(rec.Config.Entrypoint),
		WorkingDir:   rec.Config.Dir,
		User:         rec.Config.User,
		StopSignal:   rec.Config.StopSignal,
		ExposedPorts: maps.Clone(pc.ExposedPorts),
		Volumes:      maps.Clone(pc.Volumes),
		Healthcheck:  pc.Healthcheck,
		OnBuild:      slices.Clone(pc.OnBuild),
		Shell:        slices.Clone(pc.Shell),
		ArgsEscaped:  pc.ArgsEscaped,
	}
	if rec.Config.ExposedPorts != nil {
		// The image's and WithExpose's (a record made before berth kept
		// them has the image's only, above).
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range rec.Config.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if cfg.WorkingDir == "/" && pc.WorkingDir == "" {
		cfg.WorkingDir = "" // berth's default, not a setting of the container
	}
	if len(pc.Labels)+len(rec.Config.Labels) > 0 {
		cfg.Labels = maps.Clone(pc.Labels)
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		maps.Copy(cfg.Labels, rec.Config.Labels)
	}
	return cfg
}

// containerEnv drops from the container's environment the variables
// buildConfig adds to every container, unless the image set them: docker
// adds the same ones when it starts the process and never stores them in
// the container's config, so a commit does not bake them in. A variable
// the caller set to exactly the value berth would add is dropped too; the
// record does not say who set it.
func containerEnv(cfg containerConfig, imageEnv []string) []string {
	added := map[string]string{"PATH": defaultPath, "HOSTNAME": cfg.Hostname}
	if cfg.TTY {
		added["TERM"] = "xterm"
	}
	var out []string
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		if def, ok := added[k]; ok && v == def && !hasEnv(imageEnv, k) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// emptyTarDiffID is the diff ID of a tar with no entries (two zero
// blocks), docker's empty layer.
var emptyTarDiffID = func() string {
	sum := sha256.Sum256(make([]byte, 1024))
	return "sha256:" + hex.EncodeToString(sum[:])
}()

// diff stores the container's upper directory as an uncompressed layer
// blob, unpacks it as the snapshot on top of parentDiffIDs, and returns
// its diff ID (its digest) and size. A running container is paused while
// its upper directory is read when pause is set, and thawed as soon as the
// read ends. The upper directory is read only through
// archive.WriteOverlayDiff, which follows no symlink and reads nothing
// outside it.
//
// The layer streams once, into the store and into a temp file, so the
// snapshot unpacks from the temp file while the store syncs the blob to
// disk; the snapshot becomes visible only once the blob is committed, as
// for a pulled layer.
func (c *Container) diff(ctx context.Context, rec *containerRecord, pause bool, parentDiffIDs []string) (string, int64, error) {
	r := c.rt
	tr := newTracer("diff")
	defer tr.done()
	thaw := func() {}
	if pause && rec.State.Status == statusRunning {
		switch err := c.Pause(ctx); {
		case err == nil:
			var once sync.Once
			thaw = func() {
				once.Do(func() {
					// Thaw even when ctx ended: a commit must not leave
					// the container frozen.
					tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
					defer cancel()
					c.Unpause(tctx)
				})
			}
			defer thaw()
		case errors.Is(err, ErrNotRunning):
			// It exited meanwhile: nothing writes to it any more.
		default:
			return "", 0, err
		}
	}
	if rec.State.Status == statusExited || rec.State.Status == statusDead {
		// Exited: its owner lock, held while its upper directory is read,
		// keeps a Start from running it meanwhile (one that has it already
		// is starting it: what it writes may be read, as without a pause).
		if locked, unlock, err := r.lockOwner(c.ID); err == nil {
			if locked.State.Status == statusExited || locked.processGone() {
				defer unlock()
			} else {
				unlock() // started since: a Start's monitor waits for this lock
			}
		}
	}
	tr.mark("pause")
	tmpDir, release, err := r.store.TempDir("commit-")
	if err != nil {
		return "", 0, err
	}
	defer release()
	tmp, err := os.Create(filepath.Join(tmpDir, "layer.tar"))
	if err != nil {
		return "", 0, err
	}
	defer tmp.Close()

	// The stream runs in the store's Ingest, through layerSource.WriteTo,
	// and reports its end here before Ingest syncs the blob.
	upper := filepath.Join(r.containerDir(c.ID), "upper")
	hasher := sha256.New()
	streamed := make(chan error, 1)
	src := &layerSource{produce: func(w io.Writer) error {
		diffR, diffW := io.Pipe()
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			_, _, err := archive.WriteOverlayDiff(gctx, upper, diffW, archive.DiffOptions{})
			diffW.CloseWithError(err)
			thaw()
			return err
		})
		g.Go(func() error {
			err := dropMountTargets(diffR, io.MultiWriter(w, tmp, hasher))
			diffR.CloseWithError(err) // stops the writer above if this failed
			return err
		})
		err := g.Wait()
		streamed <- err
		return err
	}}
	type ingested struct {
		digest string
		size   int64
		err    error
	}
	ingestDone := make(chan ingested, 1)
	go func() {
		d, n, err := r.store.Ingest(src)
		ingestDone <- ingested{d, n, err}
	}()
	var res *ingested
	awaitIngest := func() error {
		if res == nil {
			v := <-ingestDone
			res = &v
		}
		return res.err
	}
	defer awaitIngest() // never leave the store writing after return
	select {
	case err := <-streamed:
		if err != nil {
			return "", 0, err
		}
	case v := <-ingestDone:
		res = &v
		if res.err != nil {
			return "", 0, res.err
		}
		if err := <-streamed; err != nil { // sent before Ingest returned
			return "", 0, err
		}
	}
	diffID := "sha256:" + hex.EncodeToString(hasher.Sum(nil))
	tr.mark("stream")
	verified := func() error {
		tr.mark("unpacked")
		if err := awaitIngest(); err != nil {
			return err
		}
		tr.mark("ingested")
		if res.digest != diffID {
			return fmt.Errorf("the stored layer hashes to %s, the stream to %s", res.digest, diffID)
		}
		return nil
	}
	if diffID == emptyTarDiffID {
		return diffID, 0, verified()
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	chain := snapshot.ChainIDs(append(slices.Clone(parentDiffIDs), diffID))
	// diffID is the hash of what tmp holds, taken as it was written.
	if _, err := r.snaps.UnpackHashed(ctx, chain[len(chain)-1], diffID, bufio.NewReaderSize(tmp, archive.CopyBufSize), r.applyOptions(), verified); err != nil {
		return "", 0, fmt.Errorf("unpacking the new layer: %w", err)
	}
	return diffID, res.size, nil
}

// layerSource hands a layer that produce writes to a reader's consumer:
// io.Copy calls WriteTo, which writes straight into the destination, with
// no pipe and no small copy buffer between. Read, for consumers that do
// not use WriteTo, runs produce behind a pipe.
type layerSource struct {
	produce func(io.Writer) error
	pr      *io.PipeReader
}

func (l *layerSource) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := l.produce(cw)
	return cw.n, err
}

func (l *layerSource) Read(p []byte) (int, error) {
	if l.pr == nil {
		pr, pw := io.Pipe()
		l.pr = pr
		go func() { pw.CloseWithError(l.produce(pw)) }()
	}
	return l.pr.Read(p)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// mountTargets are the files berth creates to bind the container's own
// /etc files on: in the image's init layer (as docker does), or, where
// that could not be made, in the container's upper directory, from whose
// diff they are dropped. Writes in the container go to the bound file, never
// to these, and they cannot be hardlinked (a link across mounts fails),
// so an empty regular file at one of these paths is always berth's.
var mountTargets = map[string]bool{"etc/hosts": true, "etc/hostname": true, "etc/resolv.conf": true}

// dropMountTargets copies the layer tar r to w without berth's mount
// targets.
func dropMountTargets(r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	buf := make([]byte, archive.CopyBufSize)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size == 0 && mountTargets[hdr.Name] {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(tw, tr, buf); err != nil {
			return err
		}
	}
}

// commitInstructions are the Dockerfile instructions docker commit
// --change accepts.
var commitInstructions = []string{"cmd", "entrypoint", "env", "expose", "label", "onbuild", "stopsignal", "user", "volume", "workdir"}

// applyChanges applies docker commit --change instructions to cfg, in
// order, as a Dockerfile would: BuildKit's parser reads them (joined by
// newlines, as docker does) and its instruction parser types them; the
// effect of each is docker's.
func applyChanges(cfg *v1.Config, changes []string) error {
	if len(changes) == 0 {
		return nil
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		return fmt.Errorf("%w: parsing changes: %v", ErrInvalid, err)
	}
	lex := shell.NewLex(res.EscapeToken)
	cmdSet := false
	for _, node := range res.AST.Children {
		name := strings.ToLower(node.Value)
		if !slices.Contains(commitInstructions, name) {
			return fmt.Errorf("%w: change %q: %s is not allowed in a commit (only %s)", ErrInvalid, node.Original, strings.ToUpper(name), strings.ToUpper(strings.Join(commitInstructions, ", ")))
		}
		inst, err := instructions.ParseInstruction(node)
		if err != nil {
			return fmt.Errorf("%w: change %q: %v", ErrInvalid, node.Original, err)
		}
		env := shell.EnvsFromSlice(cfg.Env)
		expand := func(word string) (string, error) {
			s, _, err := lex.ProcessWord(word, env)
			return s, err
		}
		if ex, ok := inst.(instructions.SupportsSingleWordExpansion); ok {
			if err := ex.Expand(expand); err != nil {
				return fmt.Errorf("%w: change %q: %v", ErrInvalid, node.Original, err)
			}
		}
		if err := applyChange(cfg, inst, lex, env, &cmdSet); err != nil {
			return fmt.Errorf("%w: change %q: %v", ErrInvalid, node.Original, err)
		}
	}
	return nil
}

func applyChange(cfg *v1.Config, inst any, lex *shell.Lex, env shell.EnvGetter, cmdSet *bool) error {
	switch c := inst.(type) {
	case *instructions.CmdCommand:
		if len(c.Files) > 0 {
			return errors.New("heredocs are not supported in a commit")
		}
		cfg.Cmd = commandLine(cfg, c.ShellDependantCmdLine)
		*cmdSet = true
	case *instructions.EntrypointCommand:
		if len(c.Files) > 0 {
			return errors.New("heredocs are not supported in a commit")
		}
		cfg.Entrypoint = commandLine(cfg, c.ShellDependantCmdLine)
		if !*cmdSet {
			cfg.Cmd = nil // a Dockerfile's rule: a new ENTRYPOINT drops an inherited CMD
		}
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = mergeEnv(cfg.Env, []string{kv.Key + "=" + kv.Value})
		}
	case *instructions.ExposeCommand:
		for _, p := range c.Ports {
			words, err := lex.ProcessWords(p, env)
			if err != nil {
				return err
			}
			for _, w := range words {
				ports, err := exposedPorts(w)
				if err != nil {
					return err
				}
				if cfg.ExposedPorts == nil {
					cfg.ExposedPorts = map[string]struct{}{}
				}
				for _, port := range ports {
					cfg.ExposedPorts[port] = struct{}{}
				}
			}
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, strings.TrimSpace(c.Expression))
	case *instructions.StopSignalCommand:
		if _, err := parseSignal(c.Signal); err != nil {
			return err
		}
		cfg.StopSignal = c.Signal
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return errors.New("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.WorkdirCommand:
		if c.Path == "" {
			return errors.New("WORKDIR needs a path")
		}
		if !path.IsAbs(c.Path) {
			cfg.WorkingDir = path.Join("/", cfg.WorkingDir, c.Path)
		} else {
			cfg.WorkingDir = c.Path
		}
	default:
		return fmt.Errorf("instruction %T is not allowed in a commit", inst)
	}
	return nil
}

// commandLine is a CMD or ENTRYPOINT's argument vector: the JSON form as
// written, the shell form run by the image's SHELL (default /bin/sh -c).
func commandLine(cfg *v1.Config, cl instructions.ShellDependantCmdLine) []string {
	if !cl.PrependShell {
		return cl.CmdLine
	}
	return append(slices.Clone(shellOf(cfg.Shell)), strings.Join(cl.CmdLine, " "))
}

// exposedPorts reads an EXPOSE argument, "PORT[-PORT][/PROTO]", into the
// image config's keys ("80/tcp"), one per port of a range, as docker does.
func exposedPorts(spec string) ([]string, error) {
	ports, proto, hasProto := strings.Cut(spec, "/")
	if !hasProto {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("invalid protocol %q in EXPOSE %s", proto, spec)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	start, err1 := strconv.ParseUint(lo, 10, 16)
	end, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || start == 0 || end < start {
		return nil, fmt.Errorf("invalid port %q in EXPOSE %s", ports, spec)
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, strconv.FormatUint(p, 10)+"/"+proto)
	}
	return out, nil
}
