package berth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/initproc"
	"github.com/berth-dev/berth/internal/nat"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/berth-dev/berth/internal/store"
)

// DefaultRoot is the state directory used when New is given an empty root.
const DefaultRoot = "/var/lib/berth"

// Runtime is berth's handle on one state directory (its root). All images,
// containers, networks and volumes live under the root; several Runtimes,
// in one program or in several, may share a root at once.
//
// A Runtime is safe for concurrent use. The caller must call Close.
type Runtime struct {
	root  string
	store *store.Store
	snaps *snapshot.Snapshots
	// sweepLater is set in a monitor, which sweeps its root's containers
	// once it serves the root (monitorMain).
	sweepLater bool

	mu       sync.Mutex
	closed   bool
	starting sync.WaitGroup      // Runs in progress; Close waits for them
	running  map[string]*running // attached containers this Runtime owns
	bridges  map[string]*os.File // network ID: the shared hold on its bridge
	// noBridgeHold: this Runtime (the monitor's) does not keep bridges up
	// for later containers.
	noBridgeHold bool
	bridgeLinger time.Duration  // WithBridgeLinger
	leaveSpares  bool           // WithLeaveSpares
	filters      sync.Map       // compiled seccomp filters by capability set
	background   sync.WaitGroup // work begun by inBackground; Close waits for it
	configIDs    sync.Map       // manifest digest → config digest (both immutable)
	startedOne   atomic.Bool    // an attached container was started (Run)
	runImagesMu  sync.Mutex
	runImages    map[string]*Image // manifest digest → parsed for Run (see runImage)

	warmMu       sync.Mutex
	warm         *initproc.Warm // a child stage started ahead of need, or nil
	warmDetached bool
	warmFilling  bool
	launches     int // containers launched, for deciding when warming pays
}

// Option configures a Runtime.
type Option interface{ applyRuntime(*Runtime) }

// New opens (creating if needed) the berth state directory root, or
// DefaultRoot when root is empty, and sweeps what crashed programs left in
// it: partial downloads and unpacks are removed, so the store always opens
// consistent. New needs root privileges for everything beyond image
// storage.
func New(root string, opts ...Option) (*Runtime, error) {
	if root == "" {
		root = DefaultRoot
	}
	tr := newTracer("new")
	defer tr.done()
	warmCodecs.Do(func() { go warmRecordCodecs() })
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("berth root %q: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("creating berth root: %w", err)
	}
	st, err := store.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("opening berth root %s: %w", abs, err)
	}
	snaps, err := snapshot.New(st)
	if err != nil {
		return nil, fmt.Errorf("opening snapshots in %s: %w", abs, err)
	}
	tr.mark("store")
	r := &Runtime{root: abs, store: st, snaps: snaps}
	for _, o := range opts {
		o.applyRuntime(r)
	}
	var claimed []pendingRestart
	if !r.sweepLater {
		claimed = r.sweepContainers()
	}
	tr.mark("containers")
	// Bridges and tables of roots that no longer exist are found in the
	// kernel, not in this root. The sweep runs here, not on a goroutine
	// beside the one above: it takes 0.1-0.4 ms, and a goroutine a fresh
	// program starts here waited 0.2-1.2 ms for a thread (traced), behind
	// the background work sweepContainers starts.
	tables := sweepOrphanBridges()
	tr.mark("orphans")
	r.sweepNetworks(tables)
	tr.mark("networks")
	// Last: the restarts start beside the caller's first work, after the
	// sweeps of endpoints and bridges above.
	r.restartClaimed(claimed)
	return r, nil
}

// warmCodecs starts warmRecordCodecs once per process.
var warmCodecs sync.Once

// warmRecordCodecs has encoding/json build its codecs for the records
// every command reads or writes, beside New's sweeps: it builds a type's
// codec by reflection the first time the type is used, which took a
// program's first record 0.25-0.7 ms here, on the caller's path. Encoding
// builds the field tables that decoding uses too.
func warmRecordCodecs() {
	json.Marshal(&containerRecord{})
	json.Marshal(&endpointRecord{})
}

// Root returns the absolute path of the runtime's state directory.
func (r *Runtime) Root() string { return r.root }

// Close releases the runtime. Attached containers it started are killed
// and cleaned up (removed too when they were run with WithAutoRemove),
// those of Runs still in progress once they have started; images and
// detached containers stay in the root for the next Runtime that opens
// it. Close is idempotent.
func (r *Runtime) Close() error {
	tr := newTracer("close")
	defer tr.done()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	// A Run begun before would otherwise track its container after the
	// loop below, and it would run on, owned by a closed Runtime.
	r.starting.Wait()
	r.mu.Lock()
	var owned []*running
	for _, run := range r.running {
		owned = append(owned, run)
	}
	r.mu.Unlock()
	for _, run := range owned {
		run.cg.Kill()
		<-run.done
	}
	r.warmMu.Lock()
	w := r.warm
	r.warm = nil
	r.warmMu.Unlock()
	if w != nil {
		w.Close()
	}
	// A short-lived program hands its netfilter sockets to the process
	// that lingers with the bridge, when closing them would make its exit
	// wait out the grace period of a deletion just made (nat.HandOff).
	var handed []*os.File
	if r.bridgeLinger > 0 {
		handed = nat.HandOff()
	}
	tr.mark("containers")
	r.releaseBridges(handed)
	tr.mark("bridges")
	r.background.Wait()
	tr.mark("background")
	// The root's parent cgroup goes once nothing of this root is in it.
	cgroup.RemoveIfEmpty("/berth/" + rootTag(r.root))
	tr.mark("cgroup")
	return nil
}

// inBackground runs fn in a goroutine that Close waits for, or at once
// when the Runtime is closing: a WaitGroup's Add from zero must come before
// its Wait, and r.mu orders the two (Close sets closed before it waits).
func (r *Runtime) inBackground(fn func()) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		fn()
		return
	}
	r.background.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.background.Done()
		fn()
	}()
}

// beginRun is checkOpen for a Run, which Close waits for: done ends it.
func (r *Runtime) beginRun() (done func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.starting.Add(1)
	return r.starting.Done, nil
}

func (r *Runtime) checkOpen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return nil
}

// gcShared holds the garbage-collection lock shared for the length of an
// operation that adds content, so that Prune in another program never
// deletes blobs that are written but not yet referenced.
func (r *Runtime) gcShared(ctx context.Context) (func(), error) {
	return r.store.Lock(ctx, "gc", false)
}
