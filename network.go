package berth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/bridge"
	"github.com/berth-dev/berth/internal/nat"
)

// DefaultNetwork is the name of the bridge network containers join when
// Run is given no network option, as docker's "bridge".
const DefaultNetwork = "bridge"

// Network is a bridge network: containers on it get an address of its
// subnet, reach each other by container name and alias, and reach the
// outside through the host (unless it is internal). The bridge device exists
// while a container is attached or a Runtime that used it is open; the
// network itself stays until Remove (docker network create).
type Network struct {
	ID   string
	Name string
	// Driver is "bridge".
	Driver string
	// Subnet and Gateway are the network's addresses; the gateway is the
	// host's address on the bridge.
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Internal networks have no route out of the host.
	Internal bool
	Labels   map[string]string
	Created  time.Time

	rt *Runtime
	// autoSubnet says the subnet was chosen by berth, which may move it to
	// another free range while no container is attached.
	autoSubnet bool
}

// networkRecord is a network as stored in networks/<name>.json.
type networkRecord struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Subnet     netip.Prefix      `json:"subnet"`
	Gateway    netip.Addr        `json:"gateway"`
	Internal   bool              `json:"internal,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Created    time.Time         `json:"created"`
	AutoSubnet bool              `json:"autoSubnet,omitempty"`
}

// NetworkOption configures CreateNetwork.
type NetworkOption interface{ applyNetwork(*networkRecord) error }

type networkOptionFunc func(*networkRecord) error

func (f networkOptionFunc) applyNetwork(n *networkRecord) error { return f(n) }

// WithSubnet gives the network a subnet in CIDR form ("10.5.0.0/24",
// docker network create --subnet). Default: a free /24 of 10.200.0.0/16
// that overlaps neither the host's routes nor another berth network. A
// subnet that reaches into 0.0.0.0/8, loopback, link-local, multicast or
// the reserved 240.0.0.0/4 is refused: the host routes those itself (an
// address of 127.0.0.0/8 on a bridge would shadow the host's loopback).
func WithSubnet(cidr string) NetworkOption {
	return networkOptionFunc(func(n *networkRecord) error {
		p, err := netip.ParsePrefix(cidr)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return fmt.Errorf("%w: subnet %q: want an IPv4 CIDR of at most /30", ErrInvalid, cidr)
		}
		p = p.Masked()
		for _, special := range unroutedSubnets {
			if special.Overlaps(p) {
				return fmt.Errorf("%w: subnet %s overlaps %s, which the host routes itself", ErrInvalid, p, special)
			}
		}
		n.Subnet = p
		return nil
	})
}

// unroutedSubnets are the IPv4 ranges a network may not use: "this
// network", loopback, link-local, multicast and reserved (with broadcast).
var unroutedSubnets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// WithGateway sets the host's address on the network (--gateway); it must
// lie in the subnet. Default: the subnet's first address.
func WithGateway(ip string) NetworkOption {
	return networkOptionFunc(func(n *networkRecord) error {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return fmt.Errorf("%w: gateway %q: want an IPv4 address", ErrInvalid, ip)
		}
		n.Gateway = a
		return nil
	})
}

// WithInternal makes the network internal (--internal): containers on it
// reach each other but nothing beyond the bridge. Default: outbound traffic
// is masqueraded to the host's addresses.
func WithInternal() NetworkOption {
	return networkOptionFunc(func(n *networkRecord) error { n.Internal = true; return nil })
}

// WithNetworkLabels sets labels on the network (--label). Default: none.
func WithNetworkLabels(labels map[string]string) NetworkOption {
	return networkOptionFunc(func(n *networkRecord) error {
		n.Labels = make(map[string]string, len(labels))
		for k, v := range labels {
			n.Labels[k] = v
		}
		return nil
	})
}

// reservedNetworks are network modes, not network names.
var reservedNetworks = map[string]bool{"host": true, "none": true, "default": true, "container": true}

func (r *Runtime) networksDir() string { return filepath.Join(r.root, "networks") }

func (r *Runtime) networkPath(name string) string {
	return filepath.Join(r.networksDir(), name+".json")
}

func validNetworkName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "/\\:") || name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w: network name %q: want letters, digits, '_', '-' or '.', not starting with '.'", ErrInvalid, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: network name %q: want letters, digits, '_', '-' or '.'", ErrInvalid, name)
		}
	}
	return nil
}

// CreateNetwork creates a bridge network (docker network create). A name in
// use fails with ErrExists; "host", "none", "default" and "container" are
// modes, not names (WithNetworkMode). The bridge device itself is made when
// the first container joins.
func (r *Runtime) CreateNetwork(ctx context.Context, name string, opts ...NetworkOption) (*Network, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := validNetworkName(name); err != nil {
		return nil, err
	}
	if reservedNetworks[name] || name == DefaultNetwork {
		return nil, fmt.Errorf("%w: network %q is predefined", ErrExists, name)
	}
	rec := &networkRecord{Name: name, Driver: "bridge"}
	for _, o := range opts {
		if err := o.applyNetwork(rec); err != nil {
			return nil, err
		}
	}
	return r.createNetwork(ctx, rec)
}

func (r *Runtime) createNetwork(ctx context.Context, rec *networkRecord) (*Network, error) {
	rec.ID = newContainerID()
	rec.Created = time.Now().UTC()
	if rec.Gateway.IsValid() && !rec.Subnet.IsValid() {
		return nil, fmt.Errorf("%w: a gateway needs a subnet", ErrInvalid)
	}
	unlock, err := r.store.Lock(ctx, "networks", true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(r.networkPath(rec.Name)); err == nil {
		return nil, fmt.Errorf("%w: network %q", ErrExists, rec.Name)
	}
	others, err := r.networkRecords()
	if err != nil {
		return nil, err
	}
	if rec.Subnet.IsValid() {
		for _, o := range others {
			if o.Subnet.Overlaps(rec.Subnet) {
				return nil, fmt.Errorf("%w: subnet %s overlaps network %q (%s)", ErrInvalid, rec.Subnet, o.Name, o.Subnet)
			}
		}
		if !rec.Gateway.IsValid() {
			rec.Gateway = rec.Subnet.Addr().Next()
		}
		if !rec.Subnet.Contains(rec.Gateway) || rec.Gateway == rec.Subnet.Addr() || rec.Gateway == lastAddr(rec.Subnet) {
			return nil, fmt.Errorf("%w: gateway %s is not a host address of subnet %s", ErrInvalid, rec.Gateway, rec.Subnet)
		}
	} else {
		release, err := hostIPAMLock(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		if rec.Subnet, err = freeSubnet(others); err != nil {
			return nil, err
		}
		rec.Gateway = rec.Subnet.Addr().Next()
		rec.AutoSubnet = true
	}
	if err := os.MkdirAll(r.networksDir(), 0o700); err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(r.networkPath(rec.Name), rec); err != nil {
		return nil, err
	}
	r.emit("network", "create", rec.ID, map[string]string{"name": rec.Name})
	return r.networkFrom(rec), nil
}

func (r *Runtime) networkFrom(rec *networkRecord) *Network {
	return &Network{ID: rec.ID, Name: rec.Name, Driver: rec.Driver, Subnet: rec.Subnet, Gateway: rec.Gateway,
		Internal: rec.Internal, Labels: rec.Labels, Created: rec.Created, rt: r, autoSubnet: rec.AutoSubnet}
}

// networkRecords reads every network of the root.
func (r *Runtime) networkRecords() ([]*networkRecord, error) {
	entries, err := os.ReadDir(r.networksDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []*networkRecord
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		rec, err := r.readNetwork(name)
		if err != nil {
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

func (r *Runtime) readNetwork(name string) (*networkRecord, error) {
	b, err := os.ReadFile(r.networkPath(name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: network %q", ErrNotFound, name)
		}
		return nil, err
	}
	var rec networkRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("network %q: corrupt record: %w", name, err)
	}
	return &rec, nil
}

// defaultNetwork returns the default bridge network, creating its record
// on first use.
func (r *Runtime) defaultNetwork(ctx context.Context) (*networkRecord, error) {
	if rec, err := r.readNetwork(DefaultNetwork); err == nil {
		return rec, nil
	}
	_, err := r.createNetwork(ctx, &networkRecord{Name: DefaultNetwork, Driver: "bridge"})
	if err != nil && !errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("creating the default network: %w", err)
	}
	return r.readNetwork(DefaultNetwork)
}

// lookupNetwork finds a network record by name, ID or unique ID prefix.
func (r *Runtime) lookupNetwork(ctx context.Context, nameOrID string) (*networkRecord, error) {
	if nameOrID == DefaultNetwork {
		return r.defaultNetwork(ctx)
	}
	if validNetworkName(nameOrID) == nil {
		if rec, err := r.readNetwork(nameOrID); err == nil {
			return rec, nil
		}
	}
	recs, err := r.networkRecords()
	if err != nil {
		return nil, err
	}
	var found *networkRecord
	for _, rec := range recs {
		if nameOrID != "" && strings.HasPrefix(rec.ID, nameOrID) {
			if found != nil {
				return nil, fmt.Errorf("%w: network ID prefix %q is ambiguous", ErrInvalid, nameOrID)
			}
			found = rec
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: network %q", ErrNotFound, nameOrID)
	}
	return found, nil
}

// Network finds a network by name, ID or unique ID prefix (docker network
// inspect). The default network is always found.
func (r *Runtime) Network(ctx context.Context, nameOrID string) (*Network, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	rec, err := r.lookupNetwork(ctx, nameOrID)
	if err != nil {
		return nil, err
	}
	return r.networkFrom(rec), nil
}

// Networks lists the root's networks by name, the default one included
// (docker network ls).
func (r *Runtime) Networks(ctx context.Context) ([]*Network, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if _, err := r.defaultNetwork(ctx); err != nil {
		return nil, err
	}
	recs, err := r.networkRecords()
	if err != nil {
		return nil, err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	out := make([]*Network, len(recs))
	for i, rec := range recs {
		out[i] = r.networkFrom(rec)
	}
	return out, nil
}

// Endpoints lists the running containers attached to the network.
func (n *Network) Endpoints(ctx context.Context) ([]NetworkEndpoint, error) {
	eps, err := n.rt.liveEndpoints(n.ID)
	if err != nil {
		return nil, err
	}
	out := make([]NetworkEndpoint, 0, len(eps))
	for _, ep := range eps {
		out = append(out, ep.public(n.Name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Container < out[j].Container })
	return out, nil
}

// Remove deletes the network (docker network rm). It fails with ErrInUse
// while a container is attached or any container, running or not, was
// run on it (remove those first), and the default network cannot be
// removed. Like Container.Remove it is idempotent: a network that is gone
// is not an error.
func (n *Network) Remove(ctx context.Context) error {
	r := n.rt
	if err := r.checkOpen(); err != nil {
		return err
	}
	if n.Name == DefaultNetwork {
		return fmt.Errorf("%w: the default network cannot be removed", ErrInvalid)
	}
	unlock, err := r.store.Lock(ctx, "networks", true)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := r.readNetwork(n.Name)
	if errors.Is(err, ErrNotFound) || err == nil && rec.ID != n.ID {
		return nil // gone (and its name perhaps taken by a new network)
	}
	if err != nil {
		return err
	}
	eps, err := r.liveEndpoints(n.ID)
	if err != nil {
		return err
	}
	if len(eps) > 0 {
		return fmt.Errorf("%w: network %q has %d attached container(s), e.g. %s", ErrInUse, n.Name, len(eps), eps[0].Name)
	}
	if users := r.containersUsingNetwork(n.ID); len(users) > 0 {
		return fmt.Errorf("%w: network %q is configured for container(s) %s; remove them first", ErrInUse, n.Name, strings.Join(users, ", "))
	}
	if err := bridge.Delete(bridgeName(r.root, n.ID)); err != nil {
		return err
	}
	os.RemoveAll(r.endpointsDir(n.ID))
	if err := os.Remove(r.networkPath(n.Name)); err != nil {
		return err
	}
	r.emit("network", "destroy", n.ID, map[string]string{"name": n.Name})
	return r.applyNAT(ctx)
}

// containersUsingNetwork names the containers (running or not) whose
// configuration attaches them to the network.
func (r *Runtime) containersUsingNetwork(id string) []string {
	var names []string
	for _, rec := range r.containerRecords() {
		for _, a := range rec.Config.Networks {
			if a.NetworkID == id {
				names = append(names, rec.Name)
			}
		}
	}
	return names
}

// bridgeName is the host link of a network: "berth" and 9 hex digits of
// the root and network ID, within the kernel's 15 characters.
func bridgeName(root, networkID string) string {
	h := sha256.Sum256([]byte(rootTag(root) + "/" + networkID))
	return nat.BridgePrefix + hex.EncodeToString(h[:])[:9]
}

// natTable is the root's nftables table.
func natTable(root string) string { return nat.TablePrefix + rootTag(root) }

// subnetPool is where berth finds subnets for networks with none given:
// 256 /24s, away from docker's 172.17-31 and podman's 10.88/10.89 defaults.
var subnetPool = netip.MustParsePrefix("10.200.0.0/16")

// freeSubnet picks the first /24 of the pool that overlaps no host route
// and no network of the root.
func freeSubnet(others []*networkRecord) (netip.Prefix, error) {
	routes, err := bridge.HostRoutes()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("reading the host's routes: %w", err)
	}
	base := subnetPool.Addr().As4()
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(i), 0}), 24)
		if overlapsAny(p, routes, others) {
			continue
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 left in %s for a new network; give one with WithSubnet", subnetPool)
}

func overlapsAny(p netip.Prefix, routes []netip.Prefix, others []*networkRecord) bool {
	for _, r := range routes {
		if r.Overlaps(p) {
			return true
		}
	}
	for _, o := range others {
		if o.Subnet.Overlaps(p) {
			return true
		}
	}
	return false
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= ^uint32(0) >> p.Bits()
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// hostIPAMLock serialises subnet choices of every berth root on the host:
// a route appears only once a bridge is up, so two roots choosing at once
// would otherwise pick the same free range. It is an abstract unix socket,
// held by binding it: the kernel releases it when the holder dies, and no
// file outside the root is involved. Any local user can bind such a name,
// so the holder also listens, and a waiter checks through the socket's
// credentials that a root process holds it: a name squatted by anyone else
// is an error, not a wait without end.
func hostIPAMLock(ctx context.Context) (func(), error) {
	name := ipamLockName
	delay := 200 * time.Microsecond
	refused := 0
	for {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: name}); err == nil {
			if err := syscall.Listen(fd, 1); err != nil {
				syscall.Close(fd)
				return nil, err
			}
			return func() { syscall.Close(fd) }, nil
		}
		syscall.Close(fd)
		switch err := abstractHolder(name); {
		case errors.Is(err, syscall.ECONNREFUSED):
			// Bound and not listening: a holder between its bind and its
			// listen, for a moment; for a second, a squatter.
			if refused++; refused > 50 {
				return nil, fmt.Errorf("the host-wide subnet lock %s is bound by a process that is not berth's", name)
			}
		case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.ENOENT):
			return nil, fmt.Errorf("the host-wide subnet lock %s: %w", name, err)
		default:
			refused = 0
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// ipamLockName is hostIPAMLock's socket (a variable for tests, which
// must not take the host's from programs running beside them).
var ipamLockName = "@berth-ipam"

// writeJSONAtomic writes v to path through a hidden temporary file beside
// it and a rename, so that readers see the old or the new content whole.
// The rename over an existing file is also what keeps a file whole
// across a power loss without an fsync: ext4 (auto_da_alloc) writes the
// new file's data out before such a rename commits. Containers' records
// and endpoint files give that up for writeSwapped (RENAME_EXCHANGE of a
// file written in place: no inode made or freed), which a crash can leave
// empty or stale: the sweep removes a container whose record does not
// parse (removeUnreadable).
func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+newContainerID()[:12])
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// hostIPFor checks that ip is an address of this host (or unspecified).
func hostIPFor(s string) (netip.Addr, error) {
	if s == "" {
		return netip.IPv4Unspecified(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("%w: host IP %q: want an IPv4 address", ErrInvalid, s)
	}
	if ip.IsUnspecified() || ip.IsLoopback() {
		return ip, nil
	}
	addrs, err := bridge.HostAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if a == ip {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: host IP %s is not an address of this host", ErrInvalid, ip)
}
