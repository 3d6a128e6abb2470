package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/berth-dev/berth"
)

// buildCommand is docker build: BuildKit's plain progress on stderr (or
// nothing with -q) and the image ID.
func buildCommand(fs *flagSet) runFunc {
	var (
		tags, buildArgs []string
		file, target    string
		noCache, quiet  bool
	)
	fs.Strings(&tags, "t", "tag", `Name and optionally a tag in the "name:tag" format`)
	fs.String(&file, "f", "file", "string", "", `Name of the Dockerfile (Default is "PATH/Dockerfile")`)
	fs.Strings(&buildArgs, "", "build-arg", "Set build-time variables")
	fs.String(&target, "", "target", "string", "", "Set the target build stage to build")
	fs.Bool(&noCache, "", "no-cache", "Do not use cache when building the image")
	fs.Bool(&quiet, "q", "quiet", "Suppress the build output and print image ID on success")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		opts := []berth.BuildOption{berth.WithBuildTags(tags...)}
		if file != "" {
			opts = append(opts, berth.WithDockerfile(file))
		}
		if len(buildArgs) > 0 {
			m := map[string]string{}
			for _, kv := range buildArgs {
				k, v, _ := strings.Cut(kv, "=")
				m[k] = v
			}
			opts = append(opts, berth.WithBuildArgs(m))
		}
		if target != "" {
			opts = append(opts, berth.WithTarget(target))
		}
		if noCache {
			opts = append(opts, berth.WithNoCache())
		}
		last := 0
		if !quiet {
			opts = append(opts, berth.WithBuildProgress(func(ev berth.BuildEvent) {
				last = ev.Step
				switch {
				case ev.Output != "":
					fmt.Fprintf(c.stderr, "#%d %s\n", ev.Step, ev.Output)
				case ev.Cached:
					fmt.Fprintf(c.stderr, "#%d [%s] %s\n#%d CACHED\n", ev.Step, ev.Stage, ev.Instruction, ev.Step)
				default:
					fmt.Fprintf(c.stderr, "#%d [%s] %s\n", ev.Step, ev.Stage, ev.Instruction)
				}
			}))
		}
		img, err := rt.Build(ctx, args[0], opts...)
		if err != nil {
			return err
		}
		if quiet {
			fmt.Fprintln(c.stdout, img.ID)
			return nil
		}
		fmt.Fprintf(c.stderr, "#%d writing image %s done\n", last+1, img.ID)
		for _, t := range tags {
			fmt.Fprintf(c.stderr, "naming to %s done\n", t)
		}
		return nil
	}
}
