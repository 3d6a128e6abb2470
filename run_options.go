package berth

import (
	"maps"
	"time"
)

// RunOption configures Run.
type RunOption interface{ applyRun(*runConfig) }

type runConfig struct {
	name           string
	detach         bool
	openStdin      bool
	stdinOnce      bool
	autoRemove     bool
	entrypoint     []string
	hasEntry       bool
	hostname       string
	labels         map[string]string
	resources      Resources
	readOnly       bool
	capAdd         []string
	capDrop        []string
	noNewPrivs     bool
	nnpSet         bool // WithNoNewPrivileges was given
	seccomp        bool
	privileged     bool
	sysctls        map[string]string
	init           bool
	groupAdd       []string
	devices        []string
	deviceRules    []string
	logMaxSize     int64
	logMaxFiles    int
	noLog          bool
	oomScoreAdj    int
	seccompProfile string
	pidMode        string
	ipcMode        string
	utsMode        string
	expose         []string
	stopSignal     string
	stopTimeout    time.Duration
	rlimits        []Rlimit
	mounts         []Mount
	volumesFrom    []string
	networks       []networkAttachment // names in NetworkID until resolved
	networkMode    string
	publish        []string
	publishAll     bool
	extraHosts     []string
	dns            []string
	dnsSearch      []string
	fixedAddresses []fixedAddress
	dnsOptions     []string
	domainname     string
	healthcheck    *HealthConfig
	restart        RestartPolicy
	shmSize        int64
	// noImageVolumes leaves the image's VOLUMEs unmounted: a build's RUN
	// writes below them into its layer, as BuildKit's does.
	noImageVolumes bool
	// buildKitGroups: the supplementary groups of BuildKit's RUN.
	buildKitGroups bool
}

type runOptionFunc func(*runConfig)

func (f runOptionFunc) applyRun(c *runConfig) { f(c) }

// WithName names the container (docker run --name). Names are unique in a
// root: a taken name fails Run with ErrExists. Default: a generated name.
func WithName(name string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.name = name })
}

// WithDetach starts the container detached (docker run -d): it outlives the
// calling program, its output goes only to its log, and any program opening
// the same root can list, wait for, stop and remove it. Default: the
// container is attached and dies with the Runtime that started it or with
// the program, even if the program is SIGKILLed.
func WithDetach() RunOption {
	return runOptionFunc(func(c *runConfig) { c.detach = true })
}

// WithOpenStdin keeps the container's standard input open with no data
// until a program writes to it through Container.Attach (docker run -d -i,
// docker create -i): a shell or `cat` waits for input instead of reading
// end-of-file and exiting. With a terminal (Process.TTY), what Attach
// writes is the terminal's input. Each start opens it anew. With
// Process.Stdin given too (docker run -i), the first run reads
// Process.Stdin and the later starts (Start, a restart policy) open the
// input as above. Default: /dev/null, unless Process.Stdin is given.
func WithOpenStdin() RunOption {
	return runOptionFunc(func(c *runConfig) { c.openStdin = true })
}

// WithStdinOnce, with WithOpenStdin, closes the container's standard input
// when the first attachment that writes to it ends (its stdin's
// end-of-file, or Attach returning): the program then reads end-of-file,
// as with docker's StdinOnce (docker create -i, then docker start -ai with
// input piped in; docker run -i). Until an attachment comes, the input
// stays open and empty; each start opens it anew, for one attachment
// again. Attachments open at once close it when the last of them ends
// (docker: the first). As docker's, it does nothing for a terminal
// (Process.TTY), whose input stays open. Where the process can watch no
// more files (a user's 128 inotify instances in use), the input stays
// open. Refused (ErrInvalid) without WithOpenStdin. Default: the input
// stays open until the container exits, whatever attaches.
func WithStdinOnce() RunOption {
	return runOptionFunc(func(c *runConfig) { c.stdinOnce = true })
}

// WithAutoRemove removes the container and everything it made once it
// exits (docker run --rm). Default: an exited container stays until Remove.
func WithAutoRemove() RunOption {
	return runOptionFunc(func(c *runConfig) { c.autoRemove = true })
}

// WithEntrypoint replaces the image's ENTRYPOINT (docker run --entrypoint)
// and, as docker does, drops the image's CMD: Process.Args alone follow it.
// No arguments clears the entrypoint.
func WithEntrypoint(args ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.entrypoint, c.hasEntry = args, true })
}

// WithHostname sets the container's hostname (docker run --hostname): at
// most 64 bytes, without white space or control characters (Run fails
// with ErrInvalid). Default: the first 12 hex digits of its ID.
func WithHostname(name string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.hostname = name })
}

// WithLabels adds labels to the container (docker run --label).
func WithLabels(labels map[string]string) RunOption {
	return runOptionFunc(func(c *runConfig) {
		if c.labels == nil {
			c.labels = map[string]string{}
		}
		for k, v := range labels {
			c.labels[k] = v
		}
	})
}

// WithResources limits memory, CPU and processes (docker run --memory,
// --memory-swap, --cpus, --cpu-shares, --pids-limit). Default: unlimited.
func WithResources(r Resources) RunOption {
	return runOptionFunc(func(c *runConfig) { c.resources = r })
}

// WithReadOnlyRootfs mounts the container's root filesystem read-only
// (docker run --read-only).
func WithReadOnlyRootfs() RunOption {
	return runOptionFunc(func(c *runConfig) { c.readOnly = true })
}

// WithCapAdd adds capabilities to docker's default set (docker run
// --cap-add); names with or without the CAP_ prefix, or "ALL".
func WithCapAdd(caps ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.capAdd = append(c.capAdd, caps...) })
}

// WithCapDrop removes capabilities from the set (docker run --cap-drop);
// "ALL" drops every one.
func WithCapDrop(caps ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.capDrop = append(c.capDrop, caps...) })
}

// WithNoNewPrivileges sets whether the container's processes run with
// no_new_privs (docker --security-opt no-new-privileges). Default: true —
// berth is stricter than docker here; setuid binaries in the image then
// gain nothing — but false with WithPrivileged, as in docker.
func WithNoNewPrivileges(on bool) RunOption {
	return runOptionFunc(func(c *runConfig) { c.noNewPrivs, c.nnpSet = on, true })
}

// RunExecOption is an option of both Run (and Create) and Exec.
type RunExecOption interface {
	RunOption
	ExecOption
}

type privilegedOption struct{}

func (privilegedOption) applyRun(c *runConfig)   { c.privileged = true }
func (privilegedOption) applyExec(c *execConfig) { c.privileged = true }

// WithPrivileged lifts the container's confinement, as docker run
// --privileged does: every capability the calling program can give
// (WithCapAdd and WithCapDrop are ignored), no seccomp filter, no masked
// or read-only paths in /proc and /sys, /sys read-write, every device
// node of the host's /dev (read when the container starts) and no
// device restriction by its cgroup. no_new_privs is off unless
// WithNoNewPrivileges turns it on, as in docker, so that setuid programs
// work inside. Processes Exec starts in such a container have the same.
//
// Given to Exec (docker exec --privileged), it gives that one process
// every capability and no seccomp filter; no_new_privs stays as the
// container has it.
//
// The container can then do almost anything the host's root can,
// through /sys, /proc/sys and the devices: use it only for images that
// need it (Docker in Docker, system tests of kernel features).
func WithPrivileged() RunExecOption { return privilegedOption{} }

// WithSysctls sets kernel parameters in the container's own namespaces
// (docker run --sysctl), by their dotted names: docker's list of those
// that belong to a namespace, net.* (not with network mode "host"; with
// "container:NAME" they change the namespace it shares, and fail the
// start when that is the host's), fs.mqueue.*,
// kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem,
// kernel.shmall, kernel.shmmax, kernel.shmmni and
// kernel.shm_rmid_forced (not these, nor fs.mqueue.*, with IPC mode
// "host"). They are written before the container's
// filesystem is set up; a key the kernel lacks, or a value it refuses,
// fails the start with an error naming it. Any other key fails Run with
// ErrInvalid.
func WithSysctls(sysctls map[string]string) RunOption {
	return runOptionFunc(func(c *runConfig) {
		if c.sysctls == nil {
			c.sysctls = map[string]string{}
		}
		maps.Copy(c.sysctls, sysctls)
	})
}

// WithGroupAdd adds supplementary groups to the container's user, and to
// every process Exec starts in it (docker run --group-add): group names,
// looked up in the container's /etc/group when it starts (a name missing
// there fails the start), or numeric gids, which need no entry.
func WithGroupAdd(groups ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.groupAdd = append(c.groupAdd, groups...) })
}

// WithDevices gives the container host devices (docker run --device), in
// docker's form HOST[:CONTAINER][:PERMISSIONS]: "/dev/fuse",
// "/dev/sdb:/dev/xvdb", "/dev/ttyUSB0:rw". The host node (a symlink to
// one is followed) is made at the container path, by default the host's,
// with the host node's mode and owner, and the container's cgroup lets it
// use the device with the permissions, by default "rwm" (read, write,
// mknod). A directory gives every device node below it. The host's
// devices are looked up at each start: one missing then fails the start.
// A node at one of /dev's default ones (/dev/null, ...) replaces it.
// Unlike docker, the container path must be in /dev, and not in or at
// the directories, mounts and links berth makes there (/dev/pts,
// /dev/shm, /dev/fd, ...).
func WithDevices(devices ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.devices = append(c.devices, devices...) })
}

// WithDeviceCgroupRules lets the container use devices its cgroup would
// refuse (docker run --device-cgroup-rule), by rules such as
// "c 10:229 rw" or "b 8:* r": a type (c, b or a for all), major and
// minor numbers or * for any, and access, r, w and m. No node is made:
// one the container makes with mknod, or gets from a volume, then opens.
func WithDeviceCgroupRules(rules ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.deviceRules = append(c.deviceRules, rules...) })
}

// WithLogRotation bounds the container's log (docker's json-file log
// options max-size and max-file): once the log holds maxSize bytes it is
// rotated, and at most maxFiles files are kept, the oldest output
// deleted; maxFiles 0 means 1, as docker's default. Logs and WaitLog read
// what is kept, oldest first, and a follower keeps up across rotations
// (one that falls maxFiles files behind loses what was deleted). Default:
// one log, unbounded, as docker's.
func WithLogRotation(maxSize int64, maxFiles int) RunOption {
	return runOptionFunc(func(c *runConfig) { c.logMaxSize, c.logMaxFiles = maxSize, maxFiles })
}

// WithOomScoreAdj sets the OOM killer's score adjustment of the
// container's processes (docker run --oom-score-adj), -1000 to 1000:
// positive makes them its first victims, negative spares them. A
// negative one (below the least a privileged ancestor allowed, normally
// 0) needs CAP_SYS_RESOURCE in the calling program; without it the start
// fails saying so. Processes Exec starts in it get the same, as docker's.
// Without it the container's processes have 0, docker's default, not the
// calling program's.
func WithOomScoreAdj(adj int) RunOption {
	return runOptionFunc(func(c *runConfig) { c.oomScoreAdj = adj })
}

// WithoutLog keeps no log of the container's output (docker run
// --log-driver none): Logs and WaitLog fail for it, while an attached
// container's output still reaches Process.Stdout and Stderr. For
// containers whose output nobody reads again, it spares the disk.
func WithoutLog() RunOption {
	return runOptionFunc(func(c *runConfig) { c.noLog = true })
}

// WithPidMode sets the container's pid namespace (docker run --pid):
// "host", the host's, where the container sees every process of the host
// and its own have their host pids; or "container:NAME", that of the
// running container NAME, whose processes it then sees. Its command is
// not PID 1 then: when it exits, berth kills the container's other
// processes, which its own pid namespace's end would have killed. But an
// attached container whose program is SIGKILLed loses only its command:
// what that started lives on until the next New on the root sweeps it.
// The default is a pid namespace of its own.
func WithPidMode(mode string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.pidMode = mode })
}

// WithIpcMode sets the container's IPC namespace (docker run --ipc):
// "private", the default, its own with its own /dev/shm; "shareable", the
// same, which other containers may join; "container:NAME", the IPC
// namespace and /dev/shm of a running container that is "shareable" (or
// "host": then the host's, or "container:" itself: then the one it
// joined), for the start (Start joins the donor's namespace again, and
// fails with ErrNotRunning when the donor is not running), the /dev/shm
// nosuid, nodev and noexec whatever the donor did to its own; "host", the
// host's, and the host's /dev/shm; "none", its own without a /dev/shm.
// Joining a donor of another mode fails with ErrInvalid, as docker's
// "non-shareable" refusal (berth refuses at Create already, docker at
// start). Unlike docker, which ignores it, WithShmSize is refused with a
// joined /dev/shm, and so are IPC sysctls, which would change the
// donor's namespace.
func WithIpcMode(mode string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.ipcMode = mode })
}

// WithUTSMode sets the container's UTS namespace (docker run --uts):
// "host" shares the host's, so that its hostname is the host's (and
// WithHostname is refused). The default is its own.
func WithUTSMode(mode string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.utsMode = mode })
}

// WithExpose adds ports the container exposes to its image's EXPOSE
// (docker run --expose): "80", "53/udp", "8000-8010/tcp". WithPublishAll
// publishes them all; nothing else is opened by exposing.
func WithExpose(ports ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.expose = append(c.expose, ports...) })
}

// WithInit runs an init as the container's PID 1 (docker run --init),
// which runs the command as its child: it passes the command the signals
// it gets (Stop's among them), reaps the processes orphaned inside the
// container, which would otherwise stay zombies under a command that
// never waits for them, and exits as the command does (128+N when signal
// N killed it). It is a few hundred bytes of berth's own (docker's is
// tini), run from /dev/.berth-init with the container's user,
// capabilities and seccomp filter; nothing of it is in the container's
// filesystem. A mount at /dev would hide it: Run refuses one (but one
// reaching /dev through an image's symlink fails the start instead, the
// init not found). Since the
// init exits with 128+N for a command killed by signal N, the container's
// ExitError has that Code and no Signal, as docker's does. amd64 only:
// elsewhere the start fails.
func WithInit() RunOption {
	return runOptionFunc(func(c *runConfig) { c.init = true })
}

// WithSeccomp sets whether docker's default seccomp profile applies
// (docker --security-opt seccomp=unconfined turns it off, builtin on). It
// replaces a WithSeccompProfile given before it. Default: true.
func WithSeccomp(on bool) RunOption {
	return runOptionFunc(func(c *runConfig) { c.seccomp, c.seccompProfile = on, "" })
}

// WithSeccompProfile replaces docker's default seccomp profile with
// profile, in docker's JSON form (docker run --security-opt
// seccomp=FILE: defaultAction, architectures, syscalls with their names,
// action, args and includes/excludes), for the container's processes and
// those Exec starts in it. It is expanded for the container's
// capabilities and the host, as docker's own is, and compiled when Run is
// called: a profile that does not parse, is empty, has flags, or uses an
// action berth does not compile (SCMP_ACT_NOTIFY), fails Run with
// ErrInvalid. The profile must let the container's program start (execve
// and what its loader calls); a privileged container has none, as with
// docker.
func WithSeccompProfile(profile []byte) RunOption {
	return runOptionFunc(func(c *runConfig) { c.seccomp, c.seccompProfile = true, string(profile) })
}

// WithStopSignal sets the signal Stop sends first, by name ("SIGINT",
// "TERM") or number (docker run --stop-signal). Default: the image's
// STOPSIGNAL, else SIGTERM.
func WithStopSignal(sig string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.stopSignal = sig })
}

// WithHealthcheck sets the container's health check, in place of its
// image's HEALTHCHECK (docker run --health-cmd, --health-interval,
// --health-timeout, --health-start-period, --health-retries): Test is
// {"CMD", args...}, {"CMD-SHELL", command} or {"NONE"} for none. A field
// left zero (Test empty) takes the image's value, else docker's default
// (30 s interval and timeout, no start period, 3 retries); times under
// 1 ms are refused, as docker refuses them. The process that starts the
// container runs it while the container runs, and records what it finds
// in ContainerState.Health; WaitHealthy runs it too.
func WithHealthcheck(h HealthConfig) RunOption {
	return runOptionFunc(func(c *runConfig) { c.healthcheck = &h })
}

// WithShmSize sets the size of the container's /dev/shm in bytes (docker
// run --shm-size), which databases and browsers often need larger.
// Default, and for 0: 64 MiB, as docker's. Refused with WithIpcMode
// "host", "none" or "container:NAME", which give the container no /dev/shm
// of its own.
func WithShmSize(bytes int64) RunOption {
	return runOptionFunc(func(c *runConfig) { c.shmSize = bytes })
}

// WithStopTimeout sets how long Stop waits before SIGKILL when called with
// a negative timeout (docker run --stop-timeout). Default:
// DefaultStopTimeout.
func WithStopTimeout(d time.Duration) RunOption {
	return runOptionFunc(func(c *runConfig) { c.stopTimeout = d })
}

// WithRlimits sets resource limits of the container's processes (docker run
// --ulimit). A limit above the calling program's own hard limit is lowered
// to it: berth never raises a hard limit.
func WithRlimits(limits ...Rlimit) RunOption {
	return runOptionFunc(func(c *runConfig) { c.rlimits = append(c.rlimits, limits...) })
}

// WithNetwork attaches the container to the named network (docker run
// --network NAME --network-alias ALIAS), where other containers find it by
// its name and by each alias. Given more than once, the container joins
// every network named; the first one gives its default route and published
// ports. Default: the default bridge network (DefaultNetwork).
func WithNetwork(name string, aliases ...string) RunOption {
	return runOptionFunc(func(c *runConfig) {
		c.networks = append(c.networks, networkAttachment{NetworkID: name, Name: name, Aliases: aliases})
	})
}

// WithIP gives the container a fixed IPv4 address on the named network
// (docker run --network NAME --ip; compose's ipv4_address), which it
// joins by WithNetwork or WithNetworkMode. As in docker, the network must
// have a subnet given when it was made (WithSubnet), and the address must
// be in it, neither its first or last nor the gateway. The address is
// taken at each start: a start fails with ErrInUse while another running
// container has it.
func WithIP(network, ip string) RunOption {
	return runOptionFunc(func(c *runConfig) {
		c.fixedAddresses = append(c.fixedAddresses, fixedAddress{network: network, ip: ip})
	})
}

// WithMACAddress gives the container's interface on the named network a
// fixed Ethernet address (docker run --mac-address), a unicast one such
// as "02:42:ac:11:00:02"; name DefaultNetwork for a container on no other
// network. Default: 02:42 and then the four bytes of its IPv4 address, as
// docker makes it.
func WithMACAddress(network, mac string) RunOption {
	return runOptionFunc(func(c *runConfig) {
		c.fixedAddresses = append(c.fixedAddresses, fixedAddress{network: network, mac: mac})
	})
}

// fixedAddress is WithIP's or WithMACAddress'.
type fixedAddress struct{ network, ip, mac string }

// WithNetworkMode sets how the container is networked (docker run
// --network): "bridge" (the default network), "none" (a namespace with only
// loopback), "host" (the host's network namespace) or "container:NAME"
// (the network namespace of the running container NAME: same addresses,
// ports and loopback). A network name works too, as WithNetwork. Default:
// "bridge".
func WithNetworkMode(mode string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.networkMode = mode })
}

// WithPublish publishes container ports on the host (docker run -p), each
// as [hostIP:][hostPort:]containerPort[/tcp|/udp]; a missing or zero host
// port takes a free one, which Container.Ports reports. The port is
// reachable at the host's addresses and at 127.0.0.1 (or only at hostIP),
// also from other containers through the host. A host port in use fails
// Run with ErrInUse. Ports are published through the container's first
// network, which must not be internal (ErrInvalid). Default: nothing is
// published.
func WithPublish(ports ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.publish = append(c.publish, ports...) })
}

// WithPublishAll publishes every port the image EXPOSEs on a free host
// port (docker run -P); one WithPublish also names is published as that
// says only. Default: off.
func WithPublishAll() RunOption {
	return runOptionFunc(func(c *runConfig) { c.publishAll = true })
}

// WithExtraHosts adds "name:ip" lines to the container's /etc/hosts
// (docker run --add-host). The ip "host-gateway" is the host's address on
// the container's first network, 127.0.0.1 in the host's network mode
// ("host.docker.internal:host-gateway" reaches the host's services).
// Default: none.
func WithExtraHosts(hosts ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.extraHosts = append(c.extraHosts, hosts...) })
}

// WithDNS sets the name servers for names that are not containers (docker
// run --dns): on a bridge network the container's own name server forwards
// to them; with "none" or "host" they are written to /etc/resolv.conf.
// Default: the host's resolver.
func WithDNS(servers ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.dns = append(c.dns, servers...) })
}

// WithDNSSearch sets the search domains of the container's
// /etc/resolv.conf (docker run --dns-search); "." alone means none.
// Default: the host's.
func WithDNSSearch(domains ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.dnsSearch = append(c.dnsSearch, domains...) })
}

// WithDNSOptions sets the options of the container's /etc/resolv.conf
// (docker run --dns-option), such as "ndots:2" or "timeout:1". Default:
// the host's. On a bridge network "ndots:0" is added unless an ndots
// option is given, as docker does for its embedded name server.
func WithDNSOptions(options ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.dnsOptions = append(c.dnsOptions, options...) })
}

// WithDomainname sets the container's NIS domain name (docker run
// --domainname), which its /etc/hosts also gives as its host's full name
// (hostname.domainname). It cannot be combined with WithUTSMode("host").
func WithDomainname(name string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.domainname = name })
}

// withBuildKitGroups is for Build's RUN: the user's supplementary groups
// as BuildKit gives them (initproc.Spec.BuildKitGroups).
func withBuildKitGroups() RunOption {
	return runOptionFunc(func(c *runConfig) { c.buildKitGroups = true })
}

// withoutImageVolumes is for Build's RUN: no anonymous volume for the
// image's VOLUMEs.
func withoutImageVolumes() RunOption {
	return runOptionFunc(func(c *runConfig) { c.noImageVolumes = true })
}
