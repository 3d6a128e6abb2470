package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth"
)

// volumeCommands are docker volume's subcommands.
func volumeCommands() []*command {
	return []*command{
		{name: "create", usage: "[OPTIONS] [VOLUME]", short: "Create a volume", args: atMost(1), setup: volumeCreateCommand},
		{name: "inspect", usage: "[OPTIONS] VOLUME [VOLUME...]", short: "Display detailed information on one or more volumes", args: atLeast(1), setup: volumeInspectCommand},
		{name: "ls", usage: "[OPTIONS]", short: "List volumes", args: exactly(0), setup: volumeLsCommand},
		{name: "prune", usage: "[OPTIONS]", short: "Remove unused local volumes", args: exactly(0), setup: volumePruneCommand},
		{name: "rm", usage: "[OPTIONS] VOLUME [VOLUME...]", short: "Remove one or more volumes", args: atLeast(1), setup: volumeRmCommand},
	}
}

func volumeCreateCommand(fs *flagSet) runFunc {
	var labels []string
	var driver string
	fs.Strings(&labels, "", "label", "Set metadata for a volume")
	fs.String(&driver, "d", "driver", "string", "local", "Specify volume driver name")
	return func(ctx context.Context, c *cli, args []string) error {
		if driver != "local" {
			return fmt.Errorf("volume driver %q is not supported: berth has the local driver only", driver)
		}
		var opts []berth.VolumeOption
		if len(labels) > 0 {
			m := map[string]string{}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				m[k] = v
			}
			opts = append(opts, berth.WithVolumeLabels(m))
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		name := ""
		if len(args) == 1 {
			name = args[0]
		}
		v, err := rt.CreateVolume(ctx, name, opts...)
		if errors.Is(err, berth.ErrExists) {
			// docker volume create is idempotent for the local driver.
			v, err = rt.Volume(ctx, name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, v.Name)
		return nil
	}
}

// volumeRow is one line of docker volume ls, and the object its --format
// template sees.
type volumeRow struct {
	Name, Driver, Scope, Mountpoint, Labels string
	Links, Size                             string // "N/A": docker fills them in system df -v only
	labels                                  map[string]string
}

// Label is docker's {{.Label "name"}}: the value of one label.
func (r volumeRow) Label(name string) string { return r.labels[name] }

var volumeHeader = volumeRow{
	Name: "VOLUME NAME", Driver: "DRIVER", Scope: "SCOPE", Mountpoint: "MOUNTPOINT",
	Labels: "LABELS", Links: "LINKS", Size: "SIZE",
}

const defaultVolumeFormat = "table {{.Driver}}\t{{.Name}}"

func newVolumeRow(v *berth.Volume) volumeRow {
	vi := newVolumeInspect(v) // the labels volume inspect shows
	return volumeRow{
		Name: v.Name, Driver: v.Driver, Scope: vi.Scope, Mountpoint: v.Mountpoint,
		Labels: labelColumn(vi.Labels), Links: "N/A", Size: "N/A", labels: vi.Labels,
	}
}

func volumeLsCommand(fs *flagSet) runFunc {
	var quiet bool
	var format string
	var filterArgs []string
	fs.Strings(&filterArgs, "f", "filter", "Provide filter values (e.g. 'dangling=true')")
	fs.String(&format, "", "format", "string", "", "Pretty-print volumes using a Go template")
	fs.Bool(&quiet, "q", "quiet", "Only display volume names")
	name := fs.Name()
	return func(ctx context.Context, c *cli, args []string) error {
		format = tableFormat(format)
		filters, err := parseFilters(name, filterArgs, "dangling", "driver", "label", "name")
		if err != nil {
			return err
		}
		dangling, err := danglingFilter(filters["dangling"], []string{"true", "1"}, []string{"false", "0"})
		if err != nil {
			return err
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		vols, err := rt.Volumes(ctx)
		if err != nil {
			return err
		}
		var used map[string]bool
		if dangling != "" {
			if used, err = usedVolumes(ctx, rt); err != nil {
				return err
			}
		}
		var rows []volumeRow
		for _, v := range vols {
			switch {
			case len(filters["name"]) > 0 && !matchPattern(filters["name"], v.Name),
				len(filters["driver"]) > 0 && !slices.Contains(filters["driver"], v.Driver),
				dangling != "" && used[v.Name] == (dangling == "true"):
				continue
			}
			r := newVolumeRow(v)
			if !matchLabels(filters["label"], r.labels) {
				continue
			}
			rows = append(rows, r)
		}
		if format == "" && quiet { // a --format wins over -q, as in docker
			for _, r := range rows {
				fmt.Fprintln(c.stdout, r.Name)
			}
			return nil
		}
		return printRows(c.stdout, cmp.Or(format, defaultVolumeFormat), volumeHeader, rows)
	}
}

// usedVolumes are the volumes some container of the root mounts, running
// or not: the volumes that are not dangling (docker's filter, and what
// volume rm and prune leave alone).
func usedVolumes(ctx context.Context, rt *berth.Runtime) (map[string]bool, error) {
	infos, err := rt.Containers(ctx, berth.WithAll())
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, info := range infos {
		for _, m := range info.Mounts {
			if m.Type == berth.MountVolume {
				used[m.Source] = true
			}
		}
	}
	return used, nil
}

// volumeInspect is the object docker volume inspect prints.
type volumeInspect struct {
	CreatedAt  string
	Driver     string
	Labels     map[string]string
	Mountpoint string
	Name       string
	Options    map[string]string
	Scope      string
}

func newVolumeInspect(v *berth.Volume) volumeInspect {
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	if v.Anonymous {
		labels["com.docker.volume.anonymous"] = ""
	}
	return volumeInspect{
		CreatedAt: v.CreatedAt.Format(time.RFC3339), Driver: v.Driver, Labels: labels,
		Mountpoint: v.Mountpoint, Name: v.Name, Options: map[string]string{}, Scope: "local",
	}
}

func volumeInspectCommand(fs *flagSet) runFunc {
	var format string
	fs.String(&format, "f", "format", "string", "", "Format the output using the given Go template")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		var found []volumeInspect
		var errs []string
		for _, name := range args {
			v, err := rt.Volume(ctx, name)
			switch {
			case errors.Is(err, berth.ErrNotFound):
				errs = append(errs, "Error: No such volume: "+name)
			case err != nil:
				errs = append(errs, "Error: "+err.Error())
			default:
				found = append(found, newVolumeInspect(v))
			}
		}
		if err := printInspect(c.stdout, format, found); err != nil {
			return err
		}
		return failures(errs)
	}
}

func volumeRmCommand(fs *flagSet) runFunc {
	var force bool
	fs.Bool(&force, "f", "force", "Force the removal of one or more volumes, also while stopped containers use them (never a running container's)")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		var opts []berth.RemoveOption
		if force {
			opts = append(opts, berth.WithForce())
		}
		var errs []string
		for _, name := range args {
			v, err := rt.Volume(ctx, name)
			if err == nil {
				err = v.Remove(ctx, opts...)
			}
			switch {
			case errors.Is(err, berth.ErrNotFound) && force:
			case errors.Is(err, berth.ErrNotFound):
				errs = append(errs, "Error: No such volume: "+name)
			case err != nil:
				errs = append(errs, "Error response from daemon: "+err.Error())
			default:
				fmt.Fprintln(c.stdout, name)
			}
		}
		return failures(errs)
	}
}

func volumePruneCommand(fs *flagSet) runFunc {
	var force, all bool
	fs.Bool(&force, "f", "force", "Do not prompt for confirmation")
	fs.Bool(&all, "a", "all", "Remove all unused volumes, not just anonymous ones")
	return func(ctx context.Context, c *cli, args []string) error {
		warning := "anonymous local volumes not used by at least one container."
		if all {
			warning = "all local volumes not used by at least one container."
		}
		return runPrune(ctx, c, force, warning, pruneVolumes(all))
	}
}

// parseVolumeFlag reads docker run -v: SRC:DST[:OPTS] or DST alone (an
// anonymous volume). A SRC starting with "/" or "." is a bind (a relative
// one from the working directory, as docker 23 takes it), whose missing
// host directory is created as docker does; otherwise SRC names a volume.
// OPTS are comma-separated: ro, rw, z, Z (accepted, no SELinux here),
// nocopy, a propagation mode, and cached, delegated and consistent
// (ignored, as docker ignores them on Linux).
func parseVolumeFlag(s string) (berth.Mount, error) {
	parts := strings.Split(s, ":")
	var m berth.Mount
	switch len(parts) {
	case 1:
		m = berth.Mount{Type: berth.MountVolume, Target: parts[0]}
	case 2, 3:
		m = berth.Mount{Type: berth.MountVolume, Source: parts[0], Target: parts[1]}
		if strings.HasPrefix(parts[0], "/") || strings.HasPrefix(parts[0], ".") {
			m.Type = berth.MountBind
		}
	default:
		return m, fmt.Errorf("invalid volume specification: '%s'", s)
	}
	if !path.IsAbs(m.Target) {
		return m, fmt.Errorf("invalid volume specification: '%s': invalid mount config: the container path must be absolute", s)
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				m.ReadOnly = true
			case "rw", "z", "Z", "cached", "delegated", "consistent": // docker ignores the last three on Linux
			case "nocopy":
				m.NoCopy = true
			case "private", "rprivate", "shared", "rshared", "slave", "rslave":
				m.Propagation = o
			default:
				return m, fmt.Errorf("invalid volume specification: '%s': invalid mode: %s", s, o)
			}
		}
	}
	if m.Type == berth.MountBind {
		if strings.HasPrefix(m.Source, ".") {
			abs, err := filepath.Abs(m.Source)
			if err != nil {
				return m, err
			}
			m.Source = abs
		}
		if !path.IsAbs(m.Source) {
			return m, fmt.Errorf("invalid volume specification: '%s': bind source must be an absolute path", s)
		}
		// A missing source is made a directory, as docker makes it; an
		// existing file or socket is bound as it is.
		if _, err := os.Stat(m.Source); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(m.Source, 0o755); err != nil {
				return m, fmt.Errorf("creating bind source: %w", err)
			}
		}
	} else if m.Propagation != "" {
		return m, fmt.Errorf("invalid volume specification: '%s': propagation applies to bind mounts", s)
	}
	return m, nil
}

// parseMountFlag reads docker run --mount: comma-separated key=value
// fields type, source|src, target|destination|dst, readonly|ro,
// bind-propagation, volume-nocopy, tmpfs-size, tmpfs-mode.
func parseMountFlag(s string) (berth.Mount, error) {
	m := berth.Mount{Type: berth.MountVolume}
	bad := func(msg string) (berth.Mount, error) {
		return m, fmt.Errorf("invalid argument %q for \"--mount\" flag: %s", s, msg)
	}
	for _, field := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(field, "=")
		boolValue := func() (bool, error) {
			if !hasValue {
				return true, nil
			}
			return strconv.ParseBool(v)
		}
		switch strings.ToLower(k) {
		case "type":
			m.Type = berth.MountType(v)
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Target = v
		case "readonly", "ro":
			b, err := boolValue()
			if err != nil {
				return bad("invalid value for readonly: " + v)
			}
			m.ReadOnly = b
		case "bind-propagation":
			m.Propagation = v
		case "volume-nocopy":
			b, err := boolValue()
			if err != nil {
				return bad("invalid value for volume-nocopy: " + v)
			}
			m.NoCopy = b
		case "tmpfs-size":
			n, err := parseMemory(v)
			if err != nil {
				return bad("invalid value for tmpfs-size: " + v)
			}
			m.TmpfsSize = n
		case "tmpfs-mode":
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return bad("invalid value for tmpfs-mode: " + v)
			}
			m.TmpfsMode = fileMode(uint32(n))
		case "consistency", "bind-recursive":
			// macOS-only, and berth's read-only binds are always recursive
		default:
			return bad("unexpected key '" + k + "'")
		}
	}
	if m.Target == "" {
		return bad("target is required")
	}
	return m, nil
}

// parseTmpfsFlag reads docker run --tmpfs: PATH[:OPTS], OPTS holding
// size=N (with a unit suffix), mode=OCTAL and the usual rw/ro words.
func parseTmpfsFlag(s string) (berth.Mount, error) {
	target, opts, _ := strings.Cut(s, ":")
	m := berth.Mount{Type: berth.MountTmpfs, Target: target}
	if !path.IsAbs(target) {
		return m, fmt.Errorf("invalid argument %q for \"--tmpfs\" flag: the path must be absolute", s)
	}
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "":
		case "size":
			n, err := parseMemory(v)
			if err != nil {
				return m, fmt.Errorf("invalid argument %q for \"--tmpfs\" flag: size %q: %v", s, v, err)
			}
			m.TmpfsSize = n
		case "mode":
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return m, fmt.Errorf("invalid argument %q for \"--tmpfs\" flag: mode %q", s, v)
			}
			m.TmpfsMode = fileMode(uint32(n))
		case "ro":
			m.ReadOnly = true
		case "rw":
			m.ReadOnly = false // the last word wins, as in docker
		default:
			// exec, uid=1000, ...: berth.Mount.TmpfsOptions, which Run checks.
			m.TmpfsOptions = append(m.TmpfsOptions, o)
		}
	}
	return m, nil
}

// fileMode converts kernel mode bits to an os.FileMode.
func fileMode(u uint32) os.FileMode {
	m := os.FileMode(u & 0o777)
	if u&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if u&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if u&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
