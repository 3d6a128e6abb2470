package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth"
)

// saveCommand is docker save.
func saveCommand(fs *flagSet) runFunc {
	var output string
	fs.String(&output, "o", "output", "string", "", "Write to a file, instead of STDOUT")
	return func(ctx context.Context, c *cli, args []string) error {
		if output == "" && isTerminal(c.stdout) {
			return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		// Name the missing image before anything is written.
		for _, name := range args {
			if _, err := rt.Image(ctx, name); err != nil {
				return noSuchImage(name, err)
			}
		}
		if output == "" {
			return rt.Save(ctx, c.stdout, args...)
		}
		return writeFileAtomic(output, func(w io.Writer) error {
			return rt.Save(ctx, w, args...)
		})
	}
}

// writeFileAtomic writes name through a temp file in the same directory
// and renames it into place, so a failed save leaves no partial archive.
func writeFileAtomic(name string, write func(io.Writer) error) (retErr error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("failed to save image: %w", err)
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// loadCommand is docker load.
func loadCommand(fs *flagSet) runFunc {
	var input string
	var quiet bool
	fs.String(&input, "i", "input", "string", "", "Read from tar archive file, instead of STDIN")
	fs.Bool(&quiet, "q", "quiet", "Suppress the load output (berth shows no load progress, so this changes nothing)")
	return func(ctx context.Context, c *cli, args []string) error {
		in := c.stdin
		if input != "" {
			f, err := os.Open(input)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		} else if isTerminal(in) {
			return errors.New("requested load from stdin, but stdin is empty")
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		images, err := rt.Load(ctx, in)
		if err != nil {
			return err
		}
		printLoaded(c.stdout, images)
		return nil
	}
}

// printLoaded names the loaded images as docker load does: by reference,
// or by ID when the archive named none.
func printLoaded(w io.Writer, images []*berth.Image) {
	for _, img := range images {
		if len(img.RepoTags) == 0 {
			fmt.Fprintf(w, "Loaded image ID: %s\n", img.ID)
			continue
		}
		for _, t := range img.RepoTags {
			fmt.Fprintf(w, "Loaded image: %s\n", t)
		}
	}
}

// importCommand is docker import, from a file or "-" for STDIN.
func importCommand(fs *flagSet) runFunc {
	var message string
	fs.String(&message, "m", "message", "string", "", "Set commit message for imported image")
	return func(ctx context.Context, c *cli, args []string) error {
		in := c.stdin
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		ref := ""
		if len(args) == 2 {
			ref = args[1]
		}
		var opts []berth.ImportOption
		if message != "" {
			opts = append(opts, berth.WithImportMessage(message))
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		img, err := rt.Import(ctx, in, ref, opts...)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, img.ID)
		return nil
	}
}
