package berth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/initproc"
	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sys/unix"
)

// Run creates a container from image (a reference or ID of an image in the
// store, as docker run takes it) and starts p in it (docker run). It
// returns once the container's process runs; use Wait for its end.
//
// The container gets its own mount, pid, uts, ipc, net (on the default
// bridge network unless WithNetwork or WithNetworkMode say otherwise) and
// cgroup namespaces, an overlay root over the image's layers, docker's
// default capabilities, seccomp profile, masked paths and no_new_privs. An
// attached container (the default) dies with the Runtime or the program;
// see WithDetach for one that outlives it. If the command cannot be run,
// Run fails with an error that errors.As finds an *ExitError in, with code
// 127 (not found) or 126 (not executable), as docker exits.
func (r *Runtime) Run(ctx context.Context, image string, p *Process, opts ...RunOption) (*Container, error) {
	return r.createOrRun(ctx, image, p, false, opts)
}

// Create creates a container as Run does, with the same options, but
// does not start it (docker create): its status is "created" until Start
// starts it, and until then files can be copied into it (CopyTo), it can
// be connected to networks, inspected and removed. Its lifetime once
// started is as for Run: attached unless WithDetach. Its output goes to
// its log (Logs), so p's Stdin, Stdout and Stderr must be nil.
func (r *Runtime) Create(ctx context.Context, image string, p *Process, opts ...RunOption) (*Container, error) {
	if p != nil && (p.Stdin != nil || p.Stdout != nil || p.Stderr != nil) {
		return nil, fmt.Errorf("%w: a created container's output goes to its log; Process.Stdin, Stdout and Stderr must be nil", ErrInvalid)
	}
	return r.createOrRun(ctx, image, p, true, opts)
}

// createOrRun is Run, or Create when createOnly is set: the container is
// made and left "created", with no program named as its starter.
func (r *Runtime) createOrRun(ctx context.Context, image string, p *Process, createOnly bool, opts []RunOption) (_ *Container, retErr error) {
	done, err := r.beginRun()
	if err != nil {
		return nil, err
	}
	defer done()
	tr := newTracer("run")
	if p == nil {
		p = &Process{}
	}
	o := runConfig{noNewPrivs: true, seccomp: true}
	for _, opt := range opts {
		opt.applyRun(&o)
	}
	if o.detach && (p.Stdin != nil || p.Stdout != nil || p.Stderr != nil) {
		return nil, fmt.Errorf("%w: a detached container's output goes to its log; Process.Stdin, Stdout and Stderr must be nil", ErrInvalid)
	}
	// Until the record names the image, a collection (a RemoveImage or
	// Prune elsewhere) would see nothing using its layers.
	unlockGC, err := r.gcShared(ctx)
	if err != nil {
		return nil, err
	}
	releaseGC := sync.OnceFunc(unlockGC)
	defer releaseGC()
	img, err := r.runImage(image)
	if err != nil {
		return nil, err
	}
	tr.mark("image")
	if err := r.ensureSnapshots(ctx, img); err != nil {
		return nil, err
	}
	tr.mark("snapshots")
	id := newContainerID()
	cfg, err := buildConfig(img, image, p, &o, id)
	if err != nil {
		return nil, err
	}
	if err := r.resolveNetworking(ctx, img, &o, &cfg); err != nil {
		return nil, err
	}
	if err := r.resolveNamespaceModes(ctx, &o, &cfg); err != nil {
		return nil, err
	}
	if cfg.Seccomp && cfg.SeccompProfile != "" {
		// Compiled now (and kept for the start), to refuse at Run what
		// would fail every start.
		caps, err := cfg.capabilities()
		if err != nil {
			return nil, err
		}
		if _, err := r.seccompFilter(caps, cfg.SeccompProfile); err != nil {
			return nil, fmt.Errorf("%w: seccomp profile: %v", ErrInvalid, err)
		}
	}
	name := strings.TrimPrefix(o.name, "/")
	if name == "" {
		name = generatedName(id)
	}
	tr.mark("config")
	// The directory first: the name is a link to a file in it. Until its
	// record is written, a directory is no container to those listing
	// containers/.
	dir := r.containerDir(id)
	giveBack := func() { // a directory no container was made in
		if !r.keepSpare(dir) {
			os.RemoveAll(dir)
		}
	}
	r.takeSpare(dir) // else made below
	tr.mark("spare")
	if err := makeContainerDir(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	tr.mark("dirs")
	if err := r.claimName(name, id); err != nil {
		giveBack()
		return nil, err
	}
	tr.mark("name")
	mounts, releaseVolumes, err := r.resolveMounts(ctx, img, &o)
	if err != nil {
		r.releaseName(name, id)
		giveBack()
		return nil, err
	}
	defer releaseVolumes()
	cfg.Mounts = mounts
	defer func() {
		if retErr != nil && cfg.AutoRemove {
			r.removeContainerFiles(id, name)
			releaseVolumes()
			r.removeAnonymousVolumes(cfg.Mounts)
		}
	}()
	tr.mark("mounts")
	rec := &containerRecord{ID: id, Name: name, Created: time.Now().UTC(), Config: cfg, State: ContainerState{Status: statusCreated}}
	if createOnly {
		rec.Made = true
	} else {
		rec.Creator, rec.CreatorStart = os.Getpid(), selfStart()
	}
	if err := r.writeRecord(rec); err != nil {
		r.removeContainerFiles(id, name)
		return nil, err
	}
	r.containerEvent("create", rec)
	releaseGC()
	tr.mark("record")
	tr.done()
	releaseVolumes() // the record names the volumes now: Remove sees them in use
	c := &Container{ID: id, Name: name, rt: r}
	if createOnly {
		return c, nil
	}
	if cfg.Detached {
		if err := r.startDetached(ctx, rec); err != nil {
			// The container must not stay "created" (abandonStart). A Run
			// that fails leaves nothing running.
			r.abandonStart(c, err.Error())
			return nil, fmt.Errorf("starting container %s: %w", name, err)
		}
		return c, nil
	}
	// A failed launch has recorded or removed the container; a failed
	// claim means another program holds the owner lock, and it settles it.
	unlock, err := r.claimStart(rec)
	if err != nil {
		return nil, err
	}
	run, err := r.launch(ctx, rec, stdio{stdin: p.Stdin, stdout: p.Stdout, stderr: p.Stderr}, unlock)
	if err != nil {
		return nil, fmt.Errorf("starting container %s: %w", name, err)
	}
	// A program that starts a second container likely starts more: the
	// next one's network namespace is made now, beside this one's run (a
	// program that starts one, such as the CLI, would only pay for it).
	if mode, _ := networkModeOf(&cfg); r.startedOne.Swap(true) && mode != "host" && mode != "container" {
		initproc.WarmNetNS()
	}
	c.run = run
	return c, nil
}

// abandonStart ends the start of a detached container given up on once
// its record said "created" (the request to the monitor failed, or its
// context ended): unless a monitor has it, it never started, and is
// settled (settleCreated); if a monitor went on to start it, it is
// stopped once started, and the monitor records its exit (or removes it,
// auto-removed). It waits at most stopAbandonedWithin: a program that
// holds the owner lock a moment (reading the record) must not leave the
// container "created" with a living starter, which every later Start,
// copy and Remove would wait on.
func (r *Runtime) abandonStart(c *Container, cause string) {
	deadline := time.Now().Add(stopAbandonedWithin)
	for time.Now().Before(deadline) {
		if r.settleCreated(c.ID, cause) {
			return
		}
		rec, err := r.readRecord(c.ID)
		if err != nil {
			return
		}
		if rec.State.Status != statusCreated {
			if rec.State.Running || rec.State.Restarting { // Stop calls a restart off
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				c.Stop(ctx, 0)
				cancel()
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// stopAbandonedWithin bounds abandonStart: a monitor's start takes
// milliseconds, and one that hangs is not waited for beyond this.
const stopAbandonedWithin = 10 * time.Second

// ensureSnapshots unpacks any layer of img whose snapshot is missing (after
// a Prune raced, or a store copied without snapshots).
func (r *Runtime) ensureSnapshots(ctx context.Context, img *Image) error {
	for _, l := range img.Layers {
		if r.snaps.Exists(l.ChainID) {
			continue
		}
		if err := r.unpackFromStore(ctx, l, nil); err != nil {
			return fmt.Errorf("unpacking layer %s: %w", shortID(l.Digest), err)
		}
	}
	return nil
}

func (r *Runtime) track(id string, run *running) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == nil {
		r.running = map[string]*running{}
	}
	r.running[id] = run
}

// forget drops run, if it is still the one tracked for id: a Start may
// have launched the container again since run's exit was recorded.
func (r *Runtime) forget(id string, run *running) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[id] == run {
		delete(r.running, id)
	}
}

func (r *Runtime) owned(id string) *running {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[id]
}

// Container finds a container of the root by name, full ID or unique ID
// prefix (docker's rules), including containers started by other programs.
// A container whose state file does not parse is found too: a forced
// Remove removes it, other calls report the damage.
func (r *Runtime) Container(ctx context.Context, nameOrID string) (*Container, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	name := strings.TrimPrefix(nameOrID, "/")
	if id, err := os.ReadFile(filepath.Join(r.root, "names", name)); err == nil && validContainerName(name) {
		if _, err := r.readRecord(string(id)); err == nil || errors.Is(err, errUnreadableRecord) {
			return r.containerHandle(string(id), name), nil
		}
	}
	entries, err := os.ReadDir(r.containersDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var matchID, matchName string
	for _, e := range entries {
		id := e.Name()
		if !strings.HasPrefix(id, nameOrID) || nameOrID == "" || !validContainerID(id) {
			continue
		}
		rec, err := r.readRecord(id)
		recName := ""
		switch {
		case err == nil:
			recName = rec.Name
		case !errors.Is(err, errUnreadableRecord):
			continue
		}
		if matchID != "" {
			return nil, fmt.Errorf("%w: container ID prefix %q is ambiguous", ErrInvalid, nameOrID)
		}
		matchID, matchName = id, recName
	}
	if matchID == "" {
		return nil, fmt.Errorf("no such container: %s: %w", nameOrID, ErrNotFound)
	}
	return r.containerHandle(matchID, matchName), nil
}

// startedSince reports whether container id was started again (or is
// being started) since run, which has ended. An auto-removed container
// is never started again, and its record is not read.
func (r *Runtime) startedSince(id string, run *running) bool {
	if run.rec.Config.AutoRemove {
		return false
	}
	rec, err := r.readRecord(id)
	return err == nil && (rec.State.Status == statusCreated || rec.State.StartedAt.After(run.rec.State.StartedAt))
}

func (r *Runtime) containerHandle(id, name string) *Container {
	return &Container{ID: id, Name: name, rt: r, run: r.owned(id)}
}

// ListOption configures Containers.
type ListOption interface{ applyList(*listConfig) }

type listConfig struct{ all bool }

type listOptionFunc func(*listConfig)

func (f listOptionFunc) applyList(c *listConfig) { f(c) }

// WithAll lists stopped containers too (docker ps -a). Default: running
// ones, and those their restart policy is restarting.
func WithAll() ListOption { return listOptionFunc(func(c *listConfig) { c.all = true }) }

// ContainerInfo is what Inspect and Containers report about a container.
type ContainerInfo struct {
	ID      string
	Name    string
	Created time.Time
	// Image is the reference the container was run with; ImageID the
	// image's config digest.
	Image, ImageID string
	// Args is the command line of the container's process (entrypoint
	// plus command).
	Args       []string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	Hostname   string
	TTY        bool
	OpenStdin  bool
	// KeepStdinOpen says the container was run with WithOpenStdin: its
	// input stays open, for Attach to write to; StdinOnce, with
	// WithStdinOnce, until the first attachment ends.
	KeepStdinOpen bool
	StdinOnce     bool
	Labels        map[string]string
	StopSignal    string
	// StopTimeout is the container's own stop timeout (WithStopTimeout), or
	// 0 for DefaultStopTimeout.
	StopTimeout time.Duration
	// CapAdd and CapDrop are the capability changes it was run with;
	// NoNewPrivileges and Seccomp say whether those protections apply;
	// Privileged that it runs with WithPrivileged.
	CapAdd, CapDrop []string
	NoNewPrivileges bool
	Seccomp         bool
	Privileged      bool
	// Sysctls are WithSysctls's kernel parameters; Init says that an
	// init runs the command (WithInit); GroupAdd are WithGroupAdd's
	// groups.
	Sysctls  map[string]string
	Init     bool
	GroupAdd []string
	// Devices and DeviceCgroupRules are WithDevices' devices, read, and
	// WithDeviceCgroupRules' rules.
	Devices           []DeviceMapping
	DeviceCgroupRules []string
	// PidMode, IpcMode and UTSMode are the namespaces it shares
	// (WithPidMode, WithIpcMode, WithUTSMode): "host", "container:ID"
	// (pid, IPC), "none" and "shareable" (IPC); "" for its own.
	PidMode, IpcMode, UTSMode string
	// LogMaxSize and LogMaxFiles are WithLogRotation's, 0 for none;
	// NoLog is WithoutLog.
	LogMaxSize  int64
	LogMaxFiles int
	NoLog       bool
	// OomScoreAdj is WithOomScoreAdj's.
	OomScoreAdj int
	// ExposedPorts are the image's EXPOSE and WithExpose's ports ("80/tcp"),
	// sorted (docker's Config.ExposedPorts); nil for a container made
	// before berth kept them.
	ExposedPorts []string
	Rlimits      []Rlimit
	AutoRemove   bool
	Detached     bool
	ReadOnly     bool
	Resources    Resources
	State        ContainerState
	// Mounts are the container's binds, volumes (Source is the volume's
	// name, made up for an anonymous one) and tmpfs mounts, in the order
	// they are made.
	Mounts []Mount
	// NetworkMode is "bridge", "none", "host" or "container:<ID>"
	// (docker's HostConfig.NetworkMode); Networks names the networks a
	// bridge-mode container joins when it starts, whether or not it runs
	// (State.Networks has the addresses while it runs).
	NetworkMode string
	Networks    []string
	// NetworkConfigs says how it joins each of Networks, in their order:
	// aliases and the addresses WithIP and WithMACAddress fixed.
	NetworkConfigs []NetworkConfig
	// Publish is the ports asked for (docker's HostConfig.PortBindings; a
	// HostPort of 0 is chosen at start, see State.Ports); ExtraHosts and
	// DNS are the --add-host and --dns values, DNSSearch and DNSOptions
	// the --dns-search and --dns-option ones; Domainname is
	// WithDomainname's.
	Publish               []PortBinding
	ExtraHosts, DNS       []string
	DNSSearch, DNSOptions []string
	Domainname            string
	// Healthcheck is the container's health check (the image's HEALTHCHECK
	// or WithHealthcheck's), nil for none.
	Healthcheck *HealthConfig
	// RestartPolicy is WithRestartPolicy's; RestartCount counts the
	// restarts by it since the container was last started by Run, Start
	// or Restart (docker's RestartCount).
	RestartPolicy RestartPolicy
	RestartCount  int
	// ShmSize is the size of /dev/shm in bytes (WithShmSize), 0 for
	// docker's 64 MiB.
	ShmSize int64
	// LogPath is the file holding the container's output.
	LogPath string
}

func (r *Runtime) info(rec *containerRecord) *ContainerInfo {
	cfg := rec.Config
	info := &ContainerInfo{
		ID: rec.ID, Name: rec.Name, Created: rec.Created, Image: cfg.Image, ImageID: cfg.ImageID,
		Args: cfg.Args, Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env, WorkingDir: cfg.Dir,
		User: cfg.User, Hostname: cfg.Hostname, TTY: cfg.TTY, OpenStdin: cfg.OpenStdin, KeepStdinOpen: cfg.KeepStdin, StdinOnce: cfg.StdinOnce, Labels: cfg.Labels,
		StopSignal: cfg.StopSignal, StopTimeout: cfg.StopTimeout, CapAdd: cfg.CapAdd, CapDrop: cfg.CapDrop,
		NoNewPrivileges: cfg.NoNewPrivs, Seccomp: cfg.Seccomp, Privileged: cfg.Privileged, Sysctls: cfg.Sysctls, Init: cfg.Init, GroupAdd: cfg.GroupAdd, Rlimits: cfg.Rlimits,
		ExposedPorts: cfg.ExposedPorts, Devices: cfg.Devices, DeviceCgroupRules: cfg.DeviceCgroupRules,
		PidMode: cfg.PidMode, IpcMode: cfg.IpcMode, UTSMode: cfg.UTSMode,
		LogMaxSize: cfg.LogMaxSize, LogMaxFiles: cfg.LogMaxFiles, NoLog: cfg.NoLog, OomScoreAdj: cfg.OomScoreAdj,
		AutoRemove: cfg.AutoRemove, Detached: cfg.Detached, ReadOnly: cfg.ReadOnly, Resources: cfg.Resources,
		State: rec.shownState(), LogPath: filepath.Join(r.containerDir(rec.ID), logName),
		Mounts: mountsOf(cfg.Mounts), NetworkMode: cfg.NetworkMode, Publish: cfg.Publish,
		ExtraHosts: cfg.ExtraHosts, DNS: cfg.DNS, DNSSearch: cfg.DNSSearch, DNSOptions: cfg.DNSOptions, Domainname: cfg.Domainname,
		Healthcheck:   cfg.Healthcheck,
		RestartPolicy: cfg.Restart, RestartCount: rec.RestartCount, ShmSize: cfg.ShmSize,
	}
	for _, a := range cfg.Networks {
		info.Networks = append(info.Networks, a.Name)
		info.NetworkConfigs = append(info.NetworkConfigs, NetworkConfig{Network: a.Name, Aliases: a.Aliases, IP: a.IP, MAC: a.MAC})
	}
	if info.NetworkMode == "" {
		info.NetworkMode = "none" // containers made before networks existed had loopback only
	}
	return info
}

// Containers lists the root's containers, newest first, including those
// other programs started (docker ps). A build's RUN steps are not listed
// (docker lists no BuildKit step either): they are the build's, and a
// cleanup of every listed container must not take one from a running
// build.
func (r *Runtime) Containers(ctx context.Context, opts ...ListOption) ([]*ContainerInfo, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	var cfg listConfig
	for _, o := range opts {
		o.applyList(&cfg)
	}
	entries, err := os.ReadDir(r.containersDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []*ContainerInfo
	for _, e := range entries {
		rec, err := r.currentRecord(e.Name())
		if err != nil {
			continue
		}
		if !cfg.all && !rec.State.Running && !rec.State.Restarting || rec.buildStep() {
			continue // a build's RUN step is the build's, as BuildKit's are not listed
		}
		out = append(out, r.info(rec))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// currentRecord reads a record and corrects a "running" state whose owner
// died (a detached container whose monitor was killed, say), and a restart
// by a monitor that died.
func (r *Runtime) currentRecord(id string) (*containerRecord, error) {
	rec, err := r.readRecord(id)
	if err != nil {
		return nil, err
	}
	if rec.State.Restarting && !rec.restartPending() && !rec.starting() {
		// The monitor (or program) that was to restart it died: the next
		// sweep claims the restart (restartUnwatched); until then it is
		// shown exited.
		rec.State.Restarting = false
	}
	if rec.processGone() {
		if unlock, ok := r.store.TryLock("owner-"+id, true); ok {
			// Read again under the lock: the owner records the exit and
			// then lets go, so the record read above may predate an exit
			// recorded since. Judged on it, a container that exited with 7
			// was reported "dead" with code 0, and Wait returned nil
			// (TestRunWaitConcurrent).
			fresh, err := r.readRecord(id)
			unlock()
			if err != nil {
				return nil, err
			}
			rec = fresh
			if rec.processGone() {
				// The owner died with the process: its exit status is
				// lost, as sweepContainers records it.
				rec.State.Status, rec.State.Running, rec.State.Pid = statusDead, false, 0
				rec.State.ExitCode = 255
				rec.State.unwatched()
			}
		}
	}
	return rec, nil
}

// Inspect returns the container's configuration and state (docker
// inspect).
func (c *Container) Inspect(ctx context.Context) (*ContainerInfo, error) {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return nil, err
	}
	return c.rt.info(rec), nil
}

// State returns the container's current state.
func (c *Container) State(ctx context.Context) (ContainerState, error) {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return ContainerState{}, err
	}
	return rec.shownState(), nil
}

// waitContainer is Wait. With startedAt set it waits only for the run
// that started then: once the record tells of another (a Start since), or
// none, that run has ended, and it returns nil.
func (r *Runtime) waitContainer(ctx context.Context, c *Container, startedAt time.Time) error {
	// The run this Runtime has going, else the one the handle was made
	// with, unless the container was started again since (Start): the
	// record tells of the later run.
	run := r.owned(c.ID)
	if run == nil {
		run = c.run
	}
	if run != nil && !startedAt.IsZero() && !run.rec.State.StartedAt.Equal(startedAt) {
		run = nil // another run's; the record says how the one asked for is
	}
	if run != nil {
		select {
		case <-run.done:
			// Asked for this run (startedAt), its end is the answer; else
			// the record may tell of a later start to wait for.
			if !startedAt.IsZero() || !r.startedSince(c.ID, run) {
				return run.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Owned elsewhere: wait for the process through a pidfd, then for the
	// owner to record the exit. The wait lock, held shared, keeps an
	// auto-removed container's record until this waiter has read its exit
	// (see awaitWaiters); without it the owner removed the record right
	// after the exit and a Wait begun before the exit failed with
	// ErrNotFound (TestLifetimeAutoRemove).
	unlockWait, err := r.store.Lock(ctx, "wait-"+c.ID, false)
	if err != nil {
		return err
	}
	return r.waitRecorded(ctx, c, startedAt, unlockWait, false)
}

// waitRecorded is waitContainer's wait for the record to tell of the exit,
// the wait lock held (unlockWait releases it). seenRunning says the caller
// saw the container running before it took the lock.
func (r *Runtime) waitRecorded(ctx context.Context, c *Container, startedAt time.Time, unlockWait func(), seenRunning bool) error {
	// A container found waiting out its restart back-off is waited for
	// through its next run, as docker's wait does (docker counts it
	// running); one seen running is answered at its exit, restarted or not.
	firstStarts := -1
	for {
		rec, err := r.currentRecord(c.ID)
		if err != nil {
			unlockWait()
			return err
		}
		if firstStarts < 0 {
			firstStarts = rec.Starts
		}
		// A run too short for a poll to see running still counts.
		seenRunning = seenRunning || rec.State.Running || rec.Starts != firstStarts
		if !startedAt.IsZero() && !rec.State.StartedAt.Equal(startedAt) {
			unlockWait()
			return nil // that run ended; this is another's record
		}
		if rec.neverStarted() {
			unlockWait()
			return nil // not running, as docker wait answers at once
		}
		if !rec.State.Running && rec.State.Status != statusCreated && (seenRunning || !rec.State.Restarting) {
			unlockWait()
			var exitErr error
			if rec.State.ExitCode != 0 {
				sig := 0
				if rec.State.ExitCode > 128 && rec.State.ExitCode < 128+65 {
					sig = rec.State.ExitCode - 128
				}
				exitErr = &ExitError{Code: rec.State.ExitCode, Signal: sig, OOMKilled: rec.State.OOMKilled}
			}
			if rec.Config.AutoRemove {
				// As for the owner's Wait: return once the container is
				// removed and its name free, not just exited.
				if err := r.awaitRemoval(ctx, c.ID, rec.Name); err != nil {
					return err
				}
			}
			return exitErr
		}
		if rec.creatorGone() && r.settleCreated(c.ID, errCreatorGone) {
			continue // read what it was settled as
		}
		delay := 10 * time.Millisecond
		if rec.State.Running && rec.alive() {
			if fd, err := unix.PidfdOpen(rec.State.Pid, 0); err == nil {
				waitPidfd(ctx, fd)
				unix.Close(fd)
				delay = time.Millisecond
			}
		}
		select {
		case <-ctx.Done():
			unlockWait()
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// awaitRemoval waits until an auto-removed container's record is gone.
// It gives up quietly after a while: an owner that died before removing
// leaves the container to the next New's sweep.
func (r *Runtime) awaitRemoval(ctx context.Context, id, name string) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		// removeContainerFiles renames the directory away first and frees
		// the name last.
		if _, err := os.Stat(filepath.Join(r.containerDir(id), recordName)); errors.Is(err, os.ErrNotExist) && !r.nameHeldBy(name, id) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// awaitWaiters lets the Waits of other programs on a container about to
// be removed (auto-removed, or by Remove), which hold its wait lock
// shared, read the exit just recorded before the record goes. It gives up
// after a few seconds so that a stuck waiter cannot keep the container.
func (r *Runtime) awaitWaiters(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if unlock, err := r.store.Lock(ctx, "wait-"+id, true); err == nil {
		unlock()
	}
}

// waitPidfd blocks until the process exits or ctx ends.
func waitPidfd(ctx context.Context, fd int) {
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 100)
		if n > 0 {
			return
		}
	}
}

// killCgroup kills every process in container id's cgroup.
func (r *Runtime) killCgroup(id string) error {
	cg, err := cgroup.Load(r.cgroupPath(id))
	if err != nil {
		return err
	}
	return cg.Kill()
}

// exitedWithin reports whether the process of pidfd has exited (reaped or
// not), or does within ms milliseconds.
func exitedWithin(fd, ms int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, ms)
	return n > 0
}

// Signal sends sig to the container's first process (docker kill -s). A
// container that is not running fails with ErrNotRunning. For a container
// with a restart policy (WithRestartPolicy), a signal that stops it, as
// docker kill counts them, keeps the policy from restarting it once it
// exits: SIGKILL, the container's stop signal, or any signal if neither
// the image nor WithStopSignal set one. Such a signal to a container
// waiting out its back-off (restarting) calls the restart off; another
// does nothing to it. Either returns nil. A start in progress elsewhere is
// waited for first.
func (c *Container) Signal(ctx context.Context, sig Signal) error {
	rec, err := c.rt.runToEnd(ctx, c, func(rec *containerRecord) bool {
		stop, err := parseSignal(rec.Config.StopSignal)
		return sig == syscall.SIGKILL || rec.Config.StopSignal == "" || (err == nil && sig == stop)
	})
	if err != nil {
		return err
	}
	if rec == nil {
		return nil // a restart called off
	}
	return c.signalRun(rec, sig)
}

// runToEnd returns container c's record for Stop or Signal, or nil when
// there is no process to signal. A start in progress elsewhere (the
// monitor's restart among them) is waited out first, as docker's
// container lock orders the two. stopping(rec) says whether its user ends
// it: the record is marked so (endByUser), also without a restart policy
// (Update may give it one before the exit), and a pending restart called
// off.
func (r *Runtime) runToEnd(ctx context.Context, c *Container, stopping func(*containerRecord) bool) (*containerRecord, error) {
	for {
		rec, err := r.currentRecord(c.ID)
		switch {
		case err != nil:
			return nil, err
		case rec.starting():
			if _, err := r.notStarting(ctx, c.ID); err != nil {
				return nil, err
			}
			continue
		case !(rec.State.Running || rec.State.Restarting):
			// One whose owner died, or whose policy's restart its monitor
			// left: see callOffUnwatched.
			if stopping(rec) && (rec.State.Status == statusDead || rec.Config.Restart.restarts()) {
				movedOn, err := r.callOffUnwatched(ctx, rec.ID)
				if err != nil {
					return nil, err
				}
				if movedOn {
					time.Sleep(time.Millisecond)
					continue
				}
			}
			return rec, nil
		case !stopping(rec):
			if rec.State.Restarting {
				return nil, nil
			}
			return rec, nil
		}
		switch found, err := r.endByUser(ctx, rec); {
		case err != nil:
			return nil, err
		case found == endRun:
			return rec, nil
		case found == endCalledOff:
			return nil, nil
		}
		time.Sleep(time.Millisecond) // it moved on: read it again
	}
}

// signalRun sends sig to the first process of the run rec records, if it
// still runs.
func (c *Container) signalRun(rec *containerRecord, sig Signal) error {
	if !rec.State.Running || !rec.alive() {
		return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	fd, ok := rec.pinFirstProcess()
	if !ok {
		return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
		}
		return fmt.Errorf("signalling container %s: %w", c.Name, err)
	}
	return nil
}

// Stop sends the container's stop signal (WithStopSignal's, else the
// image's STOPSIGNAL, else SIGTERM), waits up to timeout for it to exit,
// then kills every process of the container with SIGKILL (docker stop
// -t). A negative timeout means the container's stop timeout
// (DefaultStopTimeout unless WithStopTimeout set one). Stopping a
// container that is not running is not an error. A stopped container's
// restart policy leaves it exited, and a restart it had pending is called
// off (docker stop). A start in progress elsewhere is waited for first.
func (c *Container) Stop(ctx context.Context, timeout time.Duration) (retErr error) {
	rec, err := c.rt.runToEnd(ctx, c, func(*containerRecord) bool { return true })
	if err != nil || rec == nil || !rec.State.Running {
		return err
	}
	defer func() {
		if retErr == nil {
			c.rt.containerEvent("stop", rec)
		}
	}()
	if timeout < 0 {
		timeout = rec.Config.StopTimeout
		if timeout == 0 {
			timeout = DefaultStopTimeout
		}
	}
	sig, err := parseSignal(rec.Config.StopSignal)
	if err != nil {
		return err
	}
	if err := c.signalRun(rec, sig); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	// Only the run signalled is waited for and killed: a Start elsewhere
	// may run the container again as soon as it exits.
	wctx, cancel := context.WithTimeout(ctx, timeout)
	werr := c.rt.waitContainer(wctx, c, rec.State.StartedAt)
	cancel()
	if werr == nil || !errors.Is(werr, context.DeadlineExceeded) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	cur, err := c.rt.readRecord(c.ID)
	if err != nil || !cur.State.StartedAt.Equal(rec.State.StartedAt) {
		return nil
	}
	// SIGKILL to the run's first process ends its pid namespace, every
	// process of the run with it; the cgroup, whose path the next run
	// takes, is killed only to reach a paused run's frozen processes.
	if cur.State.Status != statusPaused || c.rt.killCgroup(c.ID) != nil {
		c.signalRun(rec, syscall.SIGKILL)
	}
	if err := c.rt.waitContainer(ctx, c, rec.State.StartedAt); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}

// RemoveOption configures Remove.
type RemoveOption interface{ applyRemove(*removeConfig) }

type removeConfig struct{ force, volumes bool }

type removeOptionFunc func(*removeConfig)

func (f removeOptionFunc) applyRemove(c *removeConfig) { f(c) }

// WithForce kills a running container before removing it (docker rm -f),
// also one whose state file cannot be read (its processes are found
// through its cgroup). Default: removing a running container fails with
// ErrInUse. For Volume.Remove it means something else: see there (it
// kills nothing). WithRemoveVolumes applies to containers only.
func WithForce() RemoveOption { return removeOptionFunc(func(c *removeConfig) { c.force = true }) }

// WithRemoveVolumes also removes the container's anonymous volumes (docker
// rm -v): those it made for the image's VOLUMEs and for Mounts without a
// Source, unless another container still uses one. Default: they are kept,
// as docker keeps them; PruneVolumes removes them later.
func WithRemoveVolumes() RemoveOption {
	return removeOptionFunc(func(c *removeConfig) { c.volumes = true })
}

// Remove deletes the container and everything it made: its writable
// layer, log and state (docker rm). A running or restarting container is
// refused (ErrInUse) unless WithForce, which kills it, also one still
// starting; Waits on it begun elsewhere read its exit before it goes. It
// is idempotent: removing a container that is gone is not an error.
func (c *Container) Remove(ctx context.Context, opts ...RemoveOption) error {
	var cfg removeConfig
	for _, o := range opts {
		o.applyRemove(&cfg)
	}
	rec, err := c.rt.currentRecord(c.ID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if errors.Is(err, errUnreadableRecord) && cfg.force {
		return c.rt.removeDamaged(ctx, c.ID)
	}
	if err != nil {
		return err
	}
	// Wait for the owner to let go (it records the exit first), then for
	// the Waits begun elsewhere to read that exit: docker's wait answers
	// 137 to a force removal, not "no such container". The owner holds its
	// lock from before the start to the recorded exit, so the record is
	// read again while it is held: a container still starting (created)
	// may turn running, and is killed then, or refused without force.
	// Taken, the lock is held to the end: a Start elsewhere takes it to
	// run the container again.
	var unlockOwner func()
	for delay := 500 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
		if rec.State.Restarting {
			if !cfg.force {
				return fmt.Errorf("cannot remove restarting container %s: stop it first or force removal: %w", c.Name, ErrInUse)
			}
			c.Signal(ctx, syscall.SIGKILL) // calls the restart off
		}
		if rec.State.Running {
			if !cfg.force {
				return fmt.Errorf("cannot remove running container %s: stop it first or force removal: %w", c.Name, ErrInUse)
			}
			// The signal first: it keeps a restart policy from
			// restarting what the cgroup kill ends.
			c.Signal(ctx, syscall.SIGKILL)
			c.rt.killCgroup(c.ID)
			// The run killed, not one started since (the loop finds that).
			if err := c.rt.waitContainer(ctx, c, rec.State.StartedAt); err != nil && ctx.Err() != nil {
				return err
			}
		}
		if unlock, ok := c.rt.store.TryLock("owner-"+c.ID, true); ok {
			// Read again under it: a Start may have run it since. One
			// that says running with its process gone lost its owner
			// (a killed monitor): nothing runs, and no one else would
			// ever record its end.
			fresh, err := c.rt.readRecord(c.ID)
			if err == nil && (!fresh.State.Running || fresh.processGone()) && !fresh.starting() {
				unlockOwner = unlock
				break
			}
			unlock()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the owner of container %s: %w", c.Name, ctx.Err())
		case <-time.After(delay):
		}
		if rec, err = c.rt.currentRecord(c.ID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
	}
	defer unlockOwner()
	c.rt.awaitWaiters(c.ID)
	// A copy from or to the stopped container, or its export, holds its
	// lock while its overlay is mounted: removed meanwhile, its upper
	// directory would become a spare that the next container mounts too.
	unlock, err := c.rt.store.Lock(ctx, "ctr-"+c.ID, true)
	if err != nil {
		return err
	}
	defer unlock()
	c.rt.removeContainerFiles(c.ID, rec.Name)
	if cfg.volumes {
		c.rt.removeAnonymousVolumes(rec.Config.Mounts)
	}
	return nil
}

// removeDamaged is a forced Remove of container id, whose record does not
// parse: its processes are killed through its cgroup, which needs no
// record, and once its owner has let go (recording the exit fails, the
// lock goes all the same) it is removed as the sweep removes one
// (removeWithoutRecord). Without it, such a container could be removed by
// no one while a monitor owned it.
func (r *Runtime) removeDamaged(ctx context.Context, id string) error {
	r.killCgroup(id)
	unlock, err := r.store.Lock(ctx, "owner-"+id, true)
	if err != nil {
		return err
	}
	defer unlock()
	r.removeWithoutRecord(id)
	return nil
}

// removeContainerFiles deletes a container's directory, name and cgroup.
// The caller makes sure nothing runs in it.
func (r *Runtime) removeContainerFiles(id, name string) {
	r.removeDir(id, name, r.deleteCgroup(id))
}

// deleteCgroup kills whatever runs in container id's cgroup and deletes
// it, and reports whether it is gone (or was never made).
func (r *Runtime) deleteCgroup(id string) bool {
	cg, err := cgroup.Load(r.cgroupPath(id))
	if err != nil {
		return true
	}
	cg.Kill()
	return cg.Delete() == nil
}

// removeContainerDir is removeContainerFiles for a container whose cgroup
// is known to be gone.
func (r *Runtime) removeContainerDir(id, name string) { r.removeDir(id, name, true) }

// removeDir deletes the container's directory and name. Its
// directory becomes a spare only when no process of the container is left
// (spare): one still exiting could hold the overlay mounted, and the next
// container would share its upper directory.
func (r *Runtime) removeDir(id, name string, spare bool) {
	dir := r.containerDir(id)
	name = r.heldName(name, id)
	// Its destroy event, once this call moved it away: a removal racing
	// another (a finish's auto-removal and a Remove) or a Run that failed
	// before its record records none.
	_, noRecord := os.Lstat(filepath.Join(dir, recordName))
	destroyed := func() {
		if noRecord == nil {
			r.emit("container", "destroy", id, map[string]string{"name": name})
		}
	}
	// Rename first so a half-removed container is never listed; what is
	// under tmp/ is emptied into a spare or deleted in the background
	// (Close waits for it, and New's sweep deletes what a program that
	// died left there, once a minute old: until then it may be a live
	// program's).
	tmp := filepath.Join(r.root, "tmp", "rm-"+id)
	if spare && r.leaveSpares && wroteNothing(dir) &&
		os.Rename(dir, filepath.Join(r.root, "tmp", store.LeftPrefix+id)) == nil {
		// Nothing of the container's to free: the next Runtime makes a
		// spare of it (takeLeftSpares).
		r.releaseName(name, id)
		destroyed()
	} else if err := os.Rename(dir, tmp); err == nil {
		// The name goes first: keepSpare keeps the name file only once
		// names/<name> no longer links to it.
		r.releaseName(name, id)
		destroyed()
		r.inBackground(func() {
			if !spare || !r.keepSpare(tmp) {
				os.RemoveAll(tmp)
			}
		})
	} else {
		if !errors.Is(err, os.ErrNotExist) { // else another removal moved it first
			os.RemoveAll(dir)
			destroyed()
		}
		r.releaseName(name, id)
	}
	// Lock files of a container made before object locks (store's lock.go).
	for _, l := range []string{"owner-", "ctr-", "wait-"} {
		os.Remove(filepath.Join(r.root, "locks", l+id))
	}
}

// makeContainerDir makes what a container's directory holds, where a
// spare did not bring it.
func makeContainerDir(dir string) error {
	for _, d := range spareSubdirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	// overlayfs gives the container's / the mode of the upper directory:
	// at 0700, a non-root user could not reach any path, so every program
	// it exec'd failed with EACCES (TestRunUser). 0755 is the mode of an
	// image's root; the container directory above stays 0700.
	return os.Chmod(filepath.Join(dir, "upper"), 0o755)
}

// Stats returns the container's current resource use (docker stats
// --no-stream).
func (c *Container) Stats(ctx context.Context) (ContainerStats, error) {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return ContainerStats{}, err
	}
	if !rec.State.Running {
		return ContainerStats{}, fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	cg, err := cgroup.Load(c.rt.cgroupPath(c.ID))
	if err != nil {
		return ContainerStats{}, fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	s, err := cg.Stats()
	if err != nil {
		return ContainerStats{}, err
	}
	st := ContainerStats{CPUNanos: s.CPUUsageNanos, MemoryUsage: s.MemoryUsage, MemoryLimit: s.MemoryLimit, Pids: s.Pids}
	if mode, _ := networkModeOf(&rec.Config); mode != "host" {
		st.NetRx, st.NetTx = netDevBytes(rec.State.Pid)
	}
	return st, nil
}

// netDevBytes sums the bytes received and sent by the interfaces of the
// network namespace of process pid, loopback left out (docker stats'
// NET I/O), from its /proc/<pid>/net/dev; zero if it cannot be read.
func netDevBytes(pid int) (rx, tx uint64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/dev")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, counters, ok := strings.Cut(line, ":")
		f := strings.Fields(counters)
		if !ok || strings.TrimSpace(name) == "lo" || len(f) < 9 {
			continue // the two header lines have no counters after a colon
		}
		r, _ := strconv.ParseUint(f[0], 10, 64)
		t, _ := strconv.ParseUint(f[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}

// openPTY opens a new pseudo-terminal pair.
func openPTY() (master, slave *os.File, err error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(m)
		return nil, nil, fmt.Errorf("unlocking pty: %w", err)
	}
	n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		unix.Close(m)
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	s, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(m)
		return nil, nil, fmt.Errorf("opening %s: %w", name, err)
	}
	return os.NewFile(uintptr(m), "/dev/ptmx"), os.NewFile(uintptr(s), name), nil
}
