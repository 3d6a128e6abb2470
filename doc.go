// Package berth builds, pulls, runs, execs into and commits OCI containers
// from inside the calling Go program: no daemon, no socket, no shim, no
// docker or runc binary on the machine.
//
// # Quick start
//
//	rt, err := berth.New("")            // state in /var/lib/berth
//	if err != nil { ... }
//	defer rt.Close()
//	img, err := rt.Pull(ctx, "localhost:5000/busybox:latest")
//	if err != nil { ... }
//	fmt.Println(img.ID, img.Config.Cmd)
//
// A [Runtime] owns one state directory (its root). Images live there as a
// content-addressed store of blobs (blobs/sha256/…), references
// (refs.json: name → manifest digest) and unpacked layers
// (snapshots/<chain ID>/), ready for overlayfs. Several programs — several
// `go test` binaries at once — may open the same root: blobs and snapshots
// are written under cross-process file locks, become visible only by an
// atomic rename after verification, and a program killed at any moment
// leaves a root that the next [New] opens and that passes [Runtime.Check].
//
// # Images
//
// [Runtime.Pull] and [Runtime.Push] talk to registries (Docker schema 2
// and OCI manifests and indexes, gzip, zstd and uncompressed layers,
// credentials from ~/.docker/config.json or [WithAuth]); [Runtime.Load]
// and [Runtime.Save] read and write `docker save` archives and OCI layouts;
// [Runtime.Import] makes an image from a root filesystem tar. Every layer
// is unpacked once, in Go, with every path resolved inside its snapshot
// directory: a hostile layer is refused with an error naming the entry and
// never touches anything outside the root.
//
// # Context
//
// Every call that blocks or touches the kernel, the disk or the network
// takes a [context.Context] first; the context bounds that call only.
// Objects (a Runtime, later containers) live until their Close or Remove.
//
// # Privileges
//
// Image storage works as any user who owns the root; unpacking layers with
// their ownership and device nodes, and everything that runs containers,
// needs root. Linux only.
package berth
