package berth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/bridge"
	"golang.org/x/sys/unix"
)

// Connect attaches the container to the network (docker network connect
// --alias): a running container gets a new interface at once and the
// others on the network find it by name and alias from then on; a stopped
// one joins when it next starts. Connecting twice fails with ErrExists.
func (n *Network) Connect(ctx context.Context, c *Container, aliases ...string) (retErr error) {
	r := n.rt
	if err := r.checkOpen(); err != nil {
		return err
	}
	defer n.event("connect", c, &retErr)
	cur, unlock, err := r.lockNotStarting(ctx, c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if mode, _ := networkModeOf(&cur.Config); mode != "bridge" {
		return fmt.Errorf("%w: container %s uses network mode %q and cannot join networks", ErrInvalid, c.Name, cur.Config.NetworkMode)
	}
	a := networkAttachment{NetworkID: n.ID, Name: n.Name, Aliases: aliases}
	rec, err := r.updateRecord(ctx, c.ID, func(rec *containerRecord) error {
		for _, have := range rec.Config.Networks {
			if have.NetworkID == n.ID {
				return fmt.Errorf("%w: container %s is already on network %q", ErrExists, c.Name, n.Name)
			}
		}
		rec.Config.Networks = append(rec.Config.Networks, a)
		return nil
	})
	if err != nil {
		return err
	}
	if !rec.alive() {
		return nil
	}
	ep, err := r.allocateEndpoint(ctx, rec, a, r.freeInterfaceIndex(rec))
	if err != nil {
		return r.undoConnect(ctx, c, n, err)
	}
	nsPath := "/proc/" + strconv.Itoa(rec.State.Pid) + "/ns/net"
	f, err := os.Open(nsPath)
	if err == nil {
		mac, _ := net.ParseMAC(ep.MAC)
		bep := bridge.Endpoint{Bridge: bridgeName(r.root, n.ID), HostName: ep.HostIf, Name: ep.Ifname, Addr: ep.Addr, MAC: mac}
		err = bridge.Attach(int(f.Fd()), bep)
		if errors.Is(err, unix.EEXIST) && bridge.Exists(ep.HostIf) {
			// The container has no interface of that number (Connect and
			// Disconnect hold its network lock): a host end of that name
			// is an earlier run's the kernel has not deleted yet.
			if bridge.Delete(ep.HostIf) == nil {
				err = bridge.Attach(int(f.Fd()), bep)
			}
		}
		f.Close()
	}
	if err != nil {
		r.dropEndpoint(ep)
		if _, serr := os.Stat(nsPath); serr != nil || !rec.alive() {
			// It stopped meanwhile (its namespace went with it, before its
			// process was reaped): it joins the network when it next
			// starts, as a stopped one does.
			return nil
		}
		return r.undoConnect(ctx, c, n, fmt.Errorf("connecting container %s to network %q: %w", c.Name, n.Name, err))
	}
	_, err = r.updateRecord(ctx, c.ID, func(rec *containerRecord) error {
		rec.State.Networks = append(rec.State.Networks, ep.public(n.Name))
		return nil
	})
	return err
}

// event records the container's connect or disconnect once it succeeded.
func (n *Network) event(action string, c *Container, err *error) {
	if *err == nil {
		n.rt.emit("network", action, n.ID, map[string]string{"name": n.Name, "container": c.ID})
	}
}

// freeInterfaceIndex is the lowest N for which the running container has
// no ethN: after a Disconnect, the number of its networks can name an
// interface it still has.
func (r *Runtime) freeInterfaceIndex(rec *containerRecord) int {
	used := map[string]bool{}
	for _, e := range rec.State.Networks {
		var ep endpointRecord
		if readJSON(r.endpointPath(e.NetworkID, rec.ID), &ep) == nil {
			used[ep.Ifname] = true
		}
	}
	i := 0
	for used["eth"+strconv.Itoa(i)] {
		i++
	}
	return i
}

// lockNetworks serialises Connect and Disconnect of container id across
// programs: a Disconnect between a Connect's record update and its veth
// found no endpoint to remove, and left the container an interface its
// record did not list, whose name the next Connect then could not take.
func (r *Runtime) lockNetworks(ctx context.Context, id string) (func(), error) {
	return r.store.Lock(ctx, "net-"+id, true)
}

// lockNotStarting takes container id's network lock (lockNetworks), which
// a start holds while it reads the record it launches with, and then
// waits while a start is in progress (notStarting): a change to the
// record made under it is neither missed by a start nor undone by a
// launch's write of the whole record it read. It returns the record.
func (r *Runtime) lockNotStarting(ctx context.Context, id string) (*containerRecord, func(), error) {
	unlock, err := r.lockNetworks(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	rec, err := r.notStarting(ctx, id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return rec, unlock, nil
}

// notStarting waits while container id is being started, and returns its
// record then: a network joined or left while a start is setting up the
// container's networks would be recorded but not made (or undone).
func (r *Runtime) notStarting(ctx context.Context, id string) (*containerRecord, error) {
	for {
		rec, err := r.readRecord(id)
		if err != nil || !rec.starting() {
			return rec, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (r *Runtime) undoConnect(ctx context.Context, c *Container, n *Network, cause error) error {
	r.updateRecord(ctx, c.ID, func(rec *containerRecord) error {
		rec.Config.Networks = slices.DeleteFunc(rec.Config.Networks, func(a networkAttachment) bool { return a.NetworkID == n.ID })
		return nil
	})
	return cause
}

// Disconnect detaches the container from the network (docker network
// disconnect): a running container loses the interface at once, and its
// name stops resolving there. A container not on the network fails with
// ErrNotFound.
func (n *Network) Disconnect(ctx context.Context, c *Container) (retErr error) {
	r := n.rt
	if err := r.checkOpen(); err != nil {
		return err
	}
	defer n.event("disconnect", c, &retErr)
	_, unlock, err := r.lockNotStarting(ctx, c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := r.updateRecord(ctx, c.ID, func(rec *containerRecord) error {
		before := len(rec.Config.Networks)
		rec.Config.Networks = slices.DeleteFunc(rec.Config.Networks, func(a networkAttachment) bool { return a.NetworkID == n.ID })
		if len(rec.Config.Networks) == before {
			return fmt.Errorf("%w: container %s is not on network %q", ErrNotFound, c.Name, n.Name)
		}
		rec.State.Networks = slices.DeleteFunc(rec.State.Networks, func(e NetworkEndpoint) bool { return e.Network == n.Name })
		return nil
	})
	if err != nil {
		return err
	}
	var ep endpointRecord
	if readJSON(r.endpointPath(n.ID, c.ID), &ep) != nil {
		return nil // not running, or not attached yet
	}
	if rec.alive() {
		if f, err := os.Open("/proc/" + strconv.Itoa(rec.State.Pid) + "/ns/net"); err == nil {
			bridge.Detach(int(f.Fd()), ep.Ifname)
			f.Close()
		}
	}
	bridge.Delete(ep.HostIf)
	r.dropEndpoint(&ep)
	if len(ep.Ports) > 0 {
		r.applyNAT(ctx)
	}
	r.maybeDownBridge(ctx, n.ID)
	return nil
}

// strayEndpoints lists endpoint files of the container on networks it
// joined after it started (Connect), which its owner did not make.
func (r *Runtime) strayEndpoints(containerID string) []string {
	m, _ := filepath.Glob(filepath.Join(r.root, "endpoints", "*", containerID+".json"))
	return m
}

// removeStrayEndpoints deletes, once the container stopped, the endpoints
// Connect gave it while it ran, with their veths and the rules for them.
func (r *Runtime) removeStrayEndpoints(containerID string) {
	paths := r.strayEndpoints(containerID)
	if len(paths) == 0 {
		return
	}
	ctx := context.Background()
	for _, p := range paths {
		var ep endpointRecord
		if readJSON(p, &ep) == nil {
			bridge.Delete(ep.HostIf)
		}
		os.Remove(p)
	}
	r.applyNAT(ctx)
	for _, p := range paths {
		r.maybeDownBridge(ctx, filepath.Base(filepath.Dir(p)))
	}
}
