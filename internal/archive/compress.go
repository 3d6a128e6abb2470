package archive

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// zstdMaxWindow bounds the memory a zstd frame may make the decoder allocate.
// Registries' layers use windows of at most 8 MiB in practice (zstd -19 uses
// 8 MiB; --long=27 uses 128 MiB), so 128 MiB allows every real producer while a
// hostile frame header cannot ask for gigabytes.
const zstdMaxWindow = 128 << 20

// Decompress sniffs the first bytes of r and returns a reader of the tar
// stream inside: gzip (1f 8b), zstd (28 b5 2f fd), or r itself when it is
// neither (a plain tar). Decompression happens in this process; no program is
// run. The caller must call Close on the result; Close does not close r.
//
// Decompress does not limit the size of the output: Apply's MaxBytes does.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("sniffing layer compression: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("opening gzip layer: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, fmt.Errorf("opening zstd layer: %w", err)
		}
		return zstdReadCloser{zr}, nil
	default:
		return io.NopCloser(br), nil
	}
}

// zstdReadCloser adapts *zstd.Decoder, whose Close returns nothing and which
// must be closed to stop its goroutines.
type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }

func (z zstdReadCloser) Close() error {
	z.d.Close()
	return nil
}
