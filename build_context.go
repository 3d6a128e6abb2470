package berth

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
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
	if _, err := runNetwork(c.network); err != nil {
		return fmt.Errorf("build network: %w", err)
	}
	for _, h := range c.extraHosts {
		if _, _, err := parseExtraHost(h); err != nil {
			return err
		}
	}
	return c.checkCache()
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
	rd, err := contextReader(b.cfg.archive)
	if err != nil {
		return "", fmt.Errorf("building: reading the context archive: %w", err)
	}
	defer rd.Close()
	if _, err := archive.Apply(ctx, dir, rd, b.r.applyOptions()); err != nil {
		return "", fmt.Errorf("building: unpacking the context archive: %w", err)
	}
	return dir, nil
}

// contextReader reads a context archive's tar stream: compressed with
// bzip2, which docker build - takes as well (not a layer's format), else as
// a layer is read (gzip, zstd or plain). xz, which docker also takes, is
// not read: its decoder allocates the dictionary a stream declares, up to
// 4 GiB, from a header of a few bytes.
func contextReader(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, archive.CopyBufSize)
	head, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(head, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, fmt.Errorf("%w: an xz-compressed context (gzip, zstd and bzip2 are read)", ErrUnsupported)
	}
	return archive.Decompress(br)
}

// runNetworkMode is the network mode of a RUN whose own --network is mode.
func (b *builder) runNetworkMode(mode string) string {
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
		keys = append(keys, "label", k, c.labels[k]) // each length-prefixed by stepKey
	}
	return keys
}

// output writes the built image's filesystem where WithBuildOutputDir and
// WithBuildOutputTar ask.
func (b *builder) output(ctx context.Context, img *Image) error {
	if b.cfg.outDir == "" && b.cfg.outTar == nil {
		return nil
	}
	// The merged filesystem, unpacked under the root: written out as a
	// tar, it has no whiteouts, so applying it to the directory adds and
	// replaces files and never deletes one of the caller's.
	merged, err := b.materialize(ctx, "image:"+img.ID, img)
	if err != nil {
		return err
	}
	if dir := b.cfg.outDir; dir != "" {
		// BuildKit's local exporter: a directory only its owner reads,
		// files owned by the caller.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("building: writing the output: %w", err)
		}
		pr, pw := io.Pipe()
		written := make(chan struct{})
		go func() {
			defer close(written)
			pw.CloseWithError(writeTree(ctx, merged, pw))
		}()
		_, err := archive.Apply(ctx, dir, pr, archive.ApplyOptions{NoSameOwner: true})
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		<-written // before the cleanup removes the tree it walks
		if err != nil {
			return fmt.Errorf("building: writing the output to %s: %w", dir, err)
		}
	}
	if b.cfg.outTar != nil {
		w := bufio.NewWriterSize(b.cfg.outTar, 256<<10)
		err := writeTree(ctx, merged, w)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return fmt.Errorf("building: writing the output: %w", err)
		}
	}
	return nil
}

// writeTree writes the tree at dir to w as a tar stream (tarTree).
func writeTree(ctx context.Context, dir string, w io.Writer) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return tarTree(ctx, fd, w)
}
