package berth

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"
)

// check refuses settings Build cannot honour before anything is built.
func (c *buildSettings) check(contextDir string) error {
	if c.archive != nil && contextDir != "" {
		return fmt.Errorf("%w: a context archive and a context directory (%s): give one", ErrInvalid, contextDir)
	}
	switch c.network {
	case "", instructions.NetworkDefault, instructions.NetworkNone, instructions.NetworkHost:
	default:
		return fmt.Errorf("%w: build network %q: want default, none or host", ErrUnsupported, c.network)
	}
	for _, h := range c.extraHosts {
		if _, _, err := parseExtraHost(h); err != nil {
			return err
		}
	}
	return nil
}

// unpackContext makes the build's context directory under the root: empty,
// or the archive's content.
func (b *builder) unpackContext(ctx context.Context) (string, error) {
	tmp, release, err := b.r.store.TempDir("build-context-")
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	b.releases = append(b.releases, release)
	b.mu.Unlock()
	dir := filepath.Join(tmp, "context")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if b.cfg.archive == nil {
		return dir, nil
	}
	rd, err := archive.Decompress(bufio.NewReaderSize(b.cfg.archive, archive.CopyBufSize))
	if err != nil {
		return "", fmt.Errorf("building: reading the context archive: %w", err)
	}
	defer rd.Close()
	if _, err := archive.Apply(ctx, dir, rd, b.r.applyOptions()); err != nil {
		return "", fmt.Errorf("building: unpacking the context archive: %w", err)
	}
	return dir, nil
}

// runNetwork is the network mode of a RUN whose own --network is mode.
func (b *builder) runNetwork(mode string) string {
	if mode == instructions.NetworkDefault && b.cfg.network != "" {
		return b.cfg.network
	}
	return mode
}

// labelKey is what WithBuildLabels adds to the final image's cache key,
// nil without labels, so that such a build keeps its key.
func (c *buildSettings) labelKey() []string {
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(c.labels)) {
		keys = append(keys, "label:"+k+"="+c.labels[k])
	}
	return keys
}

// output writes the built image's filesystem where WithBuildOutputDir and
// WithBuildOutputTar ask.
func (b *builder) output(ctx context.Context, img *Image) error {
	if dir := b.cfg.outDir; dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("building: writing the output: %w", err)
		}
		for _, l := range img.Layers {
			if err := b.applyLayer(ctx, dir, l); err != nil {
				return fmt.Errorf("building: writing the output to %s: %w", dir, err)
			}
		}
	}
	if b.cfg.outTar == nil {
		return nil
	}
	dir, err := b.materialize(ctx, "image:"+img.ID, img)
	if err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var sx unix.Statx_t
	if err := statxAt(fd, "", unix.AT_EMPTY_PATH, &sx); err != nil {
		return err
	}
	w := bufio.NewWriterSize(b.cfg.outTar, 256<<10)
	t := newTarWalker(ctx, w, &sx)
	t.oneFS = true
	if err := t.walk(fd, ""); err != nil {
		return fmt.Errorf("building: writing the output: %w", err)
	}
	if err := t.close(); err != nil {
		return fmt.Errorf("building: writing the output: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("building: writing the output: %w", err)
	}
	return nil
}
