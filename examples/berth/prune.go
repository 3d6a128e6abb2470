package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth"
)

// The prune commands: container, image, network, builder and system
// prune, as docker's (volume prune is volume.go's, on the same helpers).

// confirmPrune asks docker's question after its warning (what will be
// removed, with its full stop) unless force, and reports whether to go on.
func confirmPrune(c *cli, force bool, warning string) bool {
	if force {
		return true
	}
	fmt.Fprintf(c.stdout, "WARNING! This will remove %s\nAre you sure you want to continue? [y/N] ", warning)
	var answer string
	fmt.Fscanln(c.stdin, &answer)
	a := strings.ToLower(answer)
	return a == "y" || a == "yes"
}

// printDeleted prints one of docker's "Deleted …:" sections, none when
// nothing was.
func printDeleted(c *cli, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(c.stdout, "Deleted %s:\n", title)
	for _, it := range items {
		fmt.Fprintln(c.stdout, it)
	}
	fmt.Fprintln(c.stdout)
}

// printReclaimed ends a prune's report as docker's does.
func printReclaimed(c *cli, n int64) {
	fmt.Fprintf(c.stdout, "Total reclaimed space: %s\n", decimalSize(n, 4))
}

// pruner is one part of a prune: it removes, prints its section and
// returns the bytes it freed.
type pruner func(ctx context.Context, c *cli, rt *berth.Runtime) (int64, error)

func pruneContainers(ctx context.Context, c *cli, rt *berth.Runtime) (int64, error) {
	removed, n, err := rt.PruneContainers(ctx)
	printDeleted(c, "Containers", removed)
	return n, err
}

func pruneNetworks(ctx context.Context, c *cli, rt *berth.Runtime) (int64, error) {
	removed, err := rt.PruneNetworks(ctx)
	printDeleted(c, "Networks", removed)
	return 0, err
}

func pruneVolumes(all bool) pruner {
	return func(ctx context.Context, c *cli, rt *berth.Runtime) (int64, error) {
		var opts []berth.VolumePruneOption
		if all {
			opts = append(opts, berth.WithPruneAllVolumes())
		}
		removed, n, err := rt.PruneVolumes(ctx, opts...)
		printDeleted(c, "Volumes", removed)
		return n, err
	}
}

func pruneImages(all bool) pruner {
	return func(ctx context.Context, c *cli, rt *berth.Runtime) (int64, error) {
		var opts []berth.ImagePruneOption
		if all {
			opts = append(opts, berth.WithPruneAllImages())
		}
		removed, n, err := rt.PruneImages(ctx, opts...)
		for i, id := range removed {
			removed[i] = "deleted: " + id
		}
		printDeleted(c, "Images", removed)
		return n, err
	}
}

func pruneBuildCache(ctx context.Context, c *cli, rt *berth.Runtime) (int64, error) {
	return rt.PruneBuildCache(ctx)
}

// runPrune confirms, runs the parts in order and prints the total.
func runPrune(ctx context.Context, c *cli, force bool, warning string, parts ...pruner) error {
	if !confirmPrune(c, force, warning) {
		return nil
	}
	rt, err := c.runtime()
	if err != nil {
		return err
	}
	var total int64
	for _, p := range parts {
		n, err := p(ctx, c, rt)
		total += n
		if err != nil {
			return err
		}
	}
	printReclaimed(c, total)
	return nil
}

func containerPruneCommand(fs *flagSet) runFunc {
	var force bool
	fs.Bool(&force, "f", "force", "Do not prompt for confirmation")
	return func(ctx context.Context, c *cli, args []string) error {
		return runPrune(ctx, c, force, "all stopped containers.", pruneContainers)
	}
}

func imagePruneCommand(fs *flagSet) runFunc {
	var force, all bool
	fs.Bool(&force, "f", "force", "Do not prompt for confirmation")
	fs.Bool(&all, "a", "all", "Remove all unused images, not just dangling ones")
	return func(ctx context.Context, c *cli, args []string) error {
		return runPrune(ctx, c, force, imagesWarning(all), pruneImages(all))
	}
}

func imagesWarning(all bool) string {
	if all {
		return "all images without at least one container associated to them."
	}
	return "all dangling images."
}

func networkPruneCommand(fs *flagSet) runFunc {
	var force bool
	fs.Bool(&force, "f", "force", "Do not prompt for confirmation")
	return func(ctx context.Context, c *cli, args []string) error {
		if !confirmPrune(c, force, "all custom networks not used by at least one container.") {
			return nil
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		_, err = pruneNetworks(ctx, c, rt) // docker prints no total here
		return err
	}
}

// builderPruneCommand is docker builder prune; berth's build cache has no
// dangling part, so it is always --all's.
func builderPruneCommand(fs *flagSet) runFunc {
	var force, all bool
	fs.Bool(&force, "f", "force", "Do not prompt for confirmation")
	fs.Bool(&all, "a", "all", "Remove all unused build cache (berth's is always all of it)")
	return func(ctx context.Context, c *cli, args []string) error {
		if !confirmPrune(c, force, "all build cache.") {
			return nil
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		n, err := rt.PruneBuildCache(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Total:\t%s\n", decimalSize(n, 4))
		return nil
	}
}

// systemPruneCommand is docker system prune: stopped containers, unused
// networks, with --volumes anonymous volumes no container uses, dangling
// images (every unused one with -a) and, with -a, the build cache (docker
// takes its dangling part without -a; berth's has none).
func systemPruneCommand(fs *flagSet) runFunc {
	var force, all, volumes bool
	fs.Bool(&force, "f", "force", "Do not prompt for confirmation")
	fs.Bool(&all, "a", "all", "Remove all unused images not just dangling ones, and the build cache")
	fs.Bool(&volumes, "", "volumes", "Prune anonymous volumes")
	return func(ctx context.Context, c *cli, args []string) error {
		warning := []string{"all stopped containers", "all networks not used by at least one container"}
		parts := []pruner{pruneContainers, pruneNetworks}
		if volumes {
			warning = append(warning, "all anonymous volumes not used by at least one container")
			parts = append(parts, pruneVolumes(false))
		}
		warning = append(warning, strings.TrimSuffix(imagesWarning(all), "."))
		parts = append(parts, pruneImages(all))
		if all {
			warning = append(warning, "all build cache")
			parts = append(parts, pruneBuildCache)
		}
		return runPrune(ctx, c, force, ":\n  - "+strings.Join(warning, "\n  - ")+"\n", parts...)
	}
}

// containerCommands are docker container's subcommands: prune, and the
// top-level commands under their management names.
func containerCommands() []*command {
	return managed(map[string]string{
		"commit": "", "cp": "", "create": "", "diff": "", "exec": "", "export": "", "inspect": "", "kill": "",
		"logs": "", "ls": "ps", "pause": "", "port": "", "rename": "", "restart": "", "rm": "", "run": "", "start": "", "stats": "",
		"stop": "", "top": "", "unpause": "", "update": "", "wait": "",
	}, &command{name: "prune", usage: "[OPTIONS]", short: "Remove all stopped containers", args: exactly(0), setup: containerPruneCommand})
}

// imageCommands are docker image's subcommands, as containerCommands.
func imageCommands() []*command {
	return managed(map[string]string{
		"build": "", "history": "", "import": "", "inspect": "", "load": "", "ls": "images", "pull": "", "push": "", "rm": "rmi",
		"save": "", "tag": "",
	}, &command{name: "prune", usage: "[OPTIONS]", short: "Remove unused images", args: exactly(0), setup: imagePruneCommand})
}

func builderCommands() []*command {
	return []*command{{name: "prune", usage: "[OPTIONS]", short: "Remove build cache", args: exactly(0), setup: builderPruneCommand}}
}

func systemCommands() []*command {
	return []*command{
		{name: "df", usage: "[OPTIONS]", short: "Show berth disk usage", args: exactly(0), setup: systemDfCommand},
		{name: "events", usage: "[OPTIONS]", short: "Get real time events from berth", args: exactly(0), setup: eventsCommand},
		{name: "info", usage: "[OPTIONS]", short: "Display system-wide information", args: exactly(0), setup: infoCommand},
		{name: "prune", usage: "[OPTIONS]", short: "Remove unused data", args: exactly(0), setup: systemPruneCommand},
	}
}

// dfRow is one line of docker system df.
type dfRow struct {
	Type, TotalCount, Active, Size, Reclaimable string
}

var dfHeader = dfRow{Type: "TYPE", TotalCount: "TOTAL", Active: "ACTIVE", Size: "SIZE", Reclaimable: "RECLAIMABLE"}

// systemDfCommand is docker system df (its summary; no -v).
func systemDfCommand(fs *flagSet) runFunc {
	var format string
	fs.String(&format, "", "format", "string", "", "Pretty-print images using a Go template")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		du, err := rt.DiskUsage(ctx)
		if err != nil {
			return err
		}
		row := func(typ string, total, active int, size, reclaimable int64) dfRow {
			r := dfRow{Type: typ, TotalCount: strconv.Itoa(total), Active: strconv.Itoa(active), Size: decimalSize(size, 4), Reclaimable: decimalSize(reclaimable, 4)}
			if size > 0 {
				r.Reclaimable += fmt.Sprintf(" (%d%%)", reclaimable*100/size)
			}
			return r
		}
		rows := []dfRow{
			row("Images", du.Images, du.ImagesActive, du.ImagesSize, du.ImagesReclaimable),
			row("Containers", du.Containers, du.ContainersRunning, du.ContainersSize, du.ContainersReclaimable),
			row("Local Volumes", du.Volumes, du.VolumesActive, du.VolumesSize, du.VolumesReclaimable),
			row("Build Cache", du.BuildCache, 0, du.BuildCacheSize, du.BuildCacheSize),
		}
		return printRows(c.stdout, cmp.Or(tableFormat(format), "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"), dfHeader, rows)
	}
}

// managed is the top-level commands named in names (a management name →
// the top-level one, "" for the same) under their management names, and
// the group's own, sorted by name.
func managed(names map[string]string, own ...*command) []*command {
	out := own
	for _, cmd := range commands() {
		for name, top := range names {
			if cmd.name == cmp.Or(top, name) {
				renamed := *cmd
				renamed.name = name
				out = append(out, &renamed)
			}
		}
	}
	slices.SortFunc(out, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return out
}
