package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// noSuchContainer is docker's message for a container that is not in the
// root; other errors pass through.
// container finds a container by name or ID, with docker's message when
// there is none.
func (c *cli) container(ctx context.Context, nameOrID string) (*berth.Container, error) {
	rt, err := c.runtime()
	if err != nil {
		return nil, err
	}
	ctr, err := rt.Container(ctx, nameOrID)
	if err != nil {
		return nil, noSuchContainer(nameOrID, err)
	}
	return ctr, nil
}

func noSuchContainer(name string, err error) error {
	if errors.Is(err, berth.ErrNotFound) {
		return fmt.Errorf("No such container: %s", name)
	}
	return err
}

// runFlags are docker run's flags that berth supports.
type runFlags struct {
	rm, detach, interactive, tty, readOnly, quiet   bool
	name, workdir, user, entrypoint, hostname, pull string
	env, envFiles, labels                           []string
	memory, memorySwap, cpus, shmSize, cpusetCpus   string
	memoryReservation, cpusetMems                   string
	cpuPeriod, cpuQuota, oomScoreAdj                int
	cpuShares, pidsLimit, stopTimeout               int
	capAdd, capDrop, securityOpts, ulimits          []string
	stopSignal, restart, cidfile                    string
	labelFiles                                      []string
	volumes, mounts, tmpfs, volumesFrom             []string
	networks, networkAliases, publish               []string
	addHosts, dns, sysctls, groupAdd, expose        []string
	dnsSearch, dnsOptions                           []string
	domainname, ip, macAddress                      string
	devices, deviceRules                            []string
	pid, ipc, uts, logDriver                        string
	logOpts                                         []string
	publishAll, privileged, init                    bool
	healthCmd, healthInterval, healthTimeout        string
	healthStartPeriod                               string
	healthRetries                                   int
	noHealthcheck                                   bool
}

// register defines docker run's flags on fs; create has them all but -d.
func (f *runFlags) register(fs *flagSet, create bool) {
	fs.Strings(&f.capAdd, "", "cap-add", "Add Linux capabilities")
	fs.Strings(&f.capDrop, "", "cap-drop", "Drop Linux capabilities")
	f.registerLimits(fs)
	if !create {
		fs.Bool(&f.detach, "d", "detach", "Run container in background and print container ID")
	}
	fs.Strings(&f.devices, "", "device", "Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS])")
	fs.Strings(&f.deviceRules, "", "device-cgroup-rule", `Add a rule to the cgroup allowed devices list ("c 10:229 rwm")`)
	fs.String(&f.entrypoint, "", "entrypoint", "string", "", "Overwrite the default ENTRYPOINT of the image")
	fs.Strings(&f.env, "e", "env", "Set environment variables (KEY=VALUE, or KEY to pass berth's own)")
	fs.Strings(&f.envFiles, "", "env-file", "Read in a file of environment variables")
	fs.Strings(&f.expose, "", "expose", "Expose a port or a range of ports")
	fs.Strings(&f.groupAdd, "", "group-add", "Add additional groups to join")
	fs.String(&f.healthCmd, "", "health-cmd", "string", "", "Command to run to check health")
	fs.String(&f.healthInterval, "", "health-interval", "duration", "", "Time between running the check (ms|s|m|h) (default 30s)")
	fs.Int(&f.healthRetries, "", "health-retries", 0, "Consecutive failures needed to report unhealthy (default 3)")
	fs.String(&f.healthStartPeriod, "", "health-start-period", "duration", "", "Start period for the container to initialize before starting health-retries countdown (ms|s|m|h)")
	fs.String(&f.healthTimeout, "", "health-timeout", "duration", "", "Maximum time to allow one check to run (ms|s|m|h) (default 30s)")
	fs.String(&f.hostname, "h", "hostname", "string", "", "Container host name")
	fs.Bool(&f.init, "", "init", "Run an init inside the container that forwards signals and reaps processes")
	fs.Bool(&f.interactive, "i", "interactive", "Keep STDIN open and copy it to the container")
	fs.String(&f.ipc, "", "ipc", "string", "", `IPC mode to use ("private", "shareable", "container:NAME", "host" or "none")`)
	fs.Strings(&f.labels, "l", "label", "Set meta data on a container")
	fs.Strings(&f.labelFiles, "", "label-file", "Read in a line delimited file of labels")
	fs.String(&f.cidfile, "", "cidfile", "string", "", "Write the container ID to the file")
	fs.String(&f.logDriver, "", "log-driver", "string", "", `Logging driver for the container ("json-file", "local" or "none")`)
	fs.Strings(&f.logOpts, "", "log-opt", "Log driver options (max-size=SIZE, max-file=N)")
	fs.String(&f.name, "", "name", "string", "", "Assign a name to the container")
	fs.Bool(&f.noHealthcheck, "", "no-healthcheck", "Disable any container-specified HEALTHCHECK")
	fs.Int(&f.oomScoreAdj, "", "oom-score-adj", 0, "Tune host's OOM preferences (-1000 to 1000)")
	fs.String(&f.pid, "", "pid", "string", "", `PID namespace to use ("host" or "container:NAME")`)
	fs.Bool(&f.privileged, "", "privileged", "Give extended privileges to this container")
	fs.String(&f.pull, "", "pull", "string", "missing", `Pull image before running ("always", "missing", "never")`)
	fs.Bool(&f.quiet, "q", "quiet", "Suppress the pull output")
	fs.Bool(&f.readOnly, "", "read-only", "Mount the container's root filesystem as read only")
	fs.String(&f.restart, "", "restart", "string", "no", `Restart policy to apply when a container exits ("no", "always", "unless-stopped", "on-failure[:max-retries]"); needs -d`)
	fs.Bool(&f.rm, "", "rm", "Automatically remove the container and its associated anonymous volumes when it exits")
	fs.String(&f.shmSize, "", "shm-size", "bytes", "", "Size of /dev/shm")
	fs.Strings(&f.securityOpts, "", "security-opt", "Security Options (no-new-privileges[:true|false], seccomp=unconfined|PROFILE.json)")
	fs.String(&f.stopSignal, "", "stop-signal", "string", "", "Signal to stop the container")
	fs.Int(&f.stopTimeout, "", "stop-timeout", 0, "Timeout (in seconds) to stop a container")
	fs.Strings(&f.sysctls, "", "sysctl", "Sysctl options (KEY=VALUE)")
	fs.Bool(&f.tty, "t", "tty", "Allocate a pseudo-TTY")
	fs.Strings(&f.ulimits, "", "ulimit", "Ulimit options (name=soft[:hard])")
	fs.String(&f.user, "u", "user", "string", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	fs.String(&f.uts, "", "uts", "string", "", `UTS namespace to use ("host")`)
	fs.String(&f.workdir, "w", "workdir", "string", "", "Working directory inside the container")
	fs.Strings(&f.volumes, "v", "volume", "Bind mount a volume (SRC:DST[:OPTS], or DST for an anonymous volume)")
	fs.Strings(&f.mounts, "", "mount", "Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=…,target=…)")
	fs.Strings(&f.tmpfs, "", "tmpfs", "Mount a tmpfs directory (PATH[:size=…,mode=…,exec,uid=…,…])")
	fs.Strings(&f.volumesFrom, "", "volumes-from", "Mount volumes from the specified container(s)")
	fs.Strings(&f.networks, "", "network", "Connect a container to a network (NAME, none, host, container:NAME, or name=NAME,alias=ALIAS); repeat for several")
	fs.Strings(&f.networkAliases, "", "network-alias", "Add network-scoped alias for the container (on its first network)")
	fs.String(&f.ip, "", "ip", "string", "", "IPv4 address (e.g., 172.30.100.104) on the first network")
	fs.String(&f.macAddress, "", "mac-address", "string", "", "Container MAC address (e.g., 92:d0:c6:0a:29:33) on the first network")
	fs.Strings(&f.publish, "p", "publish", "Publish a container's port(s) to the host ([hostIP:][hostPort:]containerPort[/proto])")
	fs.Bool(&f.publishAll, "P", "publish-all", "Publish all exposed ports to random ports")
	fs.Strings(&f.addHosts, "", "add-host", "Add a custom host-to-IP mapping (host:ip)")
	fs.Strings(&f.dns, "", "dns", "Set custom DNS servers")
	fs.Strings(&f.dnsSearch, "", "dns-search", "Set custom DNS search domains (\".\" for none)")
	fs.Strings(&f.dnsOptions, "", "dns-option", "Set DNS options")
	fs.String(&f.domainname, "", "domainname", "string", "", "Container NIS domain name")
}

// registerLimits defines the limit flags run, create and update share,
// and returns their names.
func (f *runFlags) registerLimits(fs *flagSet) []string {
	fs.Int(&f.cpuPeriod, "", "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	fs.Int(&f.cpuQuota, "", "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	fs.Int(&f.cpuShares, "c", "cpu-shares", 0, "CPU shares (relative weight)")
	fs.String(&f.cpus, "", "cpus", "decimal", "", "Number of CPUs")
	fs.String(&f.cpusetCpus, "", "cpuset-cpus", "string", "", "CPUs in which to allow execution (0-3, 0,1)")
	fs.String(&f.cpusetMems, "", "cpuset-mems", "string", "", "MEMs in which to allow execution (0-3, 0,1)")
	fs.String(&f.memory, "m", "memory", "bytes", "", "Memory limit")
	fs.String(&f.memoryReservation, "", "memory-reservation", "bytes", "", "Memory soft limit")
	fs.String(&f.memorySwap, "", "memory-swap", "bytes", "", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	fs.Int(&f.pidsLimit, "", "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	return []string{"cpu-period", "cpu-quota", "cpu-shares", "cpus", "cpuset-cpus", "cpuset-mems", "memory", "memory-reservation", "memory-swap", "pids-limit"}
}

// runCommand is docker run.
func runCommand(fs *flagSet) runFunc { return runOrCreate(fs, false) }

// createCommand is docker create: the container is made as run makes it,
// detached (started, it runs in the background, as docker's does), and
// its ID printed.
func createCommand(fs *flagSet) runFunc { return runOrCreate(fs, true) }

// runOrCreate is run, or create: the same flags (but -d), configuration,
// image pull and failures.
func runOrCreate(fs *flagSet, create bool) runFunc {
	var f runFlags
	f.register(fs, create)
	return func(ctx context.Context, c *cli, args []string) error {
		image := args[0]
		f.detach = f.detach || create
		p, opts, err := f.config(fs, args[1:], os.LookupEnv)
		if err != nil {
			return runError(err)
		}
		rt, err := c.runtime()
		if err != nil {
			return runError(err)
		}
		cid, err := openCIDFile(f.cidfile)
		if err != nil {
			return runError(err)
		}
		defer cid.close()
		if err := ensureImage(ctx, c, rt, image, f.pull, f.quiet); err != nil {
			return runError(err)
		}
		if !f.detach {
			return runAttached(ctx, c, rt, image, p, opts, f.interactive, f.name, cid.write)
		}
		if f.interactive { // docker run -d -i, create -i: input open for attach
			opts = append(opts, berth.WithOpenStdin())
			if create {
				// docker create -i: closed at the end of the first
				// attachment's input (start -ai with a pipe ends).
				opts = append(opts, berth.WithStdinOnce())
			}
		}
		newContainer, cmd := rt.Run, "run"
		if create {
			newContainer, cmd = rt.Create, "create"
		}
		ctr, err := newContainer(ctx, image, p, opts...)
		if err != nil {
			return runFailed(ctx, rt, err, f.name, cmd)
		}
		if err := cid.write(ctr); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, ctr.ID)
		return nil
	}
}

// cidFile is docker run --cidfile's file: made before the container, so
// that a second run with the same file fails first, given the container's
// ID once it exists, and removed if it never does.
type cidFile struct {
	f       *os.File
	written bool
}

func openCIDFile(path string) (*cidFile, error) {
	if path == "" {
		return &cidFile{}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("container ID file found, make sure the other container isn't running or delete %s", path)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to create the container ID file: %w", err)
	}
	return &cidFile{f: f}, nil
}

func (c *cidFile) write(ctr *berth.Container) error {
	if c.f == nil {
		return nil
	}
	if _, err := c.f.WriteString(ctr.ID); err != nil {
		return fmt.Errorf("failed to write the container ID to the file: %w", err)
	}
	c.written = true
	return nil
}

func (c *cidFile) close() {
	if c.f == nil {
		return
	}
	c.f.Close()
	if !c.written {
		os.Remove(c.f.Name())
	}
}

// config turns the flags into the Process and options of Run; command is
// what followed the image on the command line.
func (f *runFlags) config(fs *flagSet, command []string, lookupEnv func(string) (string, bool)) (*berth.Process, []berth.RunOption, error) {
	p := &berth.Process{Args: command, Dir: f.workdir, User: f.user, TTY: f.tty}
	for _, name := range f.envFiles {
		env, err := readEnvFile(name, lookupEnv)
		if err != nil {
			return nil, nil, err
		}
		p.Env = append(p.Env, env...)
	}
	for _, kv := range f.env {
		if kv, ok := envVar(kv, lookupEnv); ok {
			p.Env = append(p.Env, kv)
		}
	}

	var opts []berth.RunOption
	if f.name != "" {
		opts = append(opts, berth.WithName(f.name))
	}
	if f.detach {
		opts = append(opts, berth.WithDetach())
	}
	if f.rm {
		opts = append(opts, berth.WithAutoRemove())
	}
	if f.restart != "" {
		policy, err := parseRestartPolicy(f.restart)
		switch {
		case err != nil:
			return nil, nil, err
		case policy.Name == "" || policy.Name == berth.RestartNo:
			// Run checks a count given with it.
		case f.rm:
			return nil, nil, errors.New("conflicting options: cannot specify both --restart and --rm")
		case !f.detach:
			// docker's daemon restarts a foreground container after the
			// client returns; a berth container run in the foreground ends
			// with the command.
			return nil, nil, errors.New("--restart needs -d: a container run in the foreground ends with the berth command")
		}
		opts = append(opts, berth.WithRestartPolicy(policy))
	}
	if fs.isSet("entrypoint") {
		if f.entrypoint == "" {
			opts = append(opts, berth.WithEntrypoint())
		} else {
			opts = append(opts, berth.WithEntrypoint(f.entrypoint))
		}
	}
	if f.hostname != "" {
		opts = append(opts, berth.WithHostname(f.hostname))
	}
	if f.domainname != "" {
		opts = append(opts, berth.WithDomainname(f.domainname))
	}
	labelArgs := f.labels
	for i := len(f.labelFiles) - 1; i >= 0; i-- {
		// As docker: a file's lines come before --label, which wins; a
		// line with a name alone is a label with an empty value.
		lines, err := readEnvFile(f.labelFiles[i], func(string) (string, bool) { return "", true })
		if err != nil {
			return nil, nil, err
		}
		labelArgs = append(lines, labelArgs...)
	}
	if len(labelArgs) > 0 {
		labels := map[string]string{}
		for _, l := range labelArgs {
			k, v, _ := strings.Cut(l, "=")
			if k == "" {
				return nil, nil, fmt.Errorf("invalid label %q: empty name", l)
			}
			labels[k] = v
		}
		opts = append(opts, berth.WithLabels(labels))
	}
	given, err := f.limits(fs)
	if err != nil {
		return nil, nil, err
	}
	res, err := overLimits(berth.Resources{}, given)
	if err != nil {
		return nil, nil, err
	}
	if res != (berth.Resources{}) {
		opts = append(opts, berth.WithResources(res))
	}
	if f.readOnly {
		opts = append(opts, berth.WithReadOnlyRootfs())
	}
	if f.privileged {
		opts = append(opts, berth.WithPrivileged())
	}
	if f.init {
		opts = append(opts, berth.WithInit())
	}
	if len(f.groupAdd) > 0 {
		opts = append(opts, berth.WithGroupAdd(f.groupAdd...))
	}
	if len(f.expose) > 0 {
		opts = append(opts, berth.WithExpose(f.expose...))
	}
	if len(f.devices) > 0 {
		opts = append(opts, berth.WithDevices(f.devices...))
	}
	if f.pid != "" {
		opts = append(opts, berth.WithPidMode(f.pid))
	}
	if f.oomScoreAdj != 0 {
		opts = append(opts, berth.WithOomScoreAdj(f.oomScoreAdj))
	}
	logOpts, err := logOptions(f.logDriver, f.logOpts)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, logOpts...)
	if f.ipc != "" {
		opts = append(opts, berth.WithIpcMode(f.ipc))
	}
	if f.uts != "" {
		opts = append(opts, berth.WithUTSMode(f.uts))
	}
	if len(f.deviceRules) > 0 {
		opts = append(opts, berth.WithDeviceCgroupRules(f.deviceRules...))
	}
	if len(f.sysctls) > 0 {
		m := map[string]string{}
		for _, kv := range f.sysctls {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, nil, fmt.Errorf("invalid argument %q for \"--sysctl\" flag: want KEY=VALUE", kv)
			}
			m[k] = v
		}
		opts = append(opts, berth.WithSysctls(m))
	}
	if f.shmSize != "" {
		n, err := parseMemory(f.shmSize)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid argument %q for \"--shm-size\" flag: %w", f.shmSize, err)
		}
		opts = append(opts, berth.WithShmSize(n))
	}
	if len(f.capAdd) > 0 {
		opts = append(opts, berth.WithCapAdd(f.capAdd...))
	}
	if len(f.capDrop) > 0 {
		opts = append(opts, berth.WithCapDrop(f.capDrop...))
	}
	for _, o := range f.securityOpts {
		opt, err := securityOpt(o)
		if err != nil {
			return nil, nil, err
		}
		if opt != nil {
			opts = append(opts, opt)
		}
	}
	if f.stopSignal != "" {
		opts = append(opts, berth.WithStopSignal(f.stopSignal))
	}
	if h, err := f.healthcheck(); err != nil {
		return nil, nil, err
	} else if h != nil {
		opts = append(opts, berth.WithHealthcheck(*h))
	}
	if fs.isSet("stop-timeout") {
		if f.stopTimeout < 0 {
			return nil, nil, fmt.Errorf("invalid argument \"%d\" for \"--stop-timeout\" flag: must not be negative", f.stopTimeout)
		}
		opts = append(opts, berth.WithStopTimeout(time.Duration(f.stopTimeout)*time.Second))
	}
	if len(f.ulimits) > 0 {
		var limits []berth.Rlimit
		for _, u := range f.ulimits {
			rl, err := parseUlimit(u)
			if err != nil {
				return nil, nil, err
			}
			limits = append(limits, rl)
		}
		opts = append(opts, berth.WithRlimits(limits...))
	}
	mounts, err := f.mountList()
	if err != nil {
		return nil, nil, err
	}
	if len(mounts) > 0 {
		opts = append(opts, berth.WithMounts(mounts...))
	}
	if len(f.volumesFrom) > 0 {
		opts = append(opts, berth.WithVolumesFrom(f.volumesFrom...))
	}
	netOpts, err := f.networkOptions()
	if err != nil {
		return nil, nil, err
	}
	return p, append(opts, netOpts...), nil
}

// healthcheck turns the --health-* flags into the container's health
// check, checked as docker's client checks them; nil for none given.
// Fields left zero take the image's (see berth.WithHealthcheck).
func (f *runFlags) healthcheck() (*berth.HealthConfig, error) {
	var h berth.HealthConfig
	for _, d := range []struct {
		flag, value string
		to          *time.Duration
	}{
		{"health-interval", f.healthInterval, &h.Interval},
		{"health-timeout", f.healthTimeout, &h.Timeout},
		{"health-start-period", f.healthStartPeriod, &h.StartPeriod},
	} {
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--%s\" flag: %w", d.value, d.flag, err)
		}
		if v < 0 {
			return nil, fmt.Errorf("--%s cannot be negative", d.flag)
		}
		*d.to = v
	}
	if f.healthRetries < 0 {
		return nil, errors.New("--health-retries cannot be negative")
	}
	h.Retries = f.healthRetries
	if f.healthCmd != "" {
		h.Test = []string{"CMD-SHELL", f.healthCmd}
	}
	set := len(h.Test) > 0 || h.Interval != 0 || h.Timeout != 0 || h.StartPeriod != 0 || h.Retries != 0
	switch {
	case f.noHealthcheck && set:
		return nil, errors.New("--no-healthcheck conflicts with --health-* options")
	case f.noHealthcheck:
		return &berth.HealthConfig{Test: []string{"NONE"}}, nil
	case set:
		return &h, nil
	}
	return nil, nil
}

// networkOptions turns --network, --network-alias, --ip, --mac-address,
// -p, -P, --add-host and --dns, --dns-search and --dns-option into Run's
// options.
func (f *runFlags) networkOptions() ([]berth.RunOption, error) {
	var opts []berth.RunOption
	if len(f.networks) == 0 && len(f.networkAliases) > 0 {
		return nil, errors.New("network-scoped aliases are only supported for user-defined networks")
	}
	first := berth.DefaultNetwork // where --ip and --mac-address go, as in docker
	for i, spec := range f.networks {
		name, aliases, err := parseNetworkFlag(spec)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			aliases = append(aliases, f.networkAliases...)
			first = name
		}
		switch {
		case name == "none" || name == "host" || strings.HasPrefix(name, "container:"):
			if len(f.networks) > 1 {
				return nil, errors.New("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
			}
			if len(aliases) > 0 {
				return nil, errors.New("network-scoped aliases are only supported for user-defined networks")
			}
			opts = append(opts, berth.WithNetworkMode(name))
		case name == "bridge" || name == "default":
			if len(aliases) > 0 {
				return nil, errors.New("network-scoped aliases are only supported for user-defined networks")
			}
			opts = append(opts, berth.WithNetwork(berth.DefaultNetwork))
			if i == 0 {
				first = berth.DefaultNetwork
			}
		default:
			opts = append(opts, berth.WithNetwork(name, aliases...))
		}
	}
	if f.ip != "" {
		opts = append(opts, berth.WithIP(first, f.ip))
	}
	if f.macAddress != "" {
		opts = append(opts, berth.WithMACAddress(first, f.macAddress))
	}
	var ports []string
	for _, p := range f.publish {
		expanded, err := expandPortRange(p)
		if err != nil {
			return nil, err
		}
		ports = append(ports, expanded...)
	}
	if len(ports) > 0 {
		opts = append(opts, berth.WithPublish(ports...))
	}
	if f.publishAll {
		opts = append(opts, berth.WithPublishAll())
	}
	if len(f.addHosts) > 0 {
		hosts := make([]string, len(f.addHosts))
		for i, h := range f.addHosts {
			// docker takes name=ip as well as name:ip.
			if name, ip, ok := strings.Cut(h, "="); ok {
				h = name + ":" + ip
			}
			hosts[i] = h
		}
		opts = append(opts, berth.WithExtraHosts(hosts...))
	}
	if len(f.dns) > 0 {
		opts = append(opts, berth.WithDNS(f.dns...))
	}
	if len(f.dnsSearch) > 0 {
		opts = append(opts, berth.WithDNSSearch(f.dnsSearch...))
	}
	if len(f.dnsOptions) > 0 {
		opts = append(opts, berth.WithDNSOptions(f.dnsOptions...))
	}
	return opts, nil
}

// parseNetworkFlag reads one --network value: a network name or mode, or
// docker's long form name=NET,alias=A[,alias=B].
func parseNetworkFlag(s string) (name string, aliases []string, err error) {
	if !strings.Contains(s, "=") {
		return s, nil, nil
	}
	for _, field := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "name":
			name = v
		case "alias":
			aliases = append(aliases, v)
		default:
			return "", nil, fmt.Errorf("invalid argument %q for \"--network\" flag: berth supports the keys name and alias, not %q", s, k)
		}
	}
	if name == "" {
		return "", nil, fmt.Errorf("invalid argument %q for \"--network\" flag: no name", s)
	}
	return name, aliases, nil
}

// expandPortRange turns a -p value with port ranges
// ("127.0.0.1:8000-8002:80-82/tcp", "80-82") into one value per port, as
// WithPublish takes them. A host range must be as long as the container's.
func expandPortRange(spec string) ([]string, error) {
	rest, proto, hasProto := strings.Cut(spec, "/")
	i := strings.LastIndexByte(rest, ':')
	prefix, ctrPart := "", rest
	if i >= 0 {
		prefix, ctrPart = rest[:i+1], rest[i+1:]
	}
	hostIP, hostPart := "", ""
	if prefix != "" {
		hp := strings.TrimSuffix(prefix, ":")
		if j := strings.LastIndexByte(hp, ':'); j >= 0 {
			hostIP, hostPart = hp[:j+1], hp[j+1:]
		} else {
			hostPart = hp
		}
	}
	if !strings.Contains(ctrPart, "-") && !strings.Contains(hostPart, "-") {
		return []string{spec}, nil
	}
	bad := func() ([]string, error) {
		return nil, fmt.Errorf("invalid argument %q for \"-p, --publish\" flag: want [hostIP:][hostPort[-hostPort]:]containerPort[-containerPort][/proto] with ranges of one length", spec)
	}
	portRange := func(s string) (lo, hi int, ok bool) {
		a, b, isRange := strings.Cut(s, "-")
		lo, err1 := strconv.Atoi(a)
		hi, err2 := lo, error(nil)
		if isRange {
			hi, err2 = strconv.Atoi(b)
		}
		return lo, hi, err1 == nil && err2 == nil && lo > 0 && lo <= hi && hi <= 65535
	}
	clo, chi, ok := portRange(ctrPart)
	if !ok {
		return bad()
	}
	hlo := 0
	if hostPart != "" {
		var hhi int
		if hlo, hhi, ok = portRange(hostPart); !ok || hhi-hlo != chi-clo {
			return bad()
		}
	}
	suffix := ""
	if hasProto {
		suffix = "/" + proto
	}
	var out []string
	for p := clo; p <= chi; p++ {
		host := ""
		if hostPart != "" {
			host = strconv.Itoa(hlo + p - clo)
		}
		if prefix == "" {
			out = append(out, strconv.Itoa(p)+suffix)
		} else {
			out = append(out, hostIP+host+":"+strconv.Itoa(p)+suffix)
		}
	}
	return out, nil
}

// mountList parses -v, --mount and --tmpfs, in that order.
func (f *runFlags) mountList() ([]berth.Mount, error) {
	var out []berth.Mount
	for _, group := range []struct {
		values []string
		parse  func(string) (berth.Mount, error)
	}{{f.volumes, parseVolumeFlag}, {f.mounts, parseMountFlag}, {f.tmpfs, parseTmpfsFlag}} {
		for _, v := range group.values {
			m, err := group.parse(v)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// limits reads the limit flags that were given, as docker's client does.
// A zero value changes nothing (docker update's rule; for run, nothing is
// unlimited already): memory, swap, CPUs and shares are kept; a pids
// limit of 0 or -1 lifts one.
func (f *runFlags) limits(fs *flagSet) (berth.Resources, error) {
	var l berth.Resources
	var err error
	if fs.isSet("memory") {
		if l.Memory, err = parseMemory(f.memory); err != nil {
			return l, fmt.Errorf("invalid argument %q for \"-m, --memory\" flag: %w", f.memory, err)
		}
	}
	switch {
	case !fs.isSet("memory-swap"):
	case f.memorySwap == "-1":
		l.MemorySwap = -1
	default:
		if l.MemorySwap, err = parseMemory(f.memorySwap); err != nil {
			return l, fmt.Errorf("invalid argument %q for \"--memory-swap\" flag: %w", f.memorySwap, err)
		}
	}
	if fs.isSet("memory-reservation") {
		if l.MemoryReservation, err = parseMemory(f.memoryReservation); err != nil {
			return l, fmt.Errorf("invalid argument %q for \"--memory-reservation\" flag: %w", f.memoryReservation, err)
		}
	}
	if fs.isSet("cpus") {
		if l.NanoCPUs, err = parseCPUs(f.cpus); err != nil {
			return l, fmt.Errorf("invalid argument %q for \"--cpus\" flag: %w", f.cpus, err)
		}
	}
	l.CPUPeriod, l.CPUQuota = int64(f.cpuPeriod), int64(f.cpuQuota)
	if f.cpuShares < 0 {
		return l, fmt.Errorf("invalid argument \"%d\" for \"-c, --cpu-shares\" flag: must not be negative", f.cpuShares)
	}
	l.CPUShares = uint64(f.cpuShares)
	l.CpusetCpus, l.CpusetMems = f.cpusetCpus, f.cpusetMems
	l.PidsLimit = int64(f.pidsLimit)
	if l.PidsLimit == 0 && fs.isSet("pids-limit") {
		l.PidsLimit = -1 // docker update --pids-limit 0 lifts the limit
	}
	return l, nil
}

// overLimits applies the limits given (see limits) over base, a
// container's own for update, and checks docker's rules for the result.
func overLimits(base, given berth.Resources) (berth.Resources, error) {
	res := base
	set := func(to *int64, v int64) {
		if v != 0 {
			*to = v
		}
	}
	set(&res.Memory, given.Memory)
	set(&res.MemorySwap, given.MemorySwap)
	set(&res.NanoCPUs, given.NanoCPUs)
	set(&res.CPUPeriod, given.CPUPeriod)
	set(&res.CPUQuota, given.CPUQuota)
	set(&res.MemoryReservation, given.MemoryReservation)
	if given.CPUShares != 0 {
		res.CPUShares = given.CPUShares
	}
	if given.CpusetCpus != "" {
		res.CpusetCpus = given.CpusetCpus
	}
	if given.CpusetMems != "" {
		res.CpusetMems = given.CpusetMems
	}
	switch {
	case given.PidsLimit < 0:
		res.PidsLimit = 0 // unlimited
	case given.PidsLimit > 0:
		res.PidsLimit = given.PidsLimit
	}
	if res.MemorySwap != 0 && res.Memory == 0 {
		return res, errors.New("You should always set the Memory limit when using Memoryswap limit, see usage")
	}
	if res.MemorySwap > 0 && res.MemorySwap < res.Memory {
		return res, errors.New("Minimum memoryswap limit should be larger than memory limit, see usage")
	}
	return res, nil
}

// envVar applies docker's rule for -e: "K=V" as is, a bare "K" takes K's
// value from berth's own environment and is left out when K is not set.
func envVar(s string, lookupEnv func(string) (string, bool)) (string, bool) {
	if strings.Contains(s, "=") {
		return s, true
	}
	v, ok := lookupEnv(s)
	if !ok {
		return "", false
	}
	return s + "=" + v, true
}

// readEnvFile reads a docker --env-file.
func readEnvFile(name string, lookupEnv func(string) (string, bool)) ([]string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	env, err := parseEnvFile(b, lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return env, nil
}

// parseEnvFile parses docker's env-file format: one variable a line,
// "K=V" taken literally (no quotes, no expansion), a bare "K" passed from
// berth's environment, blank lines and lines starting with # skipped,
// leading white space ignored. Names may not contain white space.
func parseEnvFile(b []byte, lookupEnv func(string) (string, bool)) ([]string, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	var env []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeftFunc(sc.Text(), unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("line %d is not valid UTF-8", n)
		}
		k, _, _ := strings.Cut(line, "=")
		if k == "" {
			return nil, fmt.Errorf("line %d: no variable name in %q", n, line)
		}
		if strings.ContainsFunc(k, unicode.IsSpace) {
			return nil, fmt.Errorf("line %d: variable %q contains whitespaces", n, k)
		}
		if kv, ok := envVar(line, lookupEnv); ok {
			env = append(env, kv)
		}
	}
	return env, sc.Err()
}

// parseMemory reads a size as docker's --memory does: a number, possibly
// with a fraction, then an optional binary unit b, k, m, g, t or p (any
// case, "kb", "kib" too). No unit means bytes.
func parseMemory(s string) (int64, error) { return parseSize(s, 1024) }

// parseSize reads a size such as "64m" or "1.5GiB": a number and a unit
// (b, k, m, g, t or p, with an optional "b" or "ib"), in powers of base
// (docker's memory flags take 1024, its log sizes 1000).
func parseSize(s string, base float64) (int64, error) {
	// Cut before lower-casing: a letter's lower case can be longer in
	// bytes ("İ"), which put the cut past the end of s.
	num := strings.TrimRightFunc(s, unicode.IsLetter)
	unit := strings.ToLower(s[len(num):])
	num = strings.TrimSpace(num)
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || strings.ContainsAny(num, "+-eEnNxX") || v < 0 {
		return 0, fmt.Errorf("invalid size: '%s'", s)
	}
	mult := map[string]float64{"": 1, "b": 1}
	for i, u := range []string{"k", "m", "g", "t", "p"} {
		m := math.Pow(base, float64(i+1))
		mult[u], mult[u+"b"], mult[u+"ib"] = m, m, m
	}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size: '%s'", s)
	}
	return int64(v * m), nil
}

// parseCPUs converts --cpus 1.5 to billionths of a CPU.
func parseCPUs(s string) (int64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("failed to parse %s as a rational number", s)
	}
	n := math.Round(v * 1e9)
	if n < 0 || n > math.MaxInt64/2 {
		return 0, fmt.Errorf("value is out of range")
	}
	return int64(n), nil
}

// parseUlimit reads docker's --ulimit name=soft[:hard]; -1 is unlimited.
func parseUlimit(s string) (berth.Rlimit, error) {
	name, limits, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return berth.Rlimit{}, fmt.Errorf("invalid ulimit argument: %s", s)
	}
	softS, hardS, hasHard := strings.Cut(limits, ":")
	if !hasHard {
		hardS = softS
	}
	parse := func(v string) (uint64, error) {
		if v == "-1" {
			return math.MaxUint64, nil // RLIM_INFINITY
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid ulimit argument: %s: bad limit %q", s, v)
		}
		return n, nil
	}
	soft, err := parse(softS)
	if err != nil {
		return berth.Rlimit{}, err
	}
	hard, err := parse(hardS)
	if err != nil {
		return berth.Rlimit{}, err
	}
	if soft > hard {
		return berth.Rlimit{}, fmt.Errorf("ulimit soft limit must be less than or equal to hard limit: %d > %d", soft, hard)
	}
	return berth.Rlimit{Name: name, Soft: soft, Hard: hard}, nil
}

// securityOpt converts one --security-opt. apparmor=unconfined and
// label=disable are accepted and do nothing: berth applies no AppArmor or
// SELinux profile to relax.
func securityOpt(s string) (berth.RunOption, error) {
	i := strings.IndexAny(s, "=:")
	key, val := s, ""
	if i >= 0 {
		key, val = s[:i], s[i+1:]
	}
	switch {
	case key == "no-new-privileges":
		on := true
		if i >= 0 {
			b, err := strconv.ParseBool(val)
			if err != nil {
				return nil, fmt.Errorf("invalid --security-opt 2: %q", s)
			}
			on = b
		}
		return berth.WithNoNewPrivileges(on), nil
	case key == "seccomp" && val == "unconfined":
		return berth.WithSeccomp(false), nil
	case key == "seccomp" && val == "builtin":
		return berth.WithSeccomp(true), nil
	case key == "seccomp":
		// A profile file, read here, as docker's client reads it.
		profile, err := os.ReadFile(val)
		if err != nil {
			return nil, fmt.Errorf("opening seccomp profile (%s) failed: %w", val, err)
		}
		return berth.WithSeccompProfile(profile), nil
	case s == "apparmor=unconfined" || s == "label=disable" || s == "label:disable":
		return nil, nil
	}
	return nil, fmt.Errorf("invalid --security-opt: %q: berth supports no-new-privileges[:true|false], seccomp=unconfined and seccomp=PROFILE.json", s)
}

// ensureImage pulls image when it is not in the store, or always, as the
// --pull policy says, reporting on stderr as docker run does.
func ensureImage(ctx context.Context, c *cli, rt *berth.Runtime, image, policy string, quiet bool) error {
	switch policy {
	case "missing", "always", "never":
	default:
		return fmt.Errorf("invalid pull option: '%s': must be one of \"always\", \"missing\" or \"never\"", policy)
	}
	_, err := rt.Image(ctx, image)
	if err != nil && !errors.Is(err, berth.ErrNotFound) {
		return err
	}
	if err == nil && policy != "always" {
		return nil
	}
	ref := parseReference(image)
	if err != nil && policy == "never" {
		return fmt.Errorf("No such image: %s", ref.familiar())
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "Unable to find image '%s' locally\n", ref.familiar())
	}
	// Named with its tag, so that the output has no "Using default tag"
	// line, which docker run does not print.
	_, err = pullImage(ctx, rt, c.stderr, ref.familiar(), quiet)
	return err
}

// runError is the exit of a run that failed before its container was
// made: 125, where other commands exit 1 (docker run's rule).
func runError(err error) error {
	var se *statusError
	if errors.As(err, &se) {
		return err
	}
	return &statusError{code: exitBerth, msg: "Error: " + err.Error()}
}

// runFailed is the exit of a run (or create, cmd) whose container did not
// start: 126 or 127 when its command could not be run, as docker exits,
// else 125.
func runFailed(ctx context.Context, rt *berth.Runtime, err error, name, cmd string) error {
	code := exitBerth
	var ee *berth.ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	msg := err.Error()
	if errors.Is(err, berth.ErrExists) && name != "" {
		name = strings.TrimPrefix(name, "/")
		msg = fmt.Sprintf("Conflict. The container name \"/%s\" is already in use", name)
		if other, err := rt.Container(ctx, name); err == nil {
			msg += fmt.Sprintf(" by container %q", other.ID)
		}
		msg += ". You have to remove (or rename) that container to be able to reuse that name."
	}
	return &statusError{code: code, msg: "Error: " + msg + "\nSee 'berth " + cmd + " --help'."}
}

// runAttached runs the container with our standard streams and exits with
// its exit code. The signals of proxiedSignals go to the container instead
// of ending berth; the container dies with berth if berth is killed.
func runAttached(ctx context.Context, c *cli, rt *berth.Runtime, image string, p *berth.Process, opts []berth.RunOption, interactive bool, name string, created func(*berth.Container) error) error {
	if interactive && c.stdin != nil {
		p.Stdin = c.stdin
	}
	p.Stdout, p.Stderr = c.stdout, c.stderr

	sigc := make(chan os.Signal, 8)
	notifyProxied(sigc, p.TTY)

	ctr, err := rt.Run(ctx, image, p, opts...)
	if err != nil {
		return runFailed(ctx, rt, err, name, "run")
	}
	if err := created(ctr); err != nil {
		ctr.Remove(ctx, berth.WithForce())
		return err
	}
	return attach(ctx, c, p, ctr, sigc)
}

// proxiedSignals are the signals an attached run or exec passes on to the
// container's process: those sent to services (reload, reopen logs, dump,
// stop). Docker's CLI passes on every catchable signal; here each one Go
// starts catching costs a round trip to the runtime's signal-mask thread
// (~0.05 ms of wake-ups here), and the 25 of them added ~2.5 ms to every
// attached run (perf stat: 382 context switches a run against 139).
var proxiedSignals = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM}

// notifyProxied has sigc receive proxiedSignals, and SIGWINCH for a
// terminal's resizes with tty. They are never stopped: stopping is
// another round trip per signal, and the command ends with the process.
func notifyProxied(sigc chan<- os.Signal, tty bool) {
	signal.Notify(sigc, proxiedSignals...)
	if tty {
		signal.Notify(sigc, syscall.SIGWINCH)
	}
}

// makeRaw puts the terminal f in raw mode, as cfmakeraw does, so that
// keys such as ^C reach the container's terminal as bytes, and returns
// the function that restores it.
func makeRaw(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// psRow is one line of docker ps, and the object its --format template
// sees.
type psRow struct {
	ID, Image, Command          string
	CreatedAt, RunningFor       string
	Ports, State, Status, Names string
	Labels                      string
	Networks, Mounts            string
	LocalVolumes                string
	Size                        string // with -s or a template that uses it
	labels                      map[string]string
}

// Label is docker ps's {{.Label "name"}}: the value of one label.
func (r psRow) Label(name string) string { return r.labels[name] }

var psHeader = psRow{
	ID: "CONTAINER ID", Image: "IMAGE", Command: "COMMAND", CreatedAt: "CREATED AT", RunningFor: "CREATED",
	Ports: "PORTS", State: "STATE", Status: "STATUS", Names: "NAMES", Labels: "LABELS",
	Networks: "NETWORKS", Mounts: "MOUNTS", LocalVolumes: "LOCAL VOLUMES", Size: "SIZE",
}

const defaultPsFormat = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

// psCommand is docker ps.
func psCommand(fs *flagSet) runFunc {
	var all, quiet, noTrunc, latest, size bool
	var last int
	var format string
	var filterArgs []string
	fs.Bool(&all, "a", "all", "Show all containers (default shows just running)")
	fs.Strings(&filterArgs, "f", "filter", "Filter output based on conditions provided (id, name, label, status, exited, ancestor, network, volume, health, before, since, publish, expose)")
	fs.String(&format, "", "format", "string", "", "Format output using a custom template")
	fs.Int(&last, "n", "last", -1, "Show n last created containers (includes all states) (default -1)")
	fs.Bool(&latest, "l", "latest", "Show the latest created container (includes all states)")
	fs.Bool(&noTrunc, "", "no-trunc", "Don't truncate output")
	fs.Bool(&quiet, "q", "quiet", "Only display container IDs")
	fs.Bool(&size, "s", "size", "Display total file sizes")
	name := fs.Name() // "berth ps" or "berth container ls"
	return func(ctx context.Context, c *cli, args []string) error {
		format = tableFormat(format)
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		filters, err := parsePsFilters(ctx, rt, name, filterArgs)
		if err != nil {
			return err
		}
		// docker's -n N: the N newest containers that pass the filters,
		// whatever their state; -l is -n 1 unless -n is given.
		limit := last
		if latest && last == -1 {
			limit = 1
		}
		var opts []berth.ListOption
		if all || limit > 0 || len(filters.values["status"]) > 0 { // docker's status filter looks at all
			opts = append(opts, berth.WithAll())
		}
		infos, err := rt.Containers(ctx, opts...)
		if err != nil {
			return err
		}
		if format == "" && quiet { // a --format wins over -q, as in docker
			size = false
		}
		// docker works sizes out for a template that uses .Size too.
		size = size || strings.Contains(format, ".Size")
		sizes := &psSizes{rt: rt, images: map[string]int64{}}
		now := time.Now()
		var rows []psRow
		for _, info := range infos {
			if limit > 0 && len(rows) == limit {
				break
			}
			if !filters.match(info) {
				continue
			}
			r := newPsRow(info, noTrunc, now)
			if size {
				r.Size, err = sizes.of(ctx, info)
				if errors.Is(err, berth.ErrNotFound) {
					continue // removed since it was listed
				} else if err != nil {
					return err
				}
			}
			rows = append(rows, r)
		}
		switch {
		case format == "" && quiet:
			for _, r := range rows {
				fmt.Fprintln(c.stdout, r.ID)
			}
			return nil
		case format == "" && size:
			format = defaultPsFormat + "\t{{.Size}}"
		case format == "":
			format = defaultPsFormat
		}
		return printRows(c.stdout, format, psHeader, rows)
	}
}

// psSizes works out ps -s's SIZE column: the container's writable layer
// and, as "(virtual ...)", that plus its image's size (docker's SizeRw and
// SizeRootFs).
type psSizes struct {
	rt     *berth.Runtime
	images map[string]int64 // image ID → size
}

func (s *psSizes) of(ctx context.Context, info *berth.ContainerInfo) (string, error) {
	ctr, err := s.rt.Container(ctx, info.Name) // by name: a link, where an ID lists the containers
	if err == nil && ctr.ID != info.ID {
		ctr, err = s.rt.Container(ctx, info.ID) // renamed since the listing
	}
	if err != nil {
		return "", err
	}
	rw, err := ctr.Size(ctx)
	if err != nil {
		return "", err
	}
	img, ok := s.images[info.ImageID]
	if !ok {
		if i, err := s.rt.Image(ctx, info.ImageID); err == nil {
			img = i.Size
		} // an image removed under the container counts 0, as a layer docker cannot find
		s.images[info.ImageID] = img
	}
	if rw+img > 0 {
		return fmt.Sprintf("%s (virtual %s)", humanSize(rw), humanSize(rw+img)), nil
	}
	return humanSize(rw), nil
}

// psFilters are ps's --filter values by key: a container matches when,
// for every key given, it matches one of that key's values, every one for
// label (docker's rules). Names are compiled and ancestors resolved to
// image IDs once.
type psFilters struct {
	values    map[string][]string
	names     []*regexp.Regexp
	ancestors []string             // image IDs, and the references as given
	created   map[string]time.Time // before= and since= values: their containers' creation
	ports     map[string]portRange // publish= and expose= values
	exposed   func(*berth.ContainerInfo) []berth.PortBinding
}

// portRange is a publish= or expose= value: a port or a range of them,
// and a protocol (tcp when none is given).
type portRange struct {
	lo, hi uint16
	proto  string
}

func (p portRange) has(port uint16, proto string) bool {
	return port >= p.lo && port <= p.hi && cmp.Or(proto, "tcp") == p.proto
}

// parsePortRange reads a publish= or expose= value as docker does: PORT,
// or LO-HI, with /PROTO or not.
func parsePortRange(key, value string) (portRange, error) {
	if strings.Contains(value, ":") {
		return portRange{}, fmt.Errorf("filter for '%s' should not contain ':': %s", key, value)
	}
	ports, proto, _ := strings.Cut(value, "/")
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	var r portRange
	for _, b := range []struct {
		s  string
		to *uint16
	}{{lo, &r.lo}, {hi, &r.hi}} {
		n, err := strconv.ParseUint(b.s, 10, 16)
		if err != nil {
			return portRange{}, fmt.Errorf("error while looking up for %s %s: %w", key, value, err)
		}
		*b.to = uint16(n)
	}
	r.proto = cmp.Or(proto, "tcp")
	return r, nil
}

// psStatuses are the values docker's status filter takes.
var psStatuses = []string{"created", "restarting", "running", "removing", "paused", "exited", "dead"}

// parsePsFilters checks ps's --filter arguments as docker does: KEY=VALUE
// (cmd, "berth ps", names the command in the error for one that is not),
// a key ps knows, a status docker knows, an exit code that is a number.
func parsePsFilters(ctx context.Context, rt *berth.Runtime, cmd string, args []string) (*psFilters, error) {
	values, err := parseFilters(cmd, args, "id", "label", "network", "volume", "name", "ancestor", "status", "exited",
		"health", "before", "since", "publish", "expose", "isolation", "is-task")
	if err != nil {
		return nil, err
	}
	f := &psFilters{values: values, created: map[string]time.Time{}, ports: map[string]portRange{}}
	images := map[string][]berth.PortBinding{}
	f.exposed = func(info *berth.ContainerInfo) []berth.PortBinding {
		if info.ExposedPorts != nil {
			var ports []berth.PortBinding
			for _, p := range info.ExposedPorts {
				if b, err := berth.ParsePortBinding(p); err == nil {
					ports = append(ports, b)
				}
			}
			return ports
		}
		// A container made before berth kept its exposed ports: its image's.
		ports, ok := images[info.ImageID]
		if !ok {
			if img, err := rt.Image(ctx, info.ImageID); err == nil {
				for p := range img.Config.ExposedPorts {
					if b, err := berth.ParsePortBinding(p); err == nil {
						ports = append(ports, b)
					}
				}
			}
			images[info.ImageID] = ports
		}
		return ports
	}
	for _, key := range sortedKeys(values) {
		for _, value := range values[key] {
			if err := f.add(ctx, rt, key, value); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// add checks one value of key and adds it to f.
func (f *psFilters) add(ctx context.Context, rt *berth.Runtime, key, value string) error {
	switch key {
	case "id", "label", "network", "volume":
	case "name":
		// One that does not compile matches nothing, as with docker.
		if re, err := regexp.Compile(value); err == nil {
			f.names = append(f.names, re)
		}
	case "ancestor":
		f.ancestors = append(f.ancestors, value)
		if img, err := rt.Image(ctx, value); err == nil {
			f.ancestors = append(f.ancestors, img.ID)
		}
	case "status":
		if !slices.Contains(psStatuses, value) {
			return fmt.Errorf("Invalid filter '%s=%s'", key, value)
		}
	case "exited":
		if _, err := strconv.Atoi(value); err != nil {
			return fmt.Errorf("Invalid filter '%s=%s': %w", key, value, err)
		}
	case "health":
		if !slices.Contains([]string{berth.HealthStarting, berth.HealthHealthy, berth.HealthUnhealthy, "none"}, value) {
			return fmt.Errorf("Unrecognised filter value for health: %s", value)
		}
	case "before", "since":
		ctr, err := rt.Container(ctx, value)
		if errors.Is(err, berth.ErrNotFound) {
			return fmt.Errorf("no such container %s", value) // docker 20.10's words for it here
		} else if err != nil {
			return err
		}
		info, err := ctr.Inspect(ctx)
		if err != nil {
			return err
		}
		f.created[value] = info.Created
	case "publish", "expose":
		r, err := parsePortRange(key, value)
		if err != nil {
			return err
		}
		f.ports[value] = r
	case "isolation", "is-task":
		return fmt.Errorf("filter '%s' is docker's but not supported by berth", key)
	}
	return nil
}

// match reports whether info passes every key of f.
func (f *psFilters) match(info *berth.ContainerInfo) bool {
	for key, values := range f.values {
		var ok bool
		switch key {
		case "label": // every value, as docker's (filters.Args.MatchKVList)
			ok = matchLabels(values, info.Labels)
		case "name": // a regular expression, as docker's; docker's names begin with "/"
			ok = slices.ContainsFunc(f.names, func(re *regexp.Regexp) bool {
				return re.MatchString(info.Name) || re.MatchString("/"+info.Name)
			})
		case "ancestor":
			ok = slices.Contains(f.ancestors, info.Image) || slices.Contains(f.ancestors, info.ImageID)
		default:
			ok = slices.ContainsFunc(values, func(v string) bool { return f.matchValue(key, v, info) })
		}
		if !ok {
			return false
		}
	}
	return true
}

// matchValue reports whether info matches value v of key.
func (f *psFilters) matchValue(key, v string, info *berth.ContainerInfo) bool {
	switch key {
	case "before":
		return info.Created.Before(f.created[v])
	case "since":
		return info.Created.After(f.created[v])
	case "publish": // the host's port, as docker 20.10 matches it
		return slices.ContainsFunc(info.State.Ports, func(p berth.PortBinding) bool { return f.ports[v].has(p.HostPort, p.Protocol) })
	case "expose": // the container's: its exposed ports (EXPOSE, --expose) and its published ones
		exposed := func(p berth.PortBinding) bool { return f.ports[v].has(p.ContainerPort, p.Protocol) }
		return slices.ContainsFunc(info.Publish, exposed) || slices.ContainsFunc(f.exposed(info), exposed)
	case "id":
		return strings.HasPrefix(info.ID, v)
	case "status":
		return info.State.Status == v
	case "health":
		if info.State.Health == nil {
			return v == "none"
		}
		return info.State.Health.Status == v
	case "exited":
		code, _ := strconv.Atoi(v)
		return info.State.Status == "exited" && info.State.ExitCode == code
	case "network":
		return slices.Contains(info.Networks, v)
	case "volume":
		return slices.ContainsFunc(info.Mounts, func(m berth.Mount) bool {
			return (m.Type == berth.MountVolume && m.Source == v) || m.Target == v
		})
	}
	return false
}

func newPsRow(info *berth.ContainerInfo, noTrunc bool, now time.Time) psRow {
	r := psRow{
		ID:         info.ID,
		Image:      info.Image,
		Command:    shellJoin(info.Args),
		CreatedAt:  info.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
		RunningFor: createdSince(info.Created, now),
		State:      info.State.Status,
		Status:     containerStatus(info.State, now),
		Names:      info.Name,
		Ports:      psPorts(info.State.Ports),
	}
	if !noTrunc {
		r.ID = shortID(r.ID)
		r.Command = ellipsis(r.Command, 20)
	}
	r.Command = strconv.Quote(r.Command)
	r.Labels, r.labels = labelColumn(info.Labels), info.Labels
	r.Networks = strings.Join(info.Networks, ",")
	var mounts []string
	volumes := 0
	for _, m := range info.Mounts {
		name := m.Source
		if m.Type == berth.MountVolume {
			volumes++
			if !noTrunc {
				name = ellipsis(name, 15)
			}
		}
		if m.Type != berth.MountTmpfs {
			mounts = append(mounts, name)
		}
	}
	r.Mounts, r.LocalVolumes = strings.Join(mounts, ","), strconv.Itoa(volumes)
	return r
}

// shortID is the 12 hex digits docker shows for a container ID.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// parseRestartPolicy reads docker run --restart: NAME[:MAX-RETRIES]. Run
// checks the name and count.
func parseRestartPolicy(s string) (berth.RestartPolicy, error) {
	name, count, _ := strings.Cut(s, ":")
	p := berth.RestartPolicy{Name: name}
	if count != "" {
		n, err := strconv.Atoi(count)
		if err != nil {
			return p, errors.New("invalid restart policy format: maximum retry count must be an integer")
		}
		p.MaxRetries = n
	}
	return p, nil
}

// containerStatus is docker's STATUS column: "Up 3 seconds", "Up 3
// seconds (healthy)", "Exited (0) 5 seconds ago", "Created", "Restarting
// (1) 2 seconds ago".
func containerStatus(st berth.ContainerState, now time.Time) string {
	switch st.Status {
	case "restarting":
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	case "running":
		up := "Up " + humanDuration(now.Sub(st.StartedAt))
		switch {
		case st.Health == nil:
			return up
		case st.Health.Status == berth.HealthStarting:
			return up + " (health: starting)"
		}
		return up + " (" + st.Health.Status + ")"
	case "paused":
		return "Up " + humanDuration(now.Sub(st.StartedAt)) + " (Paused)"
	case "created":
		return "Created"
	case "exited":
		if st.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", st.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	case "dead":
		return "Dead"
	}
	return title(st.Status)
}

// shellJoin writes a command line as a shell would read it back, quoting
// the arguments that need it ("sh -c 'sleep 1'"), as docker ps shows it.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]#~!{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		quoted[i] = a
	}
	return strings.Join(quoted, " ")
}

// ellipsis cuts s to n characters, the last one "…", as docker truncates
// a column.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// logsCommand is docker logs.
func logsCommand(fs *flagSet) runFunc {
	var follow, timestamps bool
	var since, until, tail string
	fs.Bool(&follow, "f", "follow", "Follow log output")
	fs.String(&since, "", "since", "string", "", "Show logs since timestamp (e.g. \"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)")
	fs.String(&until, "", "until", "string", "", "Show logs before a timestamp (e.g. \"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)")
	fs.String(&tail, "n", "tail", "string", "all", "Number of lines to show from the end of the logs")
	fs.Bool(&timestamps, "t", "timestamps", "Show timestamps")
	return func(ctx context.Context, c *cli, args []string) error {
		var opts []berth.LogOption
		if follow {
			opts = append(opts, berth.WithFollow())
		}
		if timestamps {
			opts = append(opts, berth.WithTimestamps())
		}
		times, err := timeOptions(timeFlag[berth.LogOption]{"since", since, berth.WithSince}, timeFlag[berth.LogOption]{"until", until, berth.WithUntil})
		if err != nil {
			return err
		}
		opts = append(opts, times...)
		if tail != "all" {
			n, err := strconv.Atoi(tail)
			switch {
			case err != nil:
				return fmt.Errorf("invalid value for \"tail\": %q is not a number or \"all\"", tail)
			case n >= 0:
				opts = append(opts, berth.WithTail(n))
			}
		}
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		err = ctr.Logs(ctx, c.stdout, c.stderr, opts...)
		if follow && ctx.Err() != nil {
			return nil // interrupted, as docker logs -f ends
		}
		return err
	}
}

// timeFlag is a --since or --until flag's value and the option it gives.
type timeFlag[O any] struct {
	name, value string
	option      func(time.Time) O
}

// timeOptions turns the --since and --until values given into their
// options, read against one "now".
func timeOptions[O any](flags ...timeFlag[O]) ([]O, error) {
	now := time.Now()
	var opts []O
	for _, f := range flags {
		if f.value == "" {
			continue
		}
		t, err := parseTimestamp(f.value, now)
		if err != nil {
			return nil, fmt.Errorf("invalid value for %q: %w", f.name, err)
		}
		opts = append(opts, f.option(t))
	}
	return opts, nil
}

// parseTimestamp reads docker's --since and --until values: a duration
// before now ("10m", "1h30m"), an RFC 3339 time, a local date and time
// without a zone, or Unix seconds with an optional fraction.
func parseTimestamp(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && s != "0" { // "0" is the epoch, as docker reads it
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	secs, frac, _ := strings.Cut(s, ".")
	if sec, err := strconv.ParseInt(secs, 10, 64); err == nil && len(frac) <= 9 {
		var nsec int64
		if frac != "" {
			n, err := strconv.ParseUint(frac, 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("%q is not a timestamp or duration", s)
			}
			nsec = int64(n) * int64(math.Pow10(9-len(frac)))
		}
		return time.Unix(sec, nsec), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp or duration", s)
}

// eachContainer runs fn on every named container, going on past failures
// as docker does: each failure is an "Error: " line on stderr and the
// exit code is 1. fn prints what succeeded.
func eachContainer(ctx context.Context, c *cli, names []string, fn func(name string, ctr *berth.Container) error) error {
	rt, err := c.runtime()
	if err != nil {
		return err
	}
	var errs []string
	for _, name := range names {
		ctr, err := rt.Container(ctx, name)
		if err == nil {
			err = fn(name, ctr)
		}
		var status *statusError
		if errors.As(err, &status) && len(names) == 1 {
			return err // a followed container's exit code (start -a)
		}
		if err != nil {
			errs = append(errs, "Error: "+noSuchContainer(name, err).Error())
		}
	}
	return failures(errs)
}

// stopTimeoutFlag defines stop's and restart's -t on fs and returns what
// it asks of Stop: the container's own stop timeout when it is not set,
// for ever for a negative one.
func stopTimeoutFlag(fs *flagSet) func() time.Duration {
	var seconds int
	fs.Int(&seconds, "t", "time", 0, "Seconds to wait before killing the container (default: the container's stop timeout; -1 waits forever)")
	return func() time.Duration {
		switch {
		case !fs.isSet("time") && !fs.isSet("t"):
			return -1 // the container's own
		case seconds < 0:
			return math.MaxInt64
		}
		return time.Duration(seconds) * time.Second
	}
}

// stopCommand is docker stop.
func stopCommand(fs *flagSet) runFunc {
	stopTimeout := stopTimeoutFlag(fs)
	return func(ctx context.Context, c *cli, args []string) error {
		timeout := stopTimeout()
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			if err := ctr.Stop(ctx, timeout); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, name)
			return nil
		})
	}
}

// updateCommand is docker update: the limits and restart policy its flags
// give, over each container's own (a zero value keeps the container's).
func updateCommand(fs *flagSet) runFunc {
	var f runFlags
	limitFlags := f.registerLimits(fs)
	fs.String(&f.restart, "", "restart", "string", "", "Restart policy to apply when a container exits")
	return func(ctx context.Context, c *cli, args []string) error {
		limits := slices.ContainsFunc(limitFlags, fs.isSet)
		if !limits && !fs.isSet("restart") {
			return &statusError{code: exitFailure, msg: "You must provide one or more flags when using this command."}
		}
		// The values first, once, as docker's client checks them (125).
		given, err := f.limits(fs)
		if err != nil {
			return runError(err)
		}
		var policy *berth.RestartPolicy
		if fs.isSet("restart") {
			p, err := parseRestartPolicy(f.restart)
			if err != nil {
				return runError(err)
			}
			policy = &p
		}
		// Each container's limits with the given ones over them.
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			err := ctr.Update(ctx, func(u *berth.ContainerUpdate) (err error) {
				if policy != nil {
					u.RestartPolicy = *policy
				}
				if limits {
					u.Resources, err = overLimits(u.Resources, given)
				}
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, name)
			return nil
		})
	}
}

// startCommand is docker start. A container run in the foreground (run
// without -d) belongs to the program that starts it, which here is this
// command: it is started attached, as with -a, and lives as long as the
// command does. A detached one runs on in the background unless -a.
func startCommand(fs *flagSet) runFunc {
	var attachOut, interactive bool
	fs.Bool(&attachOut, "a", "attach", "Attach STDOUT/STDERR and forward signals")
	fs.Bool(&interactive, "i", "interactive", "Attach container's STDIN")
	return func(ctx context.Context, c *cli, args []string) error {
		if (attachOut || interactive) && len(args) > 1 {
			return &statusError{code: exitFailure, msg: "you cannot start and attach multiple containers at once"}
		}
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			return startOrFollow(ctx, c, name, ctr, attachOut || interactive, interactive, len(args), nil)
		})
	}
}

// restartCommand is docker restart; a container run in the foreground is
// restarted attached, as start starts it.
func restartCommand(fs *flagSet) runFunc {
	stopTimeout := stopTimeoutFlag(fs)
	return func(ctx context.Context, c *cli, args []string) error {
		timeout := stopTimeout()
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			return startOrFollow(ctx, c, name, ctr, false, false, len(args), &timeout)
		})
	}
}

// startOrFollow starts ctr, or restarts it when stopTimeout is set (Stop's
// timeout). A detached container is left running and its name printed,
// unless attachOut, as is one that runs already; a foreground one, or any
// with attachOut, is followed as run follows one: its output from the
// start on, the signals this command gets, its exit code as ours. Only one
// of the command's count names can be followed. With interactive, our
// input goes to a container whose input is kept open (run -d -i, create
// -i; not one run -i in the foreground, which reads /dev/null when started
// again).
func startOrFollow(ctx context.Context, c *cli, name string, ctr *berth.Container, attachOut, interactive bool, count int, stopTimeout *time.Duration) error {
	info, err := ctr.Inspect(ctx)
	if err != nil {
		return err
	}
	restart := stopTimeout != nil
	if !attachOut && (info.Detached || info.AutoRemove || (info.State.Running && !restart)) {
		if restart {
			err = ctr.Restart(ctx, *stopTimeout)
		} else {
			err = ctr.Start(ctx)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, name)
		return nil
	}
	if count > 1 {
		return fmt.Errorf("%s was run in the foreground and lives only as long as the command that starts it: start it on its own", name)
	}
	if restart {
		if err := ctr.Stop(ctx, *stopTimeout); err != nil {
			return err
		}
	}
	sigc := make(chan os.Signal, 8)
	notifyProxied(sigc, info.TTY)
	since := time.Now() // before the start: its first lines are logged before Start returns
	if err := ctr.Start(ctx); err != nil {
		return err
	}
	wctx := context.WithoutCancel(ctx)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		ctr.Logs(wctx, c.stdout, c.stderr, berth.WithFollow(), berth.WithSince(since))
	}()
	p := &berth.Process{TTY: info.TTY}
	if interactive && info.KeepStdinOpen && c.stdin != nil {
		// Input only: the output is the log's, from before the start.
		p.Stdin = c.stdin
		go ctr.Attach(wctx, c.stdin, nil, nil)
	}
	err = attach(ctx, c, p, ctr, sigc)
	<-logged
	return err
}

// killCommand is docker kill.
func killCommand(fs *flagSet) runFunc {
	var sigName string
	fs.String(&sigName, "s", "signal", "string", "KILL", "Signal to send to the container")
	return func(ctx context.Context, c *cli, args []string) error {
		sig, err := parseSignal(sigName)
		if err != nil {
			return err
		}
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			if err := ctr.Signal(ctx, sig); err != nil {
				return fmt.Errorf("cannot kill container: %s: %w", name, err)
			}
			fmt.Fprintln(c.stdout, name)
			return nil
		})
	}
}

// parseSignal reads a signal as docker kill -s takes it: "KILL",
// "SIGKILL", "kill" or "9".
func parseSignal(s string) (berth.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal: %s", s)
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
	return 0, fmt.Errorf("invalid signal: %s", s)
}

// rmCommand is docker rm. With -f a container that does not exist is no
// error, as in docker.
func rmCommand(fs *flagSet) runFunc {
	var force, volumes bool
	fs.Bool(&force, "f", "force", "Force the removal of a running container (uses SIGKILL)")
	fs.Bool(&volumes, "v", "volumes", "Remove anonymous volumes associated with the container")
	return func(ctx context.Context, c *cli, args []string) error {
		var opts []berth.RemoveOption
		if force {
			opts = append(opts, berth.WithForce())
		}
		if volumes {
			opts = append(opts, berth.WithRemoveVolumes())
		}
		names := args
		if force {
			// Like docker 20.10, a name that is not there is reported
			// but does not fail a forced removal.
			rt, err := c.runtime()
			if err != nil {
				return err
			}
			names = slices.DeleteFunc(slices.Clone(args), func(name string) bool {
				_, err := rt.Container(ctx, name)
				if !errors.Is(err, berth.ErrNotFound) {
					return false
				}
				fmt.Fprintln(c.stderr, "Error: "+noSuchContainer(name, err).Error())
				return true
			})
		}
		return eachContainer(ctx, c, names, func(name string, ctr *berth.Container) error {
			if err := ctr.Remove(ctx, opts...); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, name)
			return nil
		})
	}
}

// renameCommand is docker rename.
func renameCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		return ctr.Rename(ctx, args[1])
	}
}

// waitCommand is docker wait: it prints each container's exit code.
func waitCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			err := ctr.Wait(ctx)
			var ee *berth.ExitError
			switch {
			case errors.As(err, &ee):
				fmt.Fprintln(c.stdout, ee.Code)
			case err != nil:
				return err
			default:
				fmt.Fprintln(c.stdout, 0)
			}
			return nil
		})
	}
}

// containerInspect is the object docker container inspect prints, with
// the fields berth knows.
// ID is docker's {{.ID}}, beside the JSON's {{.Id}}.
func (c containerInspect) ID() string { return c.Id }

type containerInspect struct {
	Id              string
	Created         string
	Path            string
	Args            []string
	State           containerStateInspect
	Image           string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	HostConfig      hostConfig
	Mounts          []mountInspect
	Config          containerConfig
	NetworkSettings networkSettings
}

// networkSettings is docker inspect's NetworkSettings of a container: its
// published ports and its place on each network while it runs. The
// top-level address fields are filled for the default bridge network
// only, as docker fills them.
type networkSettings struct {
	Ports       map[string][]portBindingInspect
	Gateway     string
	IPAddress   string
	IPPrefixLen int
	MacAddress  string
	Networks    map[string]endpointInspect
}

type portBindingInspect struct {
	HostIp   string
	HostPort string
}

type endpointInspect struct {
	IPAMConfig  *ipamConfigInspect // null unless an address was fixed, as docker
	Aliases     []string
	MacAddress  string
	Gateway     string
	IPAddress   string
	IPPrefixLen int
}

type ipamConfigInspect struct{ IPv4Address string }

// newNetworkSettings is docker's NetworkSettings: an entry for each
// network the container joins, with its addresses while it runs.
func newNetworkSettings(info *berth.ContainerInfo) networkSettings {
	st := info.State
	ns := networkSettings{Ports: map[string][]portBindingInspect{}, Networks: map[string]endpointInspect{}}
	for _, p := range st.Ports {
		key := portKey(p)
		ns.Ports[key] = append(ns.Ports[key], portBindingInspect{HostIp: hostIP(p), HostPort: strconv.Itoa(int(p.HostPort))})
	}
	for _, nc := range info.NetworkConfigs {
		ep := endpointInspect{Aliases: nc.Aliases, MacAddress: nc.MAC}
		if nc.IP.IsValid() {
			ep.IPAMConfig = &ipamConfigInspect{IPv4Address: nc.IP.String()}
		}
		ns.Networks[nc.Network] = ep
	}
	for _, ep := range st.Networks {
		ns.Networks[ep.Network] = endpointInspect{
			IPAMConfig: ns.Networks[ep.Network].IPAMConfig,
			Aliases:    ep.Aliases, MacAddress: ep.MAC, Gateway: ep.Gateway.String(),
			IPAddress: ep.IP.String(), IPPrefixLen: ep.PrefixLen,
		}
		if ep.Network == berth.DefaultNetwork {
			ns.Gateway, ns.IPAddress, ns.IPPrefixLen, ns.MacAddress = ep.Gateway.String(), ep.IP.String(), ep.PrefixLen, ep.MAC
		}
	}
	return ns
}

// macAddressOf is docker 20.10's Config.MacAddress: --mac-address, which
// is the first network's.
func macAddressOf(info *berth.ContainerInfo) string {
	if len(info.NetworkConfigs) > 0 {
		return info.NetworkConfigs[0].MAC
	}
	return ""
}

// portKey is docker's name of a container port: "80/tcp".
func portKey(p berth.PortBinding) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%d/%s", p.ContainerPort, proto)
}

// hostIP is the host address of a binding as docker prints it.
func hostIP(p berth.PortBinding) string {
	if p.HostIP == "" {
		return "0.0.0.0"
	}
	return p.HostIP
}

// sortedPorts orders bindings by container port, protocol and host
// address, as docker port lists them.
func sortedPorts(ports []berth.PortBinding) []berth.PortBinding {
	out := slices.Clone(ports)
	slices.SortStableFunc(out, func(a, b berth.PortBinding) int {
		if a.ContainerPort != b.ContainerPort {
			return int(a.ContainerPort) - int(b.ContainerPort)
		}
		if c := strings.Compare(portKey(a), portKey(b)); c != 0 {
			return c
		}
		return strings.Compare(hostIP(a), hostIP(b))
	})
	return out
}

// portCommand is docker port: every published port of the container, or
// the host addresses of one container port.
func portCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		ports, err := ctr.Ports(ctx)
		if err != nil {
			return err
		}
		ports = sortedPorts(ports)
		if len(args) == 1 {
			for _, p := range ports {
				fmt.Fprintln(c.stdout, p.String())
			}
			return nil
		}
		want := strings.ToLower(args[1])
		if !strings.Contains(want, "/") {
			want += "/tcp"
		}
		found := false
		for _, p := range ports {
			if portKey(p) == want {
				fmt.Fprintln(c.stdout, net.JoinHostPort(hostIP(p), strconv.Itoa(int(p.HostPort))))
				found = true
			}
		}
		if !found {
			return &statusError{code: exitFailure, msg: fmt.Sprintf("Error: No public port '%s' published for %s", want, args[0])}
		}
		return nil
	}
}

// psPorts is docker ps's PORTS column: "0.0.0.0:32768->80/tcp, …".
func psPorts(ports []berth.PortBinding) string {
	var out []string
	for _, p := range sortedPorts(ports) {
		out = append(out, net.JoinHostPort(hostIP(p), strconv.Itoa(int(p.HostPort)))+"->"+portKey(p))
	}
	return strings.Join(out, ", ")
}

// mountInspect is one entry of docker inspect's Mounts.
type mountInspect struct {
	Type        string
	Name        string `json:",omitempty"`
	Source      string
	Destination string
	Driver      string `json:",omitempty"`
	Mode        string
	RW          bool
	Propagation string
}

type containerStateInspect struct {
	Status     string
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
	Health     *berth.HealthState `json:",omitempty"`
}

type hostConfig struct {
	AutoRemove        bool
	ReadonlyRootfs    bool
	Privileged        bool
	CapAdd            []string
	CapDrop           []string
	Sysctls           map[string]string `json:",omitempty"`
	Init              *bool             `json:",omitempty"` // absent (a template's <nil>) unless --init, as docker
	GroupAdd          []string
	Devices           []berth.DeviceMapping // [] when none, as docker
	DeviceCgroupRules []string
	Dns               []string // [] when none, as docker
	DnsOptions        []string
	DnsSearch         []string
	ExtraHosts        []string // null when none
	LogConfig         logConfigInspect
	PidMode           string
	OomScoreAdj       int
	IpcMode           string
	UTSMode           string
	Memory            int64
	MemorySwap        int64
	NanoCpus          int64
	CpuShares         int64
	PidsLimit         *int64 // null when unlimited, as docker prints it
	CpusetCpus        string
	CpusetMems        string
	CpuPeriod         int64
	CpuQuota          int64
	MemoryReservation int64
	ShmSize           int64
	RestartPolicy     restartPolicyInspect
}

// logConfigInspect is docker's HostConfig.LogConfig: berth's log is
// json-file's in what it keeps (max-size in bytes, max-file).
type logConfigInspect struct {
	Type   string
	Config map[string]string
}

// logConfigOf is a container's log as docker's HostConfig.LogConfig:
// json-file's options (max-size in bytes), or the none driver.
func logConfigOf(info *berth.ContainerInfo) logConfigInspect {
	if info.NoLog {
		return logConfigInspect{Type: "none", Config: map[string]string{}}
	}
	opts := map[string]string{}
	if info.LogMaxSize > 0 {
		opts["max-size"] = strconv.FormatInt(info.LogMaxSize, 10)
	}
	if info.LogMaxFiles > 0 {
		opts["max-file"] = strconv.Itoa(info.LogMaxFiles)
	}
	return logConfigInspect{Type: "json-file", Config: opts}
}

// logOptions reads --log-driver and --log-opt as docker's json-file and
// local drivers take them: max-size in decimal units ("10m" is 10^7
// bytes), max-file, which needs max-size to matter (local's defaults:
// 20m and 5); "none" keeps no log. Other drivers and options are refused.
func logOptions(driver string, opts []string) ([]berth.RunOption, error) {
	var size int64
	files := 0
	switch driver {
	case "", "json-file":
	case "local":
		size, files = 20e6, 5
	case "none":
		if len(opts) > 0 {
			return nil, fmt.Errorf("the none log driver takes no --log-opt")
		}
		return []berth.RunOption{berth.WithoutLog()}, nil
	default:
		return nil, fmt.Errorf("log driver %q is not supported: berth keeps its own log, as json-file's (or none)", driver)
	}
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("want KEY=VALUE")
		case k == "max-size":
			if size, err = parseSize(v, 1000); err == nil && size <= 0 {
				err = fmt.Errorf("max-size must be a positive number")
			}
		case k == "max-file":
			if files, err = strconv.Atoi(v); err == nil && files < 1 {
				err = fmt.Errorf("max-file cannot be less than 1")
			}
		default:
			err = fmt.Errorf("unknown log opt %q (max-size and max-file are supported)", k)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--log-opt\" flag: %v", o, err)
		}
	}
	if size == 0 {
		return nil, nil // max-file alone rotates nothing, as in docker
	}
	return []berth.RunOption{berth.WithLogRotation(size, files)}, nil
}

type restartPolicyInspect struct {
	Name              string
	MaximumRetryCount int
}

// newContainerInspect shapes info as docker container inspect does.
func newContainerInspect(info *berth.ContainerInfo) containerInspect {
	st := info.State
	out := containerInspect{
		Id:      info.ID,
		Created: info.Created.UTC().Format(time.RFC3339Nano),
		Args:    []string{},
		State: containerStateInspect{
			Status: st.Status, Running: st.Running || st.Restarting, Paused: st.Status == "paused", Restarting: st.Restarting, OOMKilled: st.OOMKilled,
			Dead: st.Status == "dead", Pid: st.Pid, ExitCode: st.ExitCode, Error: st.Error,
			StartedAt: st.StartedAt.UTC().Format(time.RFC3339Nano), FinishedAt: st.FinishedAt.UTC().Format(time.RFC3339Nano),
			Health: st.Health,
		},
		Image:        info.ImageID,
		LogPath:      info.LogPath,
		Name:         "/" + info.Name,
		RestartCount: info.RestartCount,
		Driver:       "overlay",
		Platform:     "linux",
		HostConfig: hostConfig{
			AutoRemove: info.AutoRemove, ReadonlyRootfs: info.ReadOnly, Privileged: info.Privileged,
			CapAdd: info.CapAdd, CapDrop: info.CapDrop, Sysctls: info.Sysctls, GroupAdd: info.GroupAdd,
			Devices: append([]berth.DeviceMapping{}, info.Devices...), DeviceCgroupRules: info.DeviceCgroupRules,
			PidMode: info.PidMode, IpcMode: cmp.Or(info.IpcMode, "private"), UTSMode: info.UTSMode,
			Dns: append([]string{}, info.DNS...), DnsOptions: append([]string{}, info.DNSOptions...),
			DnsSearch: append([]string{}, info.DNSSearch...), ExtraHosts: info.ExtraHosts,
			LogConfig: logConfigOf(info), OomScoreAdj: info.OomScoreAdj,
			Memory: info.Resources.Memory, MemorySwap: info.Resources.MemorySwap,
			NanoCpus: info.Resources.NanoCPUs, CpuShares: int64(info.Resources.CPUShares),
			CpusetCpus: info.Resources.CpusetCpus, CpusetMems: info.Resources.CpusetMems,
			CpuPeriod: info.Resources.CPUPeriod, CpuQuota: info.Resources.CPUQuota, MemoryReservation: info.Resources.MemoryReservation,
			ShmSize:       cmp.Or(info.ShmSize, 64<<20),
			RestartPolicy: restartPolicyInspect{Name: cmp.Or(info.RestartPolicy.Name, "no"), MaximumRetryCount: info.RestartPolicy.MaxRetries},
		},
		Mounts: []mountInspect{},
		Config: containerConfig{
			Hostname: info.Hostname, Domainname: info.Domainname, User: info.User, MacAddress: macAddressOf(info),
			AttachStdout: !info.Detached, AttachStderr: !info.Detached,
			AttachStdin: info.OpenStdin && (info.StdinOnce || !info.Detached), OpenStdin: info.OpenStdin, StdinOnce: info.StdinOnce,
			Tty: info.TTY, Env: info.Env, Cmd: info.Cmd, Image: info.Image,
			WorkingDir: info.WorkingDir, Entrypoint: info.Entrypoint, Labels: info.Labels,
			StopSignal: info.StopSignal, Healthcheck: info.Healthcheck,
		},
		NetworkSettings: newNetworkSettings(info),
	}
	if len(info.Args) > 0 {
		out.Path, out.Args = info.Args[0], append(out.Args, info.Args[1:]...)
	}
	if info.Resources.PidsLimit > 0 {
		out.HostConfig.PidsLimit = &info.Resources.PidsLimit
	}
	if info.Init {
		out.HostConfig.Init = &info.Init
	}
	for _, p := range info.ExposedPorts {
		if out.Config.ExposedPorts == nil {
			out.Config.ExposedPorts = map[string]struct{}{}
		}
		out.Config.ExposedPorts[p] = struct{}{}
	}
	if out.Config.Labels == nil {
		out.Config.Labels = map[string]string{}
	}
	return out
}

// statsRow is one line of docker stats.
// Container is the ID, as docker's {{.Container}} when no name was given.
// There is no BLOCK I/O: this kernel's blkio statistics stay at zero for
// docker's containers too, so berth could not show a figure it tested.
type statsRow struct {
	Container, ID, Name, CPUPerc, MemUsage, MemPerc, NetIO, PIDs string
}

var statsHeader = statsRow{Container: "CONTAINER", ID: "CONTAINER ID", Name: "NAME", CPUPerc: "CPU %", MemUsage: "MEM USAGE / LIMIT", MemPerc: "MEM %", NetIO: "NET I/O", PIDs: "PIDS"}

const statsFormat = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.PIDs}}"

// statsSample is how long stats measures CPU use over.
const statsSample = 200 * time.Millisecond

// statsCommand is docker stats. Without --no-stream it redraws the table
// every second until interrupted.
func statsCommand(fs *flagSet) runFunc {
	var all, noStream, noTrunc bool
	fs.Bool(&all, "a", "all", "Show all containers (default shows just running)")
	fs.Bool(&noStream, "", "no-stream", "Disable streaming stats and only pull the first result")
	fs.Bool(&noTrunc, "", "no-trunc", "Do not truncate output")
	var format string
	fs.String(&format, "", "format", "string", "", "Pretty-print stats using a Go template")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		for {
			ctrs, err := statsTargets(ctx, rt, args, all)
			if err != nil {
				return err
			}
			rows := sampleStats(ctx, ctrs, noTrunc)
			if !noStream {
				fmt.Fprint(c.stdout, "\x1b[2J\x1b[H")
			}
			if err := printRows(c.stdout, cmp.Or(tableFormat(format), statsFormat), statsHeader, rows); err != nil {
				return err
			}
			if noStream {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second - statsSample):
			}
		}
	}
}

// statsTargets are the named containers, else the running ones (all
// with -a).
func statsTargets(ctx context.Context, rt *berth.Runtime, names []string, all bool) ([]*berth.Container, error) {
	var ctrs []*berth.Container
	if len(names) > 0 {
		var errs []string
		for _, name := range names {
			ctr, err := rt.Container(ctx, name)
			if err != nil {
				errs = append(errs, "Error: "+noSuchContainer(name, err).Error())
				continue
			}
			ctrs = append(ctrs, ctr)
		}
		if err := failures(errs); err != nil {
			return nil, err
		}
		return ctrs, nil
	}
	var opts []berth.ListOption
	if all {
		opts = append(opts, berth.WithAll())
	}
	infos, err := rt.Containers(ctx, opts...)
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		ctr, err := rt.Container(ctx, info.ID)
		if err != nil {
			continue // removed since listed
		}
		ctrs = append(ctrs, ctr)
	}
	return ctrs, nil
}

// sampleStats measures each container twice, statsSample apart, for the
// CPU share; a container that is not running shows zeros, as in docker.
func sampleStats(ctx context.Context, ctrs []*berth.Container, noTrunc bool) []statsRow {
	type sample struct {
		s  berth.ContainerStats
		at time.Time
		ok bool
	}
	take := func() []sample {
		out := make([]sample, len(ctrs))
		for i, ctr := range ctrs {
			s, err := ctr.Stats(ctx)
			out[i] = sample{s, time.Now(), err == nil}
		}
		return out
	}
	first := take()
	select {
	case <-ctx.Done():
	case <-time.After(statsSample):
	}
	second := take()
	hostMem := hostMemory()
	rows := make([]statsRow, len(ctrs))
	for i, ctr := range ctrs {
		id := ctr.ID
		if !noTrunc {
			id = shortID(id)
		}
		a, b := first[i], second[i]
		var cpu, memPerc float64
		var usage, limit, pids, rx, tx uint64
		if b.ok {
			usage, limit, pids, rx, tx = b.s.MemoryUsage, b.s.MemoryLimit, b.s.Pids, b.s.NetRx, b.s.NetTx
			if limit == 0 || limit > hostMem && hostMem > 0 {
				limit = hostMem
			}
			if limit > 0 {
				memPerc = float64(usage) / float64(limit) * 100
			}
			if a.ok && b.at.After(a.at) && b.s.CPUNanos >= a.s.CPUNanos {
				cpu = float64(b.s.CPUNanos-a.s.CPUNanos) / float64(b.at.Sub(a.at).Nanoseconds()) * 100
			}
		}
		rows[i] = statsRow{
			Container: id, ID: id, Name: ctr.Name,
			CPUPerc:  fmt.Sprintf("%.2f%%", cpu),
			MemUsage: binarySize(usage) + " / " + binarySize(limit),
			MemPerc:  fmt.Sprintf("%.2f%%", memPerc),
			NetIO:    humanSize(int64(rx)) + " / " + humanSize(int64(tx)),
			PIDs:     strconv.FormatUint(pids, 10),
		}
	}
	return rows
}

// hostMemory is the machine's RAM, which docker shows as the limit of a
// container without one.
func hostMemory() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

// binarySize formats bytes as docker stats does: binary units and 4
// significant digits ("1.504MiB", "7.668GiB").
func binarySize(n uint64) string {
	return scaledSize(float64(n), 1024, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}, 4)
}

// inspectMounts shapes a container's mounts the way docker inspect shows
// them: a volume's Source is its directory on the host.
func inspectMounts(ctx context.Context, rt *berth.Runtime, mounts []berth.Mount) []mountInspect {
	out := []mountInspect{}
	for _, m := range mounts {
		mi := mountInspect{Type: string(m.Type), Source: m.Source, Destination: m.Target, RW: !m.ReadOnly, Propagation: m.Propagation}
		switch m.Type {
		case berth.MountVolume:
			mi.Name, mi.Driver, mi.Mode = m.Source, "local", "z"
			if v, err := rt.Volume(ctx, m.Source); err == nil {
				mi.Source = v.Mountpoint
			}
		case berth.MountBind:
			if mi.Propagation == "" {
				mi.Propagation = "rprivate"
			}
		}
		out = append(out, mi)
	}
	return out
}
