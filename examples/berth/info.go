package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// infoData is what docker info shows, under docker's field names so that
// --format templates written for docker (.ServerVersion, .CgroupVersion,
// .Containers) read the same. berth has no server: the "server" is the
// root the command opened.
type infoData struct {
	Containers        int
	ContainersRunning int
	ContainersPaused  int
	ContainersStopped int
	Images            int
	Driver            string
	DriverStatus      [][2]string
	LoggingDriver     string
	CgroupDriver      string
	CgroupVersion     string
	KernelVersion     string
	OperatingSystem   string
	OSVersion         string
	OSType            string
	Architecture      string
	NCPU              int
	MemTotal          int64
	DockerRootDir     string
	Name              string
	ServerVersion     string
	SecurityOptions   []string
	// Fields scripts read from docker's info, with berth's answers: no
	// ID, no swarm, no debug mode, no warnings.
	ID       string
	Debug    bool
	Swarm    struct{ LocalNodeState string }
	Warnings []string
}

// infoCommand is docker info (also system info).
func infoCommand(fs *flagSet) runFunc {
	var format string
	fs.String(&format, "f", "format", "string", "", "Format the output using the given Go template")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		info, err := gatherInfo(ctx, rt)
		if err != nil {
			return err
		}
		if format != "" {
			tmpl, err := parseTemplate(format + "\n")
			if err != nil {
				return &statusError{code: exitTemplate, msg: "template parsing error: " + err.Error()} // docker info's words
			}
			return tmpl.Execute(c.stdout, info)
		}
		printInfo(c.stdout, info)
		return nil
	}
}

func gatherInfo(ctx context.Context, rt *berth.Runtime) (*infoData, error) {
	ctrs, err := rt.Containers(ctx, berth.WithAll())
	if err != nil {
		return nil, err
	}
	images, err := rt.Images(ctx)
	if err != nil {
		return nil, err
	}
	v, _, _ := buildVersion()
	info := &infoData{
		Containers:    len(ctrs),
		Images:        len(images),
		Driver:        "overlayfs",
		LoggingDriver: "json-file",
		CgroupDriver:  "cgroupfs",
		CgroupVersion: cgroupVersion(),
		OSType:        runtime.GOOS,
		NCPU:          runtime.NumCPU(),
		DockerRootDir: rt.Root(),
		ServerVersion: v,
		// berth's defaults for every container, as docker reports its
		// daemon's.
		SecurityOptions: []string{"name=seccomp,profile=default", "name=no-new-privileges"},
	}
	for _, ci := range ctrs {
		switch {
		case ci.State.Status == "paused":
			info.ContainersPaused++
		case ci.State.Running:
			info.ContainersRunning++
		default:
			info.ContainersStopped++
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(rt.Root(), &st); err == nil {
		info.DriverStatus = [][2]string{{"Backing Filesystem", fsName(st.Type)}}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		info.KernelVersion, info.Architecture = unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Machine[:])
		info.Name = unix.ByteSliceToString(uts.Nodename[:])
	}
	info.MemTotal = int64(hostMemory())
	info.Swarm.LocalNodeState = "inactive"
	info.OperatingSystem, info.OSVersion = osRelease()
	return info, nil
}

// cgroupVersion is "2" where /sys/fs/cgroup is the unified hierarchy,
// else "1" (legacy or hybrid), as docker reports it.
func cgroupVersion() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "2"
	}
	return "1"
}

// fsName names a filesystem magic as docker's Backing Filesystem does.
func fsName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "extfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	}
	return fmt.Sprintf("<unknown (0x%x)>", magic)
}

// osRelease reads PRETTY_NAME and VERSION_ID from /etc/os-release.
func osRelease() (name, version string) {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return "<unknown>", ""
	}
	defer f.Close()
	name = "<unknown>"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "PRETTY_NAME":
			name = v
		case "VERSION_ID":
			version = v
		}
	}
	return name, version
}

// printInfo prints info as docker info prints its server's part.
func printInfo(w io.Writer, info *infoData) {
	fmt.Fprintf(w, "Runtime:\n Containers: %d\n  Running: %d\n  Paused: %d\n  Stopped: %d\n Images: %d\n",
		info.Containers, info.ContainersRunning, info.ContainersPaused, info.ContainersStopped, info.Images)
	fmt.Fprintf(w, " Server Version: %s\n Storage Driver: %s\n", info.ServerVersion, info.Driver)
	for _, kv := range info.DriverStatus {
		fmt.Fprintf(w, "  %s: %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(w, " Logging Driver: %s\n Cgroup Driver: %s\n Cgroup Version: %s\n", info.LoggingDriver, info.CgroupDriver, info.CgroupVersion)
	fmt.Fprintf(w, " Security Options:\n")
	for _, o := range info.SecurityOptions {
		for i, field := range strings.Split(o, ",") {
			k, v, _ := strings.Cut(field, "=")
			if i == 0 {
				fmt.Fprintf(w, "  %s\n", v)
				continue
			}
			fmt.Fprintf(w, "   %s: %s\n", title(k), v)
		}
	}
	fmt.Fprintf(w, " Kernel Version: %s\n Operating System: %s\n OSType: %s\n Architecture: %s\n CPUs: %d\n Total Memory: %s\n Name: %s\n Berth Root Dir: %s\n",
		info.KernelVersion, info.OperatingSystem, info.OSType, info.Architecture, info.NCPU, binarySize(uint64(info.MemTotal)), info.Name, info.DockerRootDir)
}
