package berth

import "cmp"

// Layer describes one layer of an image.
type Layer struct {
	// Digest is the digest of the layer blob as stored and pushed
	// (compressed or not, as MediaType says).
	Digest string
	// DiffID is the digest of the uncompressed layer tar, as the image
	// config lists it.
	DiffID string
	// ChainID identifies the layer together with every layer below it; it
	// names the layer's unpacked snapshot.
	ChainID string
	// MediaType is the layer blob's media type.
	MediaType string
	// Size is the size of the layer blob in bytes.
	Size int64
	// UncompressedSize is the size of the uncompressed layer tar, or 0 if
	// the layer is not unpacked.
	UncompressedSize int64
}

// size is the layer's bytes on disk as docker's sizes count them: unpacked,
// else its blob's.
func (l Layer) size() int64 { return cmp.Or(l.UncompressedSize, l.Size) }
