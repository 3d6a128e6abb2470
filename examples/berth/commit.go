package main

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth"
)

// commitCommand is docker commit: it prints the new image's ID.
func commitCommand(fs *flagSet) runFunc {
	var (
		changes         []string
		message, author string
		pause           = true
	)
	fs.String(&author, "a", "author", "string", "", `Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	fs.Strings(&changes, "c", "change", "Apply Dockerfile instruction to the created image")
	fs.String(&message, "m", "message", "string", "", "Commit message")
	fs.BoolVar(&pause, "pause", true, "Pause container during commit")
	fs.BoolVar(&pause, "p", true, "Pause container during commit")
	fs.docs = append(fs.docs, flagDoc{"p", "pause", "", "Pause container during commit (default true)"})
	return func(ctx context.Context, c *cli, args []string) error {
		ctr, err := c.container(ctx, args[0])
		if err != nil {
			return err
		}
		opts := []berth.CommitOption{berth.WithCommitPause(pause)}
		if len(changes) > 0 {
			opts = append(opts, berth.WithChanges(changes...))
		}
		if message != "" {
			opts = append(opts, berth.WithCommitMessage(message))
		}
		if author != "" {
			opts = append(opts, berth.WithCommitAuthor(author))
		}
		if len(args) == 2 {
			opts = append(opts, berth.WithCommitTag(args[1]))
		}
		img, err := ctr.Commit(ctx, opts...)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, img.ID)
		return nil
	}
}

// pauseCommand is docker pause.
func pauseCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			if err := ctr.Pause(ctx); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, name)
			return nil
		})
	}
}

// unpauseCommand is docker unpause.
func unpauseCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		return eachContainer(ctx, c, args, func(name string, ctr *berth.Container) error {
			if err := ctr.Unpause(ctx); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, name)
			return nil
		})
	}
}
