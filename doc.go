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
// # Containers
//
// [Runtime.Run] starts a [Process] from an image in new mount, pid, uts,
// ipc, net and cgroup namespaces, on an overlay of the image's layers, with
// docker's default capabilities, seccomp profile and masked paths, and
// no_new_privs. The process is PID 1 of its namespace, as in docker
// (unless [WithPidMode] shares one). An attached container (the default)
// dies with its Runtime and with the program, even if the program is
// SIGKILLed; [WithDetach] makes one that
// outlives it, which any program opening the same root can list
// ([Runtime.Containers]), find ([Runtime.Container]), wait for, read the
// logs of, stop and remove.
//
// # Networks
//
// A container joins the default bridge network ([DefaultNetwork]) unless
// told otherwise, as with docker: its own address behind a bridge, outbound
// traffic masqueraded, and a name server at 127.0.0.11 that answers the
// names and aliases of the containers on its networks.
// [Runtime.CreateNetwork] makes more ([WithNetwork] joins one);
// [WithPublish] publishes ports on the host (nftables DNAT, no proxy
// process); [WithNetworkMode] gives "none", "host" or "container:NAME".
// [Container.Dial] connects into a container's namespace without
// publishing anything, [Container.WaitListening] waits for a server to
// listen without running anything inside, and [Container.WaitLog] for a
// line such as "ready to accept connections" in its output. Bridges, veths and rules exist
// only while containers or Runtimes use them; the next [New] after a crash
// removes what a dead program left.
//
// # Builds
//
// [Runtime.Build] turns a context directory and a Dockerfile into an image,
// parsing with BuildKit's parser and evaluating every instruction on berth's
// own primitives: RUN runs in a container whose changes become the step's
// layer, COPY and ADD write their layer directly from the context (never
// reading outside it). Steps are cached by content, not by modification
// time, in the root, so later builds and other programs reuse them.
//
// # How containers start
//
// No process of berth's starts per container. A thread of the calling
// program, locked to its goroutine and never the main thread, makes the
// container's namespaces and root filesystem on itself, then forks a
// tiny static helper (a few hundred bytes of machine code) that loads the
// seccomp filter and execs the user's program. No host binary is exec'd
// in a container (the child stage below runs a sealed copy of the
// program), so none can be overwritten from one (CVE-2019-5736). The
// thread lives as long as an attached container, which dies with it.
// Where that path cannot serve (containers with rlimits or
// without no_new_privs, architectures other than amd64, kernels before
// Linux 6.18), a re-executed copy of the calling binary does the same
// work: berth's own package initialisation recognises such a child and
// runs it before the importer's main or the test runner, so importers,
// test binaries included, add no hook and no TestMain; package init
// functions of the program then run in every such child, so keep them
// cheap. Detached containers are parented by a monitor, another
// re-executed copy (one per root, started on demand, gone when no
// detached container runs), which records their exit status and output.
//
// # Context
//
// Every call that blocks or touches the kernel, the disk or the network
// takes a [context.Context] first; the context bounds that call only.
// Objects live until their Close or Remove: a Container outlives the ctx
// of the Run that made it.
//
// # Privileges
//
// Image storage works as any user who owns the root; unpacking layers with
// their ownership and device nodes, and everything that runs containers,
// needs root. Linux only.
package berth
