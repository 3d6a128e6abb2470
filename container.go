package berth

import (
	"context"
	"io"
	"syscall"
	"time"
)

// Process is the program a container runs, like exec.Cmd. Zero values
// take the image's config: no Args runs the image's CMD, no User runs as
// the image's USER, and so on.
type Process struct {
	// Args replaces the image's CMD (docker run IMAGE ARGS...). The image's
	// ENTRYPOINT, if any, stays in front of it unless WithEntrypoint
	// replaces it.
	Args []string
	// Env adds to the image's environment; a KEY=VALUE here replaces the
	// image's KEY (docker run -e).
	Env []string
	// Dir is the working directory (docker run -w), created if missing.
	// Default: the image's WORKDIR, else "/".
	Dir string
	// User is "name", "uid", "uid:gid", "name:group" or "uid:group",
	// resolved from the container's own /etc/passwd and /etc/group (docker
	// run -u). Default: the image's USER, else root.
	User string
	// TTY gives the process a pseudo-terminal as its stdin, stdout and
	// stderr (docker run -t). Stdout then receives the terminal's output
	// and Stderr is unused.
	TTY bool
	// Stdin, if not nil, is copied to the process's standard input (docker
	// run -i) until it ends. Default: /dev/null. As with os/exec, a Read
	// that is in progress when the process exits keeps its goroutine until
	// it returns, and what it returns then is dropped: feed each process a
	// reader of its own that ends (close an io.Pipe's writer), not one
	// long-lived stream shared by many.
	Stdin io.Reader
	// Stdout and Stderr, if not nil, receive the process's output as it
	// comes. A Run's output is also kept in the container's log
	// (Container.Logs) either way; an Exec's is not, as docker exec's.
	Stdout, Stderr io.Writer
}

// Container is a container in a runtime's root. Its methods are safe for
// concurrent use. A Container value stays valid after the container exits;
// it is invalid after Remove.
type Container struct {
	// ID is the container's 64-hex-digit identifier.
	ID string
	// Name is the container's unique name (docker run --name, or one berth
	// made up).
	Name string

	rt  *Runtime
	run *running // set when this Runtime owns the container's process
}

// ContainerState says where a container is in its life, as docker inspect's
// State does.
type ContainerState struct {
	// Status is "created", "running", "paused", "restarting", "exited" or
	// "dead".
	Status string
	// Running reports Status "running" or "paused".
	Running bool
	// Restarting reports Status "restarting": the container exited, and
	// its restart policy starts it again after a back-off (see
	// WithRestartPolicy). ExitCode and FinishedAt are the last run's.
	Restarting bool
	// Pid is the host pid of the container's first process while it runs.
	Pid int
	// ExitCode is the process's exit status once it exited (128+signal
	// when a signal killed it; 126 or 127 when it could not be run).
	ExitCode int
	// OOMKilled reports that the kernel's OOM killer killed a process of
	// the container, its first process or another (docker's OOMKilled);
	// an exit status of 0 is still a success (Wait returns nil).
	OOMKilled bool
	// Error says why the container failed to start, if it did.
	Error string
	// StartedAt and FinishedAt are zero until the container starts and
	// exits.
	StartedAt, FinishedAt time.Time
	// Networks are the container's places on its networks while it runs
	// (address, gateway, MAC, aliases).
	Networks []NetworkEndpoint `json:",omitempty"`
	// Ports are the published ports with the host ports chosen, while the
	// container runs (docker port).
	Ports []PortBinding `json:",omitempty"`
	// Health is what the container's health check found since it last
	// started (docker's State.Health), nil for a container without one.
	// The process that started the container (this program, or for a
	// detached one its monitor) runs the check while it runs, as docker's
	// daemon does: an Interval after the start, and after each check ends;
	// within StartPeriod, what is left of it when that is shorter, else,
	// while starting, every 5 s, or every Interval if shorter (docker:
	// every 5 s, its default start interval). A pause, a stop or an exit makes it unhealthy, as docker
	// does; the next start makes it starting again.
	Health *HealthState `json:",omitempty"`
}

// ContainerStats is a snapshot of a running container's resource use
// (docker stats --no-stream).
type ContainerStats struct {
	// CPUNanos is the CPU time used so far, in nanoseconds.
	CPUNanos uint64
	// MemoryUsage and MemoryLimit are in bytes; MemoryLimit is 0 when
	// unlimited. MemoryUsage leaves out the page cache the kernel drops
	// first (inactive file pages), as docker stats does.
	MemoryUsage, MemoryLimit uint64
	// Pids is the number of processes and threads in the container.
	Pids uint64
	// NetRx and NetTx are the bytes received and sent on the container's
	// network interfaces, loopback left out (docker stats' NET I/O); zero
	// with the host's network, as in docker.
	NetRx, NetTx uint64
}

// Signal is a process signal, as the container's processes receive it.
type Signal = syscall.Signal

// DefaultStopTimeout is how long Stop waits after the stop signal before
// it sends SIGKILL, as docker does.
const DefaultStopTimeout = 10 * time.Second

// containerConfig is what a container was created with; it is stored in the
// container's state file so any program on the root can inspect, restart
// or remove it.
type containerConfig struct {
	Image       string            `json:"image"`   // the reference it was run with
	ImageID     string            `json:"imageID"` // config digest
	ImageDigest string            `json:"imageDigest"`
	ChainIDs    []string          `json:"chainIDs"` // bottom first
	Entrypoint  []string          `json:"entrypoint,omitempty"`
	Cmd         []string          `json:"cmd,omitempty"`
	Args        []string          `json:"args"` // what runs: entrypoint + cmd
	Env         []string          `json:"env"`
	Dir         string            `json:"dir"`
	User        string            `json:"user,omitempty"`
	TTY         bool              `json:"tty,omitempty"`
	OpenStdin   bool              `json:"openStdin,omitempty"`
	KeepStdin   bool              `json:"keepStdin,omitempty"` // WithOpenStdin: a stdin FIFO at each start
	StdinOnce   bool              `json:"stdinOnce,omitempty"` // WithStdinOnce: closed after the first attachment
	Hostname    string            `json:"hostname"`
	Labels      map[string]string `json:"labels,omitempty"`
	StopSignal  string            `json:"stopSignal,omitempty"`
	StopTimeout time.Duration     `json:"stopTimeout,omitempty"`
	AutoRemove  bool              `json:"autoRemove,omitempty"`
	Detached    bool              `json:"detached,omitempty"`
	ReadOnly    bool              `json:"readOnly,omitempty"`
	CapAdd      []string          `json:"capAdd,omitempty"`
	CapDrop     []string          `json:"capDrop,omitempty"`
	NoNewPrivs  bool              `json:"noNewPrivileges"`
	Privileged  bool              `json:"privileged,omitempty"`
	Sysctls     map[string]string `json:"sysctls,omitempty"`
	Init        bool              `json:"init,omitempty"`
	GroupAdd    []string          `json:"groupAdd,omitempty"`
	// Devices and DeviceCgroupRules are WithDevices' and
	// WithDeviceCgroupRules', resolved on the host at each start.
	Devices           []DeviceMapping `json:"devices,omitempty"`
	DeviceCgroupRules []string        `json:"deviceCgroupRules,omitempty"`
	// PidMode ("host" or "container:ID"), IpcMode ("host", "none",
	// "shareable" or "container:ID") and UTSMode ("host") are the
	// namespaces it shares; "" for its own.
	PidMode string `json:"pidMode,omitempty"`
	IpcMode string `json:"ipcMode,omitempty"`
	UTSMode string `json:"utsMode,omitempty"`
	// OomScoreAdj is WithOomScoreAdj's.
	OomScoreAdj int `json:"oomScoreAdj,omitempty"`
	// NoLog is WithoutLog; LogMaxSize and LogMaxFiles are
	// WithLogRotation's.
	NoLog       bool  `json:"noLog,omitempty"`
	LogMaxSize  int64 `json:"logMaxSize,omitempty"`
	LogMaxFiles int   `json:"logMaxFiles,omitempty"`
	// ExposedPorts are the image's EXPOSE and WithExpose's ports, as
	// "80/tcp", sorted; nil in records made before they were kept.
	ExposedPorts []string `json:"exposedPorts,omitempty"`
	// BuildKitGroups: a build step's container (withBuildKitGroups).
	BuildKitGroups bool `json:"buildKitGroups,omitempty"`
	Seccomp        bool `json:"seccomp"`
	// SeccompProfile is WithSeccompProfile's, in docker's JSON form; ""
	// for docker's default.
	SeccompProfile string        `json:"seccompProfile,omitempty"`
	Resources      Resources     `json:"resources"`
	Rlimits        []Rlimit      `json:"rlimits,omitempty"`
	Mounts         []mountRecord `json:"mounts,omitempty"`
	// NetworkMode is "bridge" (the container joins Networks), "none",
	// "host" or "container:<id>".
	NetworkMode string              `json:"networkMode,omitempty"`
	Networks    []networkAttachment `json:"networks,omitempty"`
	Publish     []PortBinding       `json:"publish,omitempty"`
	ExtraHosts  []string            `json:"extraHosts,omitempty"`
	DNS         []string            `json:"dns,omitempty"`
	// DNSSearch and DNSOptions are WithDNSSearch's and WithDNSOptions'
	// (["."] for no search domains); Domainname is WithDomainname's.
	DNSSearch  []string `json:"dnsSearch,omitempty"`
	DNSOptions []string `json:"dnsOptions,omitempty"`
	Domainname string   `json:"domainname,omitempty"`
	// Healthcheck is the image's HEALTHCHECK, or WithHealthcheck's; Shell
	// the image's SHELL, which runs a CMD-SHELL check.
	Healthcheck *HealthConfig `json:"healthcheck,omitempty"`
	Shell       []string      `json:"shell,omitempty"`
	Restart     RestartPolicy `json:"restart,omitzero"`
	ShmSize     int64         `json:"shmSize,omitempty"`
}

// Resources limits what a container may use (docker run --memory, --cpus,
// --cpu-shares, --pids-limit, --cpuset-cpus). Zero values mean no limit.
type Resources struct {
	// Memory is the memory limit in bytes, at least 6 MiB (docker's
	// minimum); 0 means none.
	Memory int64 `json:"memory,omitempty"`
	// MemorySwap is memory plus swap in bytes; 0 means twice Memory when
	// Memory is set, -1 unlimited (docker's rule).
	MemorySwap int64 `json:"memorySwap,omitempty"`
	// NanoCPUs is the CPU quota in billionths of a CPU (--cpus 1.5 is
	// 1_500_000_000).
	NanoCPUs int64 `json:"nanoCPUs,omitempty"`
	// CPUPeriod and CPUQuota are the CFS period and quota in microseconds
	// (docker run --cpu-period, --cpu-quota): a period of 1000 to 1000000
	// (0: 100000), a quota of at least 1000 (0 or -1: none). The other
	// way to say NanoCPUs, which they exclude.
	CPUPeriod int64 `json:"cpuPeriod,omitempty"`
	CPUQuota  int64 `json:"cpuQuota,omitempty"`
	// MemoryReservation is the soft memory limit in bytes (docker run
	// --memory-reservation): under memory pressure the kernel reclaims
	// the container down to it first. At least 6 MiB and at most Memory;
	// 0 means none.
	MemoryReservation int64 `json:"memoryReservation,omitempty"`
	// CPUShares is the relative CPU weight (cgroup v1 shares; converted to
	// a weight on cgroup v2).
	CPUShares uint64 `json:"cpuShares,omitempty"`
	// PidsLimit caps the number of processes and threads (at most the
	// kernel's 4194304); 0 and -1 mean none.
	PidsLimit int64 `json:"pidsLimit,omitempty"`
	// CpusetCpus are the CPUs the container may run on, a list such as
	// "0-2,4" (docker run --cpuset-cpus); empty means no restriction.
	// Hosts with a cgroup v1 cpuset hierarchy only (v1 and hybrid); on
	// cgroup v2 it fails with an error wrapping errors.ErrUnsupported.
	CpusetCpus string `json:"cpusetCpus,omitempty"`
	// CpusetMems are the memory nodes (NUMA) the container may allocate
	// on (docker run --cpuset-mems), a list as CpusetCpus; the same hosts
	// only.
	CpusetMems string `json:"cpusetMems,omitempty"`
}

// Rlimit is a resource limit of the container's processes (docker run
// --ulimit). Name is the lower-case docker name: "nofile", "nproc",
// "core", "memlock", "stack", ….
type Rlimit struct {
	Name string `json:"name"`
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// Wait waits until the container's process exits and returns nil for exit
// status 0 or an *ExitError. It may be called at any time, from any
// goroutine, any number of times, also on a container started by another
// program; ctx bounds the wait only. It waits for the container's latest
// run: on a container started again (Start) since the handle was made, for
// that start's; on one Create made that was never started, it returns nil
// at once, as docker wait does; on one being started, for that start's;
// on one waiting out its restart policy's back-off, for its next run's
// (docker counts it running).
func (c *Container) Wait(ctx context.Context) error {
	return c.rt.waitContainer(ctx, c, time.Time{})
}
