package berth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/caps"
	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

// throwaway reports whether the container's root filesystem goes with the
// container's exit: an auto-removed container's and a build step's (whose
// upper dir is read once for its layer, then removed). Its overlay is then
// volatile (initproc.Spec.Volatile), as podman's --rm containers' are: no
// sync of the host's filesystem when it is unmounted.
func (c *containerConfig) throwaway() bool { return c.AutoRemove || c.BuildKitGroups }

// shellOf is an image's SHELL, through which a shell-form command runs
// (RUN, CMD, a CMD-SHELL health check), or docker's /bin/sh -c.
func shellOf(shell []string) []string {
	if len(shell) == 0 {
		return []string{"/bin/sh", "-c"}
	}
	return shell
}

// defaultPath is the PATH docker gives a container whose image sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// buildConfig applies docker's rules for what a container runs: ENTRYPOINT
// and CMD from the image, Process.Args replacing CMD, --entrypoint
// replacing ENTRYPOINT and dropping CMD; environment, directory and user
// from the image unless the Process says otherwise.
func buildConfig(img *Image, ref string, p *Process, o *runConfig, id string) (containerConfig, error) {
	cfg := containerConfig{
		Image: ref, ImageID: img.ID, ImageDigest: img.Digest,
		Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd,
		Dir: img.Config.WorkingDir, User: img.Config.User,
		TTY: p.TTY, OpenStdin: p.Stdin != nil || o.openStdin, KeepStdin: o.openStdin, StdinOnce: o.stdinOnce,
		Hostname: o.hostname, Labels: o.labels,
		StopSignal: img.Config.StopSignal, StopTimeout: o.stopTimeout,
		AutoRemove: o.autoRemove, Detached: o.detach, ReadOnly: o.readOnly,
		CapAdd: o.capAdd, CapDrop: o.capDrop, NoNewPrivs: o.noNewPrivs, Seccomp: o.seccomp,
		Resources: o.resources, Rlimits: o.rlimits, BuildKitGroups: o.buildKitGroups,
		Restart: o.restart, ShmSize: o.shmSize, Privileged: o.privileged, Sysctls: o.sysctls,
		Init: o.init, GroupAdd: o.groupAdd, DeviceCgroupRules: o.deviceRules,
		LogMaxSize: o.logMaxSize, LogMaxFiles: o.logMaxFiles, NoLog: o.noLog, OomScoreAdj: o.oomScoreAdj,
		SeccompProfile: o.seccompProfile,
	}
	if o.stdinOnce && !o.openStdin {
		return cfg, fmt.Errorf("%w: WithStdinOnce closes an input WithOpenStdin keeps open; it has no use without it", ErrInvalid)
	}
	if o.oomScoreAdj < -1000 || o.oomScoreAdj > 1000 {
		return cfg, fmt.Errorf("%w: Invalid value %d, range for oom score adj is [-1000, 1000]", ErrInvalid, o.oomScoreAdj)
	}
	switch {
	case o.logMaxSize < 0 || o.logMaxFiles < 0:
		return cfg, fmt.Errorf("%w: log rotation: negative size %d or file count %d", ErrInvalid, o.logMaxSize, o.logMaxFiles)
	case o.logMaxFiles > 1 && o.logMaxSize == 0:
		return cfg, fmt.Errorf("%w: log rotation: %d files need a size to rotate at", ErrInvalid, o.logMaxFiles)
	case o.logMaxFiles > 100:
		return cfg, fmt.Errorf("%w: log rotation: %d files; at most 100 are kept", ErrInvalid, o.logMaxFiles)
	case o.noLog && o.logMaxSize > 0:
		return cfg, fmt.Errorf("%w: WithoutLog and WithLogRotation: there is no log to rotate", ErrInvalid)
	}
	if o.privileged {
		// As docker: no seccomp filter, and no_new_privs only when asked.
		cfg.Seccomp = false
		cfg.NoNewPrivs = o.nnpSet && o.noNewPrivs
	}
	if err := checkSysctls(o.sysctls, o.networkMode == "host", o.ipcMode); err != nil {
		return cfg, err
	}
	for _, spec := range o.devices {
		d, err := parseDevice(spec)
		if err != nil {
			return cfg, err
		}
		cfg.Devices = append(cfg.Devices, d)
	}
	for _, rule := range o.deviceRules {
		if _, err := parseDeviceCgroupRule(rule); err != nil {
			return cfg, err
		}
	}
	exposed := maps.Clone(img.Config.ExposedPorts)
	for _, spec := range o.expose {
		ports, err := exposedPorts(spec)
		if err != nil {
			return cfg, fmt.Errorf("%w: WithExpose: %v", ErrInvalid, err)
		}
		if exposed == nil {
			exposed = map[string]struct{}{}
		}
		for _, p := range ports {
			exposed[p] = struct{}{}
		}
	}
	cfg.ExposedPorts = slices.Sorted(maps.Keys(exposed))
	if o.shmSize < 0 {
		return cfg, fmt.Errorf("%w: SHM size can not be less than 0", ErrInvalid)
	}
	if err := o.restart.check(o.detach, o.autoRemove); err != nil {
		return cfg, err
	}
	for _, l := range img.Layers {
		cfg.ChainIDs = append(cfg.ChainIDs, l.ChainID)
	}
	if o.hasEntry {
		cfg.Entrypoint, cfg.Cmd = o.entrypoint, nil
	}
	if len(p.Args) > 0 {
		cfg.Cmd = p.Args
	}
	if err := checkLimits(o.resources); err != nil {
		return cfg, err
	}
	cfg.Args = append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	if len(cfg.Args) == 0 {
		return cfg, fmt.Errorf("%w: no command specified: the image has no ENTRYPOINT or CMD and Process.Args is empty", ErrInvalid)
	}
	if p.Dir != "" {
		cfg.Dir = p.Dir
	}
	if cfg.Dir == "" {
		cfg.Dir = "/"
	}
	if !strings.HasPrefix(cfg.Dir, "/") {
		return cfg, fmt.Errorf("%w: working directory %q is not absolute", ErrInvalid, cfg.Dir)
	}
	if p.User != "" {
		cfg.User = p.User
	}
	if o.stopSignal != "" {
		cfg.StopSignal = o.stopSignal
	}
	if _, err := parseSignal(cfg.StopSignal); err != nil {
		return cfg, err
	}
	switch {
	case o.utsMode == "host" && o.hostname != "":
		return cfg, fmt.Errorf("%w: conflicting options: hostname and the UTS mode host", ErrInvalid)
	case o.utsMode == "host" && o.domainname != "":
		return cfg, fmt.Errorf("%w: conflicting options: domainname and the UTS mode host", ErrInvalid)
	case o.utsMode == "host":
		// The host's, which the container shares: what it shows in
		// $HOSTNAME, /etc/hostname and inspect, as in docker.
		var err error
		if cfg.Hostname, err = os.Hostname(); err != nil {
			return cfg, err
		}
	case cfg.Hostname == "":
		cfg.Hostname = id[:12]
	}
	cfg.Domainname = o.domainname
	for _, n := range []struct{ kind, name string }{{"hostname", cfg.Hostname}, {"domainname", cfg.Domainname}} {
		if len(n.name) > 64 || hasSpaceOrControl(n.name) {
			// The kernel takes up to 64 bytes; white space or a control
			// character would add lines to the container's /etc/hosts.
			return cfg, fmt.Errorf("%w: %s %q: want at most 64 characters, no white space or control characters", ErrInvalid, n.kind, n.name)
		}
	}
	cfg.Env = mergeEnv(img.Config.Env, p.Env)
	if !hasEnv(cfg.Env, "PATH") {
		cfg.Env = append([]string{"PATH=" + defaultPath}, cfg.Env...)
	}
	if !hasEnv(cfg.Env, "HOSTNAME") {
		cfg.Env = append(cfg.Env, "HOSTNAME="+cfg.Hostname)
	}
	if p.TTY && !hasEnv(cfg.Env, "TERM") {
		cfg.Env = append(cfg.Env, "TERM=xterm")
	}
	if _, err := capabilitySet(cfg.CapAdd, cfg.CapDrop); err != nil {
		return cfg, err
	}
	hc, err := mergeHealthcheck(img.Config.Healthcheck, o.healthcheck)
	if err != nil {
		return cfg, err
	}
	cfg.Healthcheck, cfg.Shell = hc, img.Config.Shell
	for _, rl := range cfg.Rlimits {
		if _, ok := rlimitTypes[rl.Name]; !ok {
			return cfg, fmt.Errorf("%w: unknown ulimit %q", ErrInvalid, rl.Name)
		}
	}
	return cfg, nil
}

// namespacedSysctls are the kernel parameters outside net.* and
// fs.mqueue.* that docker lets a container set: those of its IPC
// namespace.
var namespacedSysctls = []string{"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}

// checkSysctls refuses a kernel parameter docker refuses (see
// WithSysctls), net.* ones with the host's network, IPC ones with the
// host's IPC namespace, and a name that is no plain dotted name.
func checkSysctls(sysctls map[string]string, hostNetwork bool, ipcMode string) error {
	sharedIPC := ipcMode == "host" || strings.HasPrefix(ipcMode, "container:")
	for k := range sysctls {
		if hostNetwork && strings.HasPrefix(k, "net.") {
			return fmt.Errorf("%w: sysctl %q is not allowed with network mode host: it would change the host's network namespace", ErrInvalid, k)
		}
		if sharedIPC && (strings.HasPrefix(k, "fs.mqueue.") || slices.Contains(namespacedSysctls, k)) {
			return fmt.Errorf("%w: sysctl %q is not allowed with IPC mode %s: it would change the IPC namespace it shares (the host's or another container's)", ErrInvalid, k, ipcMode)
		}
		// Dotted parts of letters, digits, _ and -: no "/", no "..".
		for _, part := range strings.Split(k, ".") {
			if part == "" || strings.Trim(part, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
				return fmt.Errorf("%w: sysctl %q: not a kernel parameter name", ErrInvalid, k)
			}
		}
		if !strings.HasPrefix(k, "net.") && !strings.HasPrefix(k, "fs.mqueue.") && !slices.Contains(namespacedSysctls, k) {
			return fmt.Errorf("%w: sysctl %q is not allowed: only those of the container's namespaces are (net.*, fs.mqueue.*, %s)",
				ErrInvalid, k, strings.Join(namespacedSysctls, ", "))
		}
	}
	return nil
}

func hasNetSysctl(sysctls map[string]string) bool {
	for k := range sysctls {
		if strings.HasPrefix(k, "net.") {
			return true
		}
	}
	return false
}

// mergeEnv overlays KEY=VALUE pairs on base, replacing keys base has.
func mergeEnv(base, over []string) []string {
	out := append([]string{}, base...)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, old := range out {
			if ok, _, _ := strings.Cut(old, "="); ok == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// capabilitySet is docker's default set with adds and drops applied, by
// docker's rules (moby's TweakCapabilities): with --cap-add ALL every
// capability but the dropped ones; with --cap-drop ALL exactly the added
// ones; otherwise the default set minus the drops plus the adds. (Applying
// adds then drops, as this did before, turned the common
// "--cap-drop ALL --cap-add NET_BIND_SERVICE" into no capability at all.)
func capabilitySet(add, drop []string) ([]string, error) {
	parse := func(flag string, names []string) (set caps.Set, all bool, err error) {
		for _, n := range names {
			n = strings.ToUpper(n)
			if n == "ALL" {
				all = true
				continue
			}
			if !strings.HasPrefix(n, "CAP_") {
				n = "CAP_" + n
			}
			c, err := caps.Parse(n)
			if err != nil {
				return 0, false, fmt.Errorf("%w: %s %q: %v", ErrInvalid, flag, n, err)
			}
			set = set.Add(c)
		}
		return set, all, nil
	}
	added, addAll, err := parse("--cap-add", add)
	if err != nil {
		return nil, err
	}
	dropped, dropAll, err := parse("--cap-drop", drop)
	if err != nil {
		return nil, err
	}
	var set caps.Set
	switch {
	case addAll:
		// ALL means all this program can give: a capability missing from
		// its own bounding set (CAP_SYS_RESOURCE on this project's
		// machines) made capset fail and the container not start.
		set = everyCapability() &^ dropped
	case dropAll:
		set = added
	default:
		set = caps.DefaultSet&^dropped | added
	}
	return capNames(set), nil
}

// capabilities is the container's capability set: every one for a
// privileged container (docker ignores --cap-add and --cap-drop then),
// else capabilitySet's.
func (c *containerConfig) capabilities() ([]string, error) {
	if c.Privileged {
		return capNames(everyCapability()), nil
	}
	return capabilitySet(c.CapAdd, c.CapDrop)
}

// capNames names set's capabilities; an empty set is an empty list,
// which for the child stage means none (nil means docker's default).
func capNames(set caps.Set) []string {
	if names := set.Names(); names != nil {
		return names
	}
	return []string{}
}

// everyCapability is every capability this program can give: the
// kernel's that are in its own bounding set.
func everyCapability() caps.Set { return caps.All() & caps.Supported() & boundingSet() }

// boundingSet is the calling thread's capability bounding set.
func boundingSet() caps.Set {
	var set caps.Set
	last := caps.Last()
	for c := caps.Cap(0); c <= last; c++ {
		if on, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && on == 1 {
			set = set.Add(c)
		}
	}
	return set
}

var rlimitTypes = map[string]int{
	"core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE,
	"locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK, "msgqueue": unix.RLIMIT_MSGQUEUE,
	"nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC,
	"rss": unix.RLIMIT_RSS, "rtprio": unix.RLIMIT_RTPRIO, "rttime": unix.RLIMIT_RTTIME,
	"sigpending": unix.RLIMIT_SIGPENDING, "stack": unix.RLIMIT_STACK, "as": unix.RLIMIT_AS,
}

// parseSignal accepts "SIGTERM", "TERM", "15"; empty means SIGTERM.
func parseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGTERM, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("%w: signal %q", ErrInvalid, s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%w: unknown signal %q", ErrInvalid, s)
}

// initSpec turns a container record into the child stage's spec.
func (r *Runtime) initSpec(ctx context.Context, rec *containerRecord, files map[string][]byte, netns string) (*initproc.Spec, error) {
	cfg := &rec.Config
	dir := r.containerDir(rec.ID)
	s := &initproc.Spec{
		Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Rootfs: filepath.Join(dir, "rootfs"),
		Volatile:       cfg.throwaway(),
		ReadonlyRootfs: cfg.ReadOnly, Hostname: cfg.Hostname, Domainname: cfg.Domainname, ShmSize: cfg.ShmSize,
		Args: cfg.Args, Env: cfg.Env, Dir: cfg.Dir, User: cfg.User,
		NoNewPrivileges: cfg.NoNewPrivs, BuildKitGroups: cfg.BuildKitGroups,
		StateDir: dir, TTY: cfg.TTY, Detached: cfg.Detached,
		Files: files,
		NetNS: netns, Sysctls: cfg.Sysctls, Init: cfg.Init, GroupAdd: cfg.GroupAdd,
	}
	if s.User == "" {
		s.User = "0"
	}
	// overlayfs wants the topmost lower layer first: the image's init
	// layer, where there is one, then the image's layers.
	for i := len(cfg.ChainIDs) - 1; i >= 0; i-- {
		fs, err := r.snaps.FS(cfg.ChainIDs[i])
		if err != nil {
			return nil, err
		}
		s.Lower = append(s.Lower, fs)
	}
	r.stackInitLayer(ctx, cfg.ChainIDs, s)
	var err error
	if s.Capabilities, err = cfg.capabilities(); err != nil {
		return nil, err
	}
	if s.CgroupFS, err = cgroupFS(); err != nil {
		return nil, err
	}
	if hasNetSysctl(cfg.Sysctls) {
		// The network the container joins (NetNS, set once the
		// network is prepared) may be the host's: the child refuses
		// net.* there (see Spec.HostNetNS).
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
			return nil, err
		}
		s.HostNetNS = st.Ino
	}
	s.Privileged = cfg.Privileged
	if cfg.Seccomp {
		if s.SeccompFilter, err = r.seccompFilter(s.Capabilities, cfg.SeccompProfile); err != nil {
			return nil, err
		}
	}
	for _, rl := range cfg.Rlimits {
		s.Rlimits = append(s.Rlimits, initproc.Rlimit{Type: rlimitTypes[rl.Name], Soft: rl.Soft, Hard: rl.Hard})
	}
	s.Mounts = r.mountSpecs(cfg.Mounts)
	return s, nil
}

// cgroupFS is what a container's /sys/fs/cgroup holds on this host,
// worked out once per process.
var cgroupFS = sync.OnceValues(func() ([]initproc.CgroupFS, error) {
	hs, err := cgroup.Hierarchies()
	if err != nil {
		return nil, fmt.Errorf("listing the host's cgroup hierarchies: %w", err)
	}
	fs := make([]initproc.CgroupFS, len(hs))
	for i, h := range hs {
		fs[i] = initproc.CgroupFS{Dir: h.Dir, Options: h.Options, Links: h.Links}
	}
	return fs, nil
})

// cgroupResources converts a container's limits for the cgroup package.
func cgroupResources(res Resources) cgroup.Resources {
	return cgroup.Resources{MemoryLimit: res.Memory, MemorySwap: res.MemorySwap, NanoCPUs: res.NanoCPUs, CPUShares: res.CPUShares,
		CPUPeriod: res.CPUPeriod, CPUQuota: res.CPUQuota, MemoryReservation: res.MemoryReservation,
		PidsLimit: res.PidsLimit, CpusetCpus: res.CpusetCpus, CpusetMems: res.CpusetMems, RestrictDevices: true}
}

// stdio is how a started container's standard streams are wired.
type stdio struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// running is a container process this process started and owns: the
// calling program for attached containers, the monitor for detached ones.
type running struct {
	rt        *Runtime
	rec       *containerRecord
	proc      *initproc.Process
	cg        *cgroup.Cgroup
	cgDeleted bool   // by finish
	unlock    func() // releases the owner lock
	net       *netSetup
	log       *logFile
	copiers   sync.WaitGroup
	closers   []io.Closer
	master    *os.File   // the terminal's master side (Process.TTY), for ResizeTTY
	stdin     *stdinFIFO // WithOpenStdin's, closed at the exit

	done chan struct{}
	err  error // the exit, once done is closed: nil or *ExitError
	// restarting, once done is closed: the container's restart policy
	// has the monitor start it again (monitor.supervise), after a run
	// that lasted ran.
	restarting bool
	ran        time.Duration
}

// claimStart takes the owner lock of a container about to be launched,
// which must be in state "created".
func (r *Runtime) claimStart(rec *containerRecord) (unlock func(), err error) {
	if unlock, err = r.lockCreated(rec.ID, time.Second); err != nil {
		return nil, fmt.Errorf("container %s is owned by another program", rec.Name)
	}
	return unlock, nil
}

// launch starts the container described by rec, which is in state
// "created" and whose owner lock the caller took (claimStart), and returns
// once its process runs the user's program. The running container keeps
// the lock. On failure everything it made is undone and the record says
// why.
func (r *Runtime) launch(ctx context.Context, rec *containerRecord, std stdio, unlock func()) (_ *running, retErr error) {
	tr := newTracer("launch")
	defer tr.done()
	run := &running{rt: r, rec: rec, unlock: unlock, done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			run.abort(retErr)
		}
	}()
	spec, err := r.initSpec(ctx, rec, nil, "")
	if err != nil {
		return nil, err
	}
	tr.mark("spec")
	direct := initproc.DirectSupported(spec)
	// Without a direct start, the child stage starts first, so that its
	// process start (the Go runtime of this binary coming up, most of a
	// start-up) runs on another CPU while this goroutine makes the cgroup,
	// the network and the spec: a warm child the Runtime kept, or one
	// started now. A terminal needs the cold path, which starts the child
	// on the pty.
	var warm *initproc.Warm
	if !direct && !rec.Config.TTY && rec.Config.PidMode == "" { // see Spec.PidNS
		if warm = r.takeWarm(rec.Config.Detached); warm == nil {
			warm, _ = initproc.Prestart(rec.Config.Detached) // on failure, the cold path says why
		}
		tr.mark("prestart")
	}
	defer func() {
		if warm != nil {
			warm.Close()
		}
	}()
	dir := r.containerDir(rec.ID)
	if rec.Config.KeepStdin && std.stdin == nil {
		// (docker closes a terminal's input at no attachment's end.)
		if run.stdin, err = openStdinFIFO(dir, rec.Starts+1, rec.Config.StdinOnce && !rec.Config.TTY); err != nil {
			return nil, err
		}
		std.stdin = run.stdin
	}
	if run.log, err = openLog(dir, rec.Config.LogMaxSize, rec.Config.LogMaxFiles, rec.Config.NoLog); err != nil {
		return nil, err
	}
	tr.mark("log")
	res := cgroupResources(rec.Config.Resources)
	if rec.Config.Privileged {
		res.RestrictDevices, res.AllDevices = false, true
	}
	var devices []initproc.Device
	if devices, res.Devices, err = containerDevices(&rec.Config); err != nil {
		return nil, err
	}
	spec.Devices = append(spec.Devices, devices...)
	if err := r.sharedNamespaces(&rec.Config, spec, &run.closers); err != nil {
		return nil, err
	}
	cgroupPath := r.cgroupPath(rec.ID)
	newCgroup := func() (err error) {
		if run.cg, err = cgroup.New(cgroupPath, res); err != nil {
			return fmt.Errorf("creating the container's cgroup: %w", err)
		}
		return nil
	}
	var cgroupReady func() error // for a direct start
	if direct {
		// The cgroup is made on another CPU while the network and the
		// root filesystem are: the thread joins it only to fork.
		res.PidsLimit = 0 // set once the preparing thread has left the cgroup
		made := make(chan error, 1)
		go func() { made <- newCgroup() }()
		cgroupReady = sync.OnceValue(func() error { return <-made })
		defer cgroupReady() // before the abort above deletes what it made
	} else {
		if err := newCgroup(); err != nil {
			return nil, err
		}
		tr.mark("cgroup")
	}
	// A direct start that makes its own network namespace allocates the
	// network (addresses, endpoint files, the bridge) on another CPU while
	// the thread makes the namespaces and the root filesystem; the thread
	// waits for it only to bind /etc/hosts and the others.
	var netPrepared func() error
	if mode, _ := networkModeOf(&rec.Config); direct && (mode == "bridge" || mode == "none") {
		prepared := make(chan error, 1)
		go func() {
			var err error
			run.net, err = r.prepareNetwork(ctx, rec)
			prepared <- err
		}()
		netPrepared = sync.OnceValue(func() error { return <-prepared })
		defer netPrepared() // before the abort above tears run.net down
	} else {
		if run.net, err = r.prepareNetwork(ctx, rec); err != nil {
			return nil, err
		}
		tr.mark("network")
		spec.Files, spec.NetNS = run.net.files, run.net.netnsPath
	}
	if direct {
		if err := run.startDirect(ctx, spec, std, cgroupReady, netPrepared, tr); err != nil {
			return nil, err
		}
	} else {
		w := warm
		warm = nil
		if err := run.startStage(ctx, spec, w, std, tr); err != nil {
			return nil, err
		}
	}
	pid := run.proc.Pid()
	tr.mark("release")
	for _, c := range run.closers {
		c.Close() // the child's ends of the pipes
	}
	run.closers = nil
	// The whole record, as read or written when the start began: a Connect
	// or Disconnect waits while the container is being started
	// (notStarting), and one made before a start again is in the record
	// that start read under the network lock.
	var healthLog []HealthResult // kept from run to run, as docker keeps it
	if rec.State.Health != nil {
		healthLog = rec.State.Health.Log
	}
	rec.State = ContainerState{Status: statusRunning, Running: true, Pid: pid, StartedAt: time.Now().UTC()}
	if rec.Config.Healthcheck != nil {
		rec.State.Health = &HealthState{Status: HealthStarting, Log: healthLog}
	}
	rec.State.Networks, rec.State.Ports = run.net.state()
	rec.PidStart = procStartTime(pid)
	rec.Starts++
	if err := r.writeRecord(rec); err != nil {
		run.proc.Cmd.Process.Kill()
		run.proc.Wait()
		return nil, err
	}
	r.containerEvent("start", rec)
	r.track(rec.ID, run)
	go run.wait()
	if rec.Config.Healthcheck != nil {
		go run.watchHealth(*rec)
	}
	return run, nil
}

// startStage starts the container through a child stage: warm (closed
// here when stale) or a cold one.
func (run *running) startStage(ctx context.Context, spec *initproc.Spec, warm *initproc.Warm, std stdio, tr *tracer) error {
	var err error
	if warm != nil && warm.Fresh() {
		if run.proc, err = warm.Use(spec); err != nil {
			warm.Close()
			return err
		}
		run.wireWarm(warm, std)
		tr.mark("warm")
	} else {
		if warm != nil {
			warm.Close()
		}
		if run.proc, err = initproc.Command(spec); err != nil {
			return err
		}
		tr.mark("command")
		files, err := run.wire(std)
		if err != nil {
			return err
		}
		run.proc.Cmd.Stdin, run.proc.Cmd.Stdout, run.proc.Cmd.Stderr = files[0], files[1], files[2]
		if err := run.proc.Start(); err != nil {
			return err
		}
		tr.mark("start")
	}
	pid := run.proc.Pid()
	if err := run.cg.Add(pid); err != nil {
		run.proc.Cmd.Process.Kill()
		run.proc.Wait()
		return fmt.Errorf("placing the container in its cgroup: %w", err)
	}
	if err := setOomScoreAdj(pid, run.rec.Config.OomScoreAdj); err != nil {
		run.proc.Cmd.Process.Kill()
		run.proc.Wait()
		return err
	}
	tr.mark("cgadd")
	if err := run.net.attach(ctx, run.rec, pid); err != nil {
		run.proc.Cmd.Process.Kill()
		run.proc.Wait()
		return err
	}
	tr.mark("attach")
	// The stage's setup ends in its exec or an error, but for a setup
	// that cannot report (a seccomp profile that kills only its thread):
	// ctx ending kills it, as an Exec's.
	stop := context.AfterFunc(ctx, func() { run.proc.Cmd.Process.Kill() })
	err = run.proc.Release()
	stop()
	if err != nil {
		run.proc.Wait()
		if ctx.Err() != nil {
			return fmt.Errorf("starting the container: %w (%v)", ctx.Err(), err)
		}
		return asStartError(err)
	}
	return nil
}

// startDirect starts the container without a child stage (see
// initproc.PrepareDirect): a thread of this process makes its namespaces
// and root filesystem, joins its cgroups and gets its network, then forks
// the container's process.
//
// cgroupReady returns once run.cg is made (or why it could not be).
// netPrepared, when not nil, returns once run.net is (or why it could not
// be): until then run.net must not be read.
func (run *running) startDirect(ctx context.Context, spec *initproc.Spec, std stdio, cgroupReady, netPrepared func() error, tr *tracer) error {
	files, err := run.wire(std)
	if err != nil {
		return err
	}
	var tty *os.File
	if spec.TTY {
		tty = files[0]
	}
	// The network is wired into the thread's namespace (veths, name
	// server, the host ports reserved) on another CPU while the thread
	// makes the root filesystem, and the ports are published (endpoint
	// file, rules) while the process starts: its program runs only once
	// its interfaces are up and its ports are its own, and Run returns
	// only once they are published. (Publishing before the fork took the
	// start of a container with a published port 0.5-1.4 ms more.)
	wired := make(chan error, 1)     // veths, name server, reservations
	published := make(chan error, 1) // then the rules
	attaching := false
	var netReady func(*os.File)
	var lateFiles func() (map[string][]byte, error)
	if netPrepared != nil {
		lateFiles = func() (map[string][]byte, error) {
			if err := netPrepared(); err != nil {
				return nil, err
			}
			return run.net.files, nil
		}
	}
	if joinsBridges(&run.rec.Config) {
		netReady = func(ns *os.File) {
			attaching = true
			go func() {
				defer ns.Close()
				if netPrepared != nil && netPrepared() != nil {
					wired <- nil // lateFiles reports it
					published <- nil
					return
				}
				err := run.net.wireNS(run.rec, ns)
				if err == nil {
					err = run.net.reservePorts(run.rec)
				}
				wired <- err
				if err == nil {
					err = run.net.publish(ctx, run.rec)
				}
				published <- err
			}()
		}
	}
	d, err := initproc.PrepareDirect(spec, tty, netReady, lateFiles)
	publishErr := sync.OnceValue(func() error { return <-published })
	if attaching {
		// Whatever happens next, the wiring is done (or failed) before
		// anything is undone, and the publish (which does not touch the
		// thread's namespace) before startDirect returns.
		defer publishErr()
		if netErr := <-wired; err == nil && netErr != nil {
			d.Abort()
			return netErr
		}
	}
	if err != nil {
		return asStartError(err)
	}
	tr.mark("prepare")
	if err := cgroupReady(); err != nil {
		d.Abort()
		return err
	}
	tr.mark("cgroup-wait")
	// (Without netReady there was nothing to wire: networks with endpoints
	// give the thread a namespace of its own, the others join one.)
	limit := run.rec.Config.Resources.PidsLimit
	run.proc, err = forkDirect(d, run.cg, files, func(pid int) error {
		// Before the user's program runs: the limit must hold from its
		// first fork.
		if limit > 0 {
			if err := run.cg.SetPidsLimit(limit); err != nil {
				return fmt.Errorf("setting the pids limit: %w", err)
			}
		}
		return setOomScoreAdj(pid, run.rec.Config.OomScoreAdj)
	})
	tr.mark("start")
	if attaching {
		// Before anything is undone, and before Run returns: a publish
		// that failed fails the start, which kills the process.
		if netErr := publishErr(); err == nil && netErr != nil {
			return netErr
		}
		tr.mark("publish")
	}
	return err
}

// forkDirect has a prepared direct start's thread move itself into cg's
// v1 cgroups, fork the process with stdio files into cg's unified cgroup,
// and move back out, on every path: a cgroup holding a thread of this
// program can be neither deleted nor killed. placed (if not nil) runs once
// the thread is out, with the process's pid, before the process runs
// anything of the user's. A failed start's process is reaped.
func forkDirect(d *initproc.Direct, cg *cgroup.Cgroup, files [3]*os.File, placed func(pid int) error) (*initproc.Process, error) {
	move, err := cg.MoveThread(d.Tid())
	if err != nil {
		d.Abort()
		return nil, fmt.Errorf("placing the process in the container's cgroup: %w", err)
	}
	defer move.Close()
	cgfd, err := cg.UnifiedFD()
	if err != nil {
		d.Abort()
		return nil, err
	}
	if cgfd >= 0 {
		defer unix.Close(cgfd)
	}
	proc, err := d.Start(files, cgfd, move, func(pid int) error {
		// The thread is done moving: whatever it could not leave
		// itself, it leaves here. A limit not set (the pids limit is
		// placed's) stops the process before it runs the user's program.
		if err := move.Leave(); err != nil {
			return fmt.Errorf("taking the starting thread out of the container's cgroup: %w", err)
		}
		if placed != nil && pid != 0 {
			return placed(pid)
		}
		return nil
	})
	if leaveErr := move.Leave(); err == nil && leaveErr != nil {
		err = fmt.Errorf("taking the starting thread out of the container's cgroup: %w", leaveErr)
	}
	if err != nil {
		if proc != nil {
			proc.Cmd.Process.Kill()
			proc.Wait()
		}
		return nil, asStartError(err)
	}
	return proc, nil
}

// setOomScoreAdj gives a container's process (pid, which has run nothing
// of the user's yet, so that everything it starts inherits it: the first
// one, or an exec'd one) the OOM killer's score adjustment adj (docker
// run --oom-score-adj; 0 by default, as docker gives its containers, not
// its daemon's). It is written only when it differs from this program's,
// which the process has from the fork. A negative one (below the least a
// privileged ancestor allowed, normally 0) needs CAP_SYS_RESOURCE.
func setOomScoreAdj(pid, adj int) error {
	if adj == ownOomScoreAdj() {
		return nil
	}
	p := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	err := os.WriteFile(p, []byte(strconv.Itoa(adj)), 0)
	if errors.Is(err, os.ErrPermission) && adj < 0 {
		return fmt.Errorf("setting the OOM score adjustment %d: %w (lowering it needs CAP_SYS_RESOURCE, which this program may lack)", adj, err)
	}
	if err != nil {
		return fmt.Errorf("setting the OOM score adjustment %d: %w", adj, err)
	}
	return nil
}

// ownOomScoreAdj is this program's OOM score adjustment, read once.
var ownOomScoreAdj = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
})

// asStartError gives a setup failure that carries docker's 126 or 127 its
// exit code.
func asStartError(err error) error {
	var se *initproc.SetupError
	if errors.As(err, &se) && se.ExitCode != 0 {
		return &startError{err: err, code: se.ExitCode}
	}
	return err
}

// startError is a container whose command could not run: docker's exit
// codes 126 (not executable) and 127 (not found).
type startError struct {
	err  error
	code int
}

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() []error {
	return []error{e.err, &ExitError{Code: e.code}}
}

// wire connects the container's standard streams: pipes copied into the
// log (and the caller's writers), or a pseudo-terminal. It returns the
// container's ends (stdin is /dev/null when there is no input), which
// run.closers closes once the container runs.
func (run *running) wire(std stdio) (files [3]*os.File, _ error) {
	if run.rec.Config.TTY {
		master, slave, err := openPTY()
		if err != nil {
			return files, err
		}
		run.closers = append(run.closers, slave)
		run.master = master
		run.copy(master, &streamWriter{log: run.log, stream: "stdout", user: std.stdout}, master)
		if std.stdin != nil {
			go func() { copyQuiet(master, std.stdin) }()
		}
		return [3]*os.File{slave, slave, slave}, nil
	}
	if std.stdin != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return files, err
		}
		files[0] = pr
		go func() {
			copyQuiet(pw, std.stdin)
			pw.Close()
		}()
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return files, err
		}
		files[0] = null
	}
	run.closers = append(run.closers, files[0])
	for i, name := range []string{"stdout", "stderr"} {
		user := std.stdout
		if i == 1 {
			user = std.stderr
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return files, err
		}
		files[1+i] = pw
		run.closers = append(run.closers, pw)
		run.copy(pr, &streamWriter{log: run.log, stream: name, user: user}, pr)
	}
	return files, nil
}

// wireWarm connects a warm child's pipes like wire does for a cold one.
func (run *running) wireWarm(w *initproc.Warm, std stdio) {
	if std.stdin != nil {
		go func() {
			copyQuiet(w.Stdin, std.stdin)
			w.Stdin.Close()
		}()
	} else {
		w.Stdin.Close()
	}
	run.copy(w.Stdout, &streamWriter{log: run.log, stream: "stdout", user: std.stdout}, w.Stdout)
	run.copy(w.Stderr, &streamWriter{log: run.log, stream: "stderr", user: std.stderr}, w.Stderr)
}

// takeWarm returns the Runtime's pre-started child stage if it suits the
// container and is still fresh, and starts the next one in the background.
// A Runtime starts warming only at its second container: a program that
// runs one container (the CLI) would pay for a child it never uses, while
// every container after the second finds one waiting, which takes the
// process start (several milliseconds) off its critical path.
func (r *Runtime) takeWarm(detached bool) *initproc.Warm {
	closed := r.checkOpen() != nil
	r.warmMu.Lock()
	w, kind := r.warm, r.warmDetached
	r.warm = nil
	r.launches++
	refill := !r.warmFilling && !closed && r.launches >= 2
	r.warmFilling = r.warmFilling || refill
	r.warmDetached = detached
	r.warmMu.Unlock()
	if refill {
		go r.refillWarm(detached)
	}
	if w == nil {
		return nil
	}
	if kind != detached || !w.Fresh() {
		w.Close()
		return nil
	}
	return w
}

// prewarm starts a child stage ahead of need unless the Runtime has one or
// is making one: for a caller that knows a container is coming (a build
// whose RUN step lies ahead), so that the child's start overlaps the work
// before it.
func (r *Runtime) prewarm(detached bool) {
	closed := r.checkOpen() != nil
	r.warmMu.Lock()
	start := !closed && r.warm == nil && !r.warmFilling
	if start {
		r.warmFilling, r.warmDetached = true, detached
	}
	r.warmMu.Unlock()
	if start {
		go r.refillWarm(detached)
	}
}

func (r *Runtime) refillWarm(detached bool) {
	w, err := initproc.Prestart(detached)
	closed := r.checkOpen() != nil
	r.warmMu.Lock()
	defer r.warmMu.Unlock()
	r.warmFilling = false
	if err != nil {
		return
	}
	if closed || r.warm != nil || detached != r.warmDetached {
		w.Close()
		return
	}
	r.warm = w
}

func (run *running) copy(src *os.File, dst *streamWriter, closer io.Closer) {
	run.copiers.Add(1)
	go func() {
		defer run.copiers.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				dst.Write(buf[:n])
			}
			if err != nil {
				break
			}
		}
		closer.Close()
	}()
}

func copyQuiet(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait reaps the container's process, records how it ended and cleans up.
func (run *running) wait() {
	tr := newTracer("wait")
	defer tr.done()
	werr := run.proc.Wait()
	tr.mark("procwait")
	run.closeStdin()
	run.killRest()
	run.copiers.Wait()
	tr.mark("copiers")
	code, sig := exitStatus(run.proc.Cmd.ProcessState, werr)
	oom, _ := run.cg.OOMKilled()
	run.finish(code, sig, oom, "")
}

func exitStatus(ps *os.ProcessState, err error) (code, sig int) {
	if ps == nil {
		return 255, 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ps.ExitCode(), 0
}

// finish records the exit, releases the container's resources and, under
// auto-remove, removes it.
func (run *running) finish(code, sig int, oom bool, msg string) {
	r, rec := run.rt, run.rec
	tr := newTracer("finish")
	defer tr.done()
	if run.cg != nil {
		// PID 1's exit killed every process of its pid namespace, so the
		// cgroup is normally empty already; kill only what might remain
		// (a process that joined the cgroup from outside, say).
		err := run.cg.Delete()
		if err != nil {
			run.cg.Kill()
			err = run.cg.Delete()
		}
		run.cgDeleted = err == nil
		tr.mark("cgdelete")
	}
	run.net.teardown()
	r.removeStrayEndpoints(rec.ID)
	tr.mark("network")
	if run.log != nil {
		run.log.close()
	}
	ctx := context.Background()
	var exitErr error
	if code != 0 { // an exit 0 is a success even if the OOM killer took another process (docker)
		exitErr = &ExitError{Code: code, Signal: sig, OOMKilled: oom}
	}
	// An auto-removed container that no other program waits for (none
	// holds its wait lock) goes without its exit being recorded first:
	// nothing would read it. A Wait that begins meanwhile blocks on the
	// lock held here, or polls a record that says running, and then finds
	// the container gone, as it would a moment later anyway.
	var noWaiters func()
	if rec.Config.AutoRemove {
		if unlock, ok := r.store.TryLock("wait-"+rec.ID, true); ok {
			noWaiters = unlock
		}
	}
	// The die event comes before anything another program may do once the
	// exit is recorded (a stop's event, a removal's), with the name the
	// record has then.
	if noWaiters == nil {
		_, _ = r.updateRecord(ctx, rec.ID, func(cur *containerRecord) error {
			r.containerEvent("die", cur, "exitCode", strconv.Itoa(code))
			cur.State.Status = statusExited
			cur.State.Running = false
			cur.State.Pid = 0
			cur.State.ExitCode = code
			cur.State.OOMKilled = oom
			cur.State.Error = msg
			cur.State.FinishedAt = time.Now().UTC()
			cur.State.unwatched()
			// The monitor that owns a detached container restarts it as
			// its policy says (monitor.supervise), once it ran.
			cur.State.Restarting = msg == "" && cur.Config.Detached &&
				cur.Config.Restart.restartAfter(code, cur.RestartCount, cur.StopRequested)
			if cur.State.Restarting {
				cur.RestartCount++
				cur.Creator, cur.CreatorStart = os.Getpid(), selfStart()
			}
			run.restarting = cur.State.Restarting
			run.ran = cur.State.FinishedAt.Sub(cur.State.StartedAt)
			return nil
		})
		tr.mark("record")
		run.unlock()
	} else {
		r.containerEvent("die", rec, "name", r.heldName(rec.Name, rec.ID), "exitCode", strconv.Itoa(code))
	}
	if rec.Config.AutoRemove {
		if noWaiters == nil {
			r.awaitWaiters(rec.ID) // so that Wait in other programs sees the exit
			tr.mark("waiters")
		}
		if run.cgDeleted {
			r.removeContainerDir(rec.ID, rec.Name)
		} else {
			r.removeContainerFiles(rec.ID, rec.Name)
		}
		r.removeAnonymousVolumes(rec.Config.Mounts)
		tr.mark("remove")
	}
	if noWaiters != nil {
		// Held until the record is gone: with its exit unrecorded, another
		// program taking the owner lock would think its owner died (exit
		// 255) and sweep it.
		run.unlock()
		noWaiters()
	}
	run.err = exitErr
	close(run.done)
	r.forget(rec.ID, run)
}

// killRest kills what is left in the cgroup of a container whose first
// process ended but that shares a pid namespace (WithPidMode): not PID 1
// of one of its own, whose end kills the rest, its processes go with it
// (as runc kills them), before they keep its output open.
func (run *running) killRest() {
	if run.rec.Config.PidMode != "" && run.cg != nil {
		run.cg.Kill()
	}
}

// abort undoes a launch that failed before the user's program ran.
func (run *running) abort(cause error) {
	for _, c := range run.closers {
		c.Close()
	}
	run.closeStdin()
	code := 0
	var se *startError
	if errors.As(cause, &se) {
		code = se.code
	}
	if run.proc != nil && run.proc.Cmd.Process != nil && run.proc.Cmd.ProcessState == nil {
		run.proc.Cmd.Process.Kill()
		run.proc.Wait()
	}
	run.killRest()
	run.copiers.Wait()
	if code == 0 {
		code = 128 // docker's "created, never ran" has no code; keep it non-zero
	}
	run.finish(code, 0, false, cause.Error())
}

// tracer prints the phases of a container's start and end to stderr when
// BERTH_TRACE is set (a debugging aid for start-up work). Off, it costs a
// nil check per phase: nothing is timed or formatted on the hot path.
type tracer struct {
	name  string
	start time.Time
	last  time.Time
	buf   []string
}

// tracing is read once: the environment of a running program is not
// expected to switch tracing on halfway.
var tracing = os.Getenv("BERTH_TRACE") != ""

func newTracer(name string) *tracer {
	if !tracing {
		return nil
	}
	n := time.Now()
	return &tracer{name: name, start: n, last: n}
}

func (t *tracer) mark(step string) {
	if t == nil {
		return
	}
	n := time.Now()
	t.buf = append(t.buf, fmt.Sprintf("%s=%v", step, n.Sub(t.last).Round(10*time.Microsecond)))
	t.last = n
}

func (t *tracer) done() {
	if t != nil {
		fmt.Fprintln(os.Stderr, t.name, time.Since(t.start).Round(10*time.Microsecond), t.buf)
	}
}
