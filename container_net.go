package berth

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/bridge"
	"github.com/berth-dev/berth/internal/dns"
	"github.com/berth-dev/berth/internal/nat"
)

// NetworkEndpoint is a container's place on a network (docker inspect's
// NetworkSettings.Networks).
type NetworkEndpoint struct {
	Network     string
	NetworkID   string
	Container   string // the container's name
	ContainerID string
	Aliases     []string
	IP          netip.Addr
	PrefixLen   int
	Gateway     netip.Addr
	MAC         string
}

// NetworkConfig is how a container joins a network, whether or not it runs
// (docker's EndpointSettings as configured).
type NetworkConfig struct {
	Network string
	Aliases []string
	// IP is WithIP's address, zero when berth picks one at each start;
	// MAC is WithMACAddress', "" for one made from the address.
	IP  netip.Addr
	MAC string
}

// PortBinding is a published port (docker run -p, docker port).
type PortBinding struct {
	// HostIP is the host address the port is published on; "" or
	// "0.0.0.0" means all of the host's addresses.
	HostIP string
	// HostPort is the port on the host; 0 asks for a free one, and the
	// binding a running container reports has the port chosen.
	HostPort uint16
	// ContainerPort is the port inside the container.
	ContainerPort uint16
	// Protocol is "tcp" (the default when empty) or "udp".
	Protocol string
}

// String formats the binding as docker port does: "8080/tcp ->
// 0.0.0.0:32768".
func (p PortBinding) String() string {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%d/%s -> %s", p.ContainerPort, p.proto(), net.JoinHostPort(ip, strconv.Itoa(int(p.HostPort))))
}

func (p PortBinding) proto() string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}

// ParsePortBinding parses docker's -p syntax:
// [hostIP:][hostPort:]containerPort[/tcp|/udp]. A missing host port means
// a free one.
func ParsePortBinding(spec string) (PortBinding, error) {
	var b PortBinding
	rest := spec
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		b.Protocol = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if b.Protocol != "tcp" && b.Protocol != "udp" {
			return b, fmt.Errorf("%w: port %q: protocol must be tcp or udp", ErrInvalid, spec)
		}
	}
	parts := strings.Split(rest, ":")
	if len(parts) > 3 {
		return b, fmt.Errorf("%w: port %q: want [hostIP:][hostPort:]containerPort[/proto]", ErrInvalid, spec)
	}
	port := func(s string, zeroOK bool) (uint16, error) {
		if s == "" && zeroOK {
			return 0, nil
		}
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || (n == 0 && !zeroOK) {
			return 0, fmt.Errorf("%w: port %q: %q is not a port number", ErrInvalid, spec, s)
		}
		return uint16(n), nil
	}
	var err error
	if b.ContainerPort, err = port(parts[len(parts)-1], false); err != nil {
		return b, err
	}
	if len(parts) >= 2 {
		if b.HostPort, err = port(parts[len(parts)-2], true); err != nil {
			return b, err
		}
	}
	if len(parts) == 3 {
		b.HostIP = strings.Trim(parts[0], "[]")
		if _, err := netip.ParseAddr(b.HostIP); err != nil && b.HostIP != "" {
			return b, fmt.Errorf("%w: port %q: %q is not an IP address", ErrInvalid, spec, parts[0])
		}
	}
	return b, nil
}

// networkAttachment is a network a container is configured to join.
type networkAttachment struct {
	NetworkID string   `json:"networkID"`
	Name      string   `json:"name"`
	Aliases   []string `json:"aliases,omitempty"`
	// IP and MAC are WithIP's and WithMACAddress'; zero for addresses
	// given at each start.
	IP  netip.Addr `json:"ip,omitzero"`
	MAC string     `json:"mac,omitempty"`
}

// endpointRecord is a running container's place on a network, stored as
// endpoints/<network ID>/<container ID>.json so that every program on the
// root (and every container's name server) sees who is where.
type endpointRecord struct {
	ContainerID string        `json:"containerID"`
	Name        string        `json:"name"`
	Hostname    string        `json:"hostname,omitempty"`
	Aliases     []string      `json:"aliases,omitempty"`
	Addr        netip.Prefix  `json:"addr"`
	Gateway     netip.Addr    `json:"gateway"`
	MAC         string        `json:"mac"`
	Ifname      string        `json:"ifname"`
	HostIf      string        `json:"hostIf"`
	Ports       []PortBinding `json:"ports,omitempty"`
	NetworkID   string        `json:"networkID"`
	NetworkName string        `json:"networkName"`
}

func (ep *endpointRecord) public(network string) NetworkEndpoint {
	return NetworkEndpoint{Network: network, NetworkID: ep.NetworkID, Container: ep.Name, ContainerID: ep.ContainerID, Aliases: ep.Aliases,
		IP: ep.Addr.Addr(), PrefixLen: ep.Addr.Bits(), Gateway: ep.Gateway, MAC: ep.MAC}
}

func (r *Runtime) endpointsDir(networkID string) string {
	return filepath.Join(r.root, "endpoints", networkID)
}

// endpointSpares are the files in a container's directory that hold
// earlier versions of its first endpoint's file, to write the next into
// (writeSwapped). A spare directory keeps them.
var endpointSpares = []string{"endpoint.next", "endpoint.old"}

// keptEndpointFiles are endpointSpares' paths for ep, the container's
// first endpoint, or none for another.
func (r *Runtime) keptEndpointFiles(ep *endpointRecord) []string {
	if ep.Ifname != "eth0" {
		return nil
	}
	return keptIn(r.containerDir(ep.ContainerID), endpointSpares)
}

// writeEndpoint writes the endpoint's file, without making or freeing an
// inode where it can (writeSwapped): its name server, other containers'
// and the sweep read it at any moment.
func (r *Runtime) writeEndpoint(ep *endpointRecord) error {
	return writeJSONSwapped(r.endpointPath(ep.NetworkID, ep.ContainerID), r.keptEndpointFiles(ep), ep)
}

// dropEndpoint deletes the endpoint's file: it goes back to the container's
// directory for the next endpoint to be written into, where it can.
func (r *Runtime) dropEndpoint(ep *endpointRecord) {
	keepFile(r.endpointPath(ep.NetworkID, ep.ContainerID), r.keptEndpointFiles(ep))
}

func (r *Runtime) endpointPath(networkID, containerID string) string {
	return filepath.Join(r.endpointsDir(networkID), containerID+".json")
}

// liveEndpoints reads a network's endpoints, skipping those whose owner
// died without removing them. It leaves their files: they are how the
// sweep (sweepDeadEndpoints) knows to rewrite the rules they had, such as a
// published port's.
func (r *Runtime) liveEndpoints(networkID string) ([]*endpointRecord, error) {
	entries, err := os.ReadDir(r.endpointsDir(networkID))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []*endpointRecord
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		var ep endpointRecord
		if readJSON(filepath.Join(r.endpointsDir(networkID), e.Name()), &ep) != nil {
			continue
		}
		if !r.endpointOwned(id) {
			continue
		}
		out = append(out, &ep)
	}
	return out, nil
}

// endpointOwned reports whether a live program still owns the container:
// its owner lock is held.
func (r *Runtime) endpointOwned(containerID string) bool {
	unlock, ok := r.store.TryLock("owner-"+containerID, false)
	if ok {
		unlock()
	}
	return !ok
}

// hasLiveEndpoint reports whether a container a live program owns is on
// the network. It stops at the first (a container's end asks, and a
// network may have hundreds).
func (r *Runtime) hasLiveEndpoint(networkID string) bool {
	entries, _ := os.ReadDir(r.endpointsDir(networkID))
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && validContainerID(id) && r.endpointOwned(id) {
			return true
		}
	}
	return false
}

// sweepDeadEndpoints deletes the endpoint files of a network whose owners
// died without removing them, and reports whether it deleted any (the
// caller then rewrites the rules, which still send their published ports
// to the dead containers' addresses) and whether a live one is left.
func (r *Runtime) sweepDeadEndpoints(networkID string) (deleted, live bool) {
	entries, _ := os.ReadDir(r.endpointsDir(networkID))
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		switch {
		case !ok || !validContainerID(id):
		case r.endpointOwned(id):
			live = true
		case os.Remove(filepath.Join(r.endpointsDir(networkID), e.Name())) == nil:
			deleted = true
		}
	}
	return deleted, live
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// netSetup is what a running container holds on the host for its
// networks, released by teardown.
type netSetup struct {
	rt        *Runtime
	files     map[string][]byte // /etc/hosts and friends
	netnsPath string            // the namespace a shared mode joins
	ports     []PortBinding     // of the container whose namespace is shared
	endpoints []*endpointRecord
	closers   []func()
	mu        sync.Mutex
}

// state is what Inspect shows of the container's networks.
func (ns *netSetup) state() ([]NetworkEndpoint, []PortBinding) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var eps []NetworkEndpoint
	ports := ns.ports
	for i, ep := range ns.endpoints {
		eps = append(eps, ep.public(ep.NetworkName))
		if i == 0 {
			ports = ep.Ports
		}
	}
	return eps, ports
}

// resolvedNetworkMode splits a container's network mode.
func networkModeOf(cfg *containerConfig) (mode, target string) {
	m := cfg.NetworkMode
	if t, ok := strings.CutPrefix(m, "container:"); ok {
		return "container", t
	}
	if m == "" {
		return "bridge", ""
	}
	return m, ""
}

// prepareNetwork runs before the child's spec is made: it allocates the
// container's addresses and writes its endpoints, and returns the files
// the container sees (/etc/hosts, /etc/resolv.conf) and, for shared modes,
// the namespace the child joins.
func (r *Runtime) prepareNetwork(ctx context.Context, rec *containerRecord) (_ *netSetup, retErr error) {
	cfg := &rec.Config
	ns := &netSetup{rt: r}
	files := map[string][]byte{"/etc/hostname": []byte(cfg.Hostname + "\n")}
	ns.files = files
	defer func() {
		if retErr != nil {
			ns.teardown() // this one: the result is nil by then
		}
	}()
	mode, target := networkModeOf(cfg)
	switch mode {
	case "none":
		files["/etc/hosts"] = []byte(hostsFile(cfg, netip.Addr{}))
		files["/etc/resolv.conf"] = resolvConf(cfg, mode)
	case "host":
		hosts, _ := os.ReadFile("/etc/hosts")
		files["/etc/hosts"] = append(hosts, []byte(extraHostLines(cfg.ExtraHosts))...)
		files["/etc/resolv.conf"] = resolvConf(cfg, mode)
		ns.netnsPath = ownNamespace("net")
	case "container":
		pinned, trec, err := r.pinnedNamespaces(target, "net")
		if err != nil {
			return nil, fmt.Errorf("network of container %s: %w", target, err)
		}
		nsFile := pinned[0]
		ns.closers = append(ns.closers, func() { nsFile.Close() })
		tdir := r.containerDir(trec.ID)
		for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
			if b, err := os.ReadFile(filepath.Join(tdir, "etc_"+f)); err == nil {
				files["/etc/"+f] = b
			}
		}
		ns.netnsPath = fdPathOf(nsFile)
		// The target's teardown looks here for containers in its namespace.
		joiners := filepath.Join(r.containerDir(trec.ID), "netns-joiners")
		if err := os.MkdirAll(joiners, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(joiners, rec.ID), nil, 0o600); err != nil {
			return nil, err
		}
		ns.ports = trec.State.Ports
	case "bridge":
		var first netip.Addr
		for _, a := range cfg.Networks {
			ep, err := r.allocateEndpoint(ctx, rec, a, len(ns.endpoints))
			if err != nil {
				return nil, err
			}
			ns.endpoints = append(ns.endpoints, ep)
			if !first.IsValid() {
				first = ep.Addr.Addr()
			}
		}
		files["/etc/hosts"] = []byte(hostsFile(cfg, first))
		files["/etc/resolv.conf"] = resolvConf(cfg, mode)
	default:
		return nil, fmt.Errorf("%w: network mode %q", ErrInvalid, cfg.NetworkMode)
	}
	return ns, nil
}

// allocateEndpoint gives the container the next free address of the
// network, bringing the network's bridge up first.
func (r *Runtime) allocateEndpoint(ctx context.Context, rec *containerRecord, a networkAttachment, index int) (*endpointRecord, error) {
	n, err := r.attachedNetwork(a)
	if err != nil {
		return nil, err
	}
	if err := r.upBridge(ctx, n); err != nil {
		return nil, err
	}
	unlock, err := r.store.Lock(ctx, "net-"+n.ID, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	claims, err := r.addressClaims(n)
	if err != nil {
		return nil, err
	}
	defer claims.Close()
	// Round-robin from the address after the last one given, as docker's
	// allocator does: a just-released address may still sit on a veth the
	// kernel is deleting.
	start := lastGiven(claims, n.Subnet)
	ip := a.IP
	if ip.IsValid() && r.addressTaken(n, claims, ip) {
		return nil, fmt.Errorf("%w: network %q: address %s is another running container's", ErrInUse, n.Name, ip)
	}
	for cand, i := start.Next(), 0; !ip.IsValid() && i < 1<<(32-n.Subnet.Bits()); cand, i = cand.Next(), i+1 {
		if !n.Subnet.Contains(cand) {
			cand = n.Subnet.Addr()
		}
		if cand == n.Gateway || cand == n.Subnet.Addr() || cand == lastAddr(n.Subnet) || r.addressTaken(n, claims, cand) {
			continue
		}
		ip = cand
	}
	if !ip.IsValid() {
		return nil, fmt.Errorf("network %q: no free address left in %s", n.Name, n.Subnet)
	}
	if err := writeClaim(claims, n.Subnet, ip, rec.ID); err != nil {
		return nil, err
	}
	b := ip.As4()
	mac := cmp.Or(a.MAC, net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}.String())
	hostname := rec.Config.Hostname
	if rec.Config.UTSMode == "host" {
		hostname = "" // the host's: the name server must not answer it with this container
	}
	ep := &endpointRecord{
		ContainerID: rec.ID, Name: rec.Name, Hostname: hostname, Aliases: a.Aliases,
		Addr: netip.PrefixFrom(ip, n.Subnet.Bits()), Gateway: n.Gateway,
		MAC:    mac,
		Ifname: "eth" + strconv.Itoa(index), HostIf: hostVethPrefix(rec.ID) + strconv.Itoa(index),
		NetworkID: n.ID, NetworkName: n.Name,
	}
	if err := r.writeEndpoint(ep); err != nil {
		return nil, err
	}
	if !a.IP.IsValid() {
		recordLast(claims, n.Subnet, ip)
	}
	return ep, nil
}

// hostVethPrefix begins the names of the host ends of container id's
// veths, which end in the interface's number.
func hostVethPrefix(id string) string { return "bv" + id[:10] }

// Address claims make an allocation look at the addresses it would give
// rather than at every endpoint of the network: endpoints/<net ID>/claims
// holds, for each address of the subnet, the ID of the container last
// given it, in a 64-byte slot at 64 times the address's offset in the
// subnet (a sparse file; a slot of zeros is an address never given). A
// claim is only a pointer: the address is taken while that container's
// endpoint file still names it and its owner lock is held, so a claim
// left by a container that stopped, moved or whose program died is simply
// given again. Slots are written in place and never cleared: a new file
// per address (as claims once were) meant an inode allocation in most
// starts (0.1-2 ms here, behind the journal) and, over the life of a
// network, a file per address of its subnet. The slot of the subnet's own
// address, which is never given, holds the address given last (4 bytes):
// where the round-robin goes on.

// claimSize is the size of a claim's slot: a container ID.
const claimSize = 64

// addressClaims opens the network's claims file, making it from the live
// endpoints when the network has none yet (a root from before it, with
// containers running). It is made aside and renamed into place, so an
// allocation never sees it half filled. The caller holds the network's
// lock and closes the file.
func (r *Runtime) addressClaims(n *networkRecord) (*os.File, error) {
	path := filepath.Join(r.endpointsDir(n.ID), "claims")
	if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	eps, err := r.liveEndpoints(n.ID)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(r.endpointsDir(n.ID), 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.OpenFile(path+".new", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600) // a program that died making it left its own
	if err != nil {
		return nil, err
	}
	for _, ep := range eps {
		if !n.Subnet.Contains(ep.Addr.Addr()) {
			continue // not this network's: a claim could not point at it anyway
		}
		if err := writeClaim(tmp, n.Subnet, ep.Addr.Addr(), ep.ContainerID); err != nil {
			tmp.Close()
			return nil, err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		tmp.Close()
		return nil, err
	}
	return tmp, nil
}

// claimOffset is where a's slot starts in the claims file of subnet.
func claimOffset(subnet netip.Prefix, a netip.Addr) int64 {
	base, ip := subnet.Masked().Addr().As4(), a.As4()
	return int64(binary.BigEndian.Uint32(ip[:])-binary.BigEndian.Uint32(base[:])) * claimSize
}

// addressTaken reports whether a live container holds a. An unreadable
// claim counts as taken: giving an address twice is worse than skipping
// one.
func (r *Runtime) addressTaken(n *networkRecord, claims *os.File, a netip.Addr) bool {
	b := make([]byte, claimSize)
	if k, err := claims.ReadAt(b, claimOffset(n.Subnet, a)); k == 0 && errors.Is(err, io.EOF) {
		return false // past the end: never given
	} else if k != claimSize {
		return true
	}
	if b[0] == 0 {
		return false
	}
	id := string(b)
	var ep endpointRecord
	if !validContainerID(id) || readJSON(r.endpointPath(n.ID, id), &ep) != nil || ep.Addr.Addr() != a {
		return false
	}
	return r.endpointOwned(id)
}

// writeClaim records in claims that container id is given address a.
func writeClaim(claims *os.File, subnet netip.Prefix, a netip.Addr, id string) error {
	if !validContainerID(id) {
		return fmt.Errorf("claiming %s: bad container ID %q", a, id)
	}
	if !a.Is4() || !subnet.Contains(a) || a == subnet.Masked().Addr() {
		return fmt.Errorf("claiming %s: not an address of %s a container can have", a, subnet)
	}
	_, err := claims.WriteAt([]byte(id), claimOffset(subnet, a))
	return err
}

// lastGiven reads the address given last from the claims file, or
// returns the subnet's own address when none was (or the record is not
// one of the subnet's).
func lastGiven(claims *os.File, subnet netip.Prefix) netip.Addr {
	var b [4]byte
	if _, err := claims.ReadAt(b[:], 0); err == nil {
		if a := netip.AddrFrom4(b); subnet.Contains(a) {
			return a
		}
	}
	return subnet.Addr()
}

// recordLast records a as the address given last, in place. A lost write
// only moves the round-robin.
func recordLast(claims *os.File, subnet netip.Prefix, a netip.Addr) {
	b := a.As4()
	claims.WriteAt(b[:], claimOffset(subnet, subnet.Addr()))
}

// attachedNetwork reads the network an attachment names: one file, by
// the name recorded with it, checked against the ID (a network removed and
// made again under the same name is another network).
func (r *Runtime) attachedNetwork(a networkAttachment) (*networkRecord, error) {
	n, err := r.readNetwork(a.Name)
	if err == nil && n.ID == a.NetworkID {
		return n, nil
	}
	return nil, fmt.Errorf("%w: network %q (%.12s) was removed", ErrNotFound, a.Name, a.NetworkID)
}

// upBridge makes sure the network's bridge exists and that this Runtime
// holds it: a bridge goes away when its last container leaves and no
// open Runtime that used it remains.
func (r *Runtime) upBridge(ctx context.Context, n *networkRecord) error {
	r.mu.Lock()
	if r.bridges == nil {
		r.bridges = map[string]*os.File{}
	}
	_, held := r.bridges[n.ID]
	r.mu.Unlock()
	name := bridgeName(r.root, n.ID)
	if held && bridge.Exists(name) {
		return nil
	}
	unlock, err := r.store.Lock(ctx, "net-"+n.ID, true)
	if err != nil {
		return err
	}
	defer unlock()
	if !bridge.Exists(name) {
		release, err := hostIPAMLock(ctx)
		if err != nil {
			return err
		}
		defer release()
		if err := r.checkSubnetFree(ctx, n, name); err != nil {
			return err
		}
		if err := bridge.Ensure(name, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), bridgeAliasPrefix+r.root); err != nil {
			return err
		}
		if !n.Internal {
			if err := enableForwarding(); err != nil {
				return err
			}
		}
		if err := nat.AllowForward(); err != nil {
			return fmt.Errorf("letting bridge %s through the host's forward chain: %w", name, err)
		}
		if err := r.applyNAT(ctx); err != nil {
			return err
		}
	}
	if !held && !r.noBridgeHold {
		hold, ok := r.store.TryLockFile("bridge-"+n.ID, false)
		if ok {
			r.mu.Lock()
			r.bridges[n.ID] = hold
			r.mu.Unlock()
		}
	}
	return nil
}

// checkSubnetFree makes sure no host route overlaps the network's subnet
// before its bridge comes up (another root's bridge may have appeared
// since the subnet was chosen). An automatically chosen subnet moves to a
// free one; a subnet the user gave is an error.
func (r *Runtime) checkSubnetFree(ctx context.Context, n *networkRecord, brName string) error {
	routes, err := bridge.HostRoutes()
	if err != nil {
		return err
	}
	if !overlapsAny(n.Subnet, routes, nil) {
		return nil
	}
	if !n.AutoSubnet {
		return fmt.Errorf("network %q: subnet %s overlaps a route of the host; remove the network and give another subnet", n.Name, n.Subnet)
	}
	others, err := r.networkRecords()
	if err != nil {
		return err
	}
	var rest []*networkRecord
	for _, o := range others {
		if o.ID != n.ID {
			rest = append(rest, o)
		}
	}
	p, err := freeSubnet(rest)
	if err != nil {
		return err
	}
	n.Subnet, n.Gateway = p, p.Addr().Next()
	return writeJSONAtomic(r.networkPath(n.Name), n)
}

// attach wires the container's endpoints into its network namespace (the
// child's, before Release), starts its name server and publishes its
// ports.
func (ns *netSetup) attach(ctx context.Context, rec *containerRecord, pid int) error {
	if len(ns.endpoints) == 0 {
		return nil
	}
	nsFile, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return fmt.Errorf("opening the container's network namespace: %w", err)
	}
	defer nsFile.Close()
	if err := ns.wireNS(rec, nsFile); err != nil {
		return err
	}
	if err := ns.reservePorts(rec); err != nil {
		return err
	}
	return ns.publish(ctx, rec)
}

// joinsBridges reports whether the container gets veths of its own (an
// endpoint on each of its networks), known from its config alone: before
// its network is allocated.
func joinsBridges(cfg *containerConfig) bool {
	mode, _ := networkModeOf(cfg)
	return mode == "bridge" && len(cfg.Networks) > 0
}

// wireNS wires the container's endpoints into the network namespace nsFile
// and starts its name server there: attach but for the ports.
func (ns *netSetup) wireNS(rec *containerRecord, nsFile *os.File) error {
	if len(ns.endpoints) == 0 {
		return nil
	}
	r := ns.rt
	fd := int(nsFile.Fd())
	for i, ep := range ns.endpoints {
		mac, _ := net.ParseMAC(ep.MAC)
		e := bridge.Endpoint{Bridge: bridgeName(r.root, ep.NetworkID), HostName: ep.HostIf, Name: ep.Ifname, Addr: ep.Addr, MAC: mac}
		if i == 0 {
			e.Gateway = ep.Gateway // the first network gives the default route
		}
		if err := bridge.Attach(fd, e); err != nil {
			return fmt.Errorf("network %q: %w", ep.NetworkName, err)
		}
	}
	return ns.startDNS(fd, rec)
}

// startDNS opens the container's 127.0.0.11:53 and serves it from this
// process for as long as the container runs.
//
// The socket allows address reuse, so that a name server of the
// container's own can bind 0.0.0.0:53 beside it when it asks for reuse
// too (dnsmasq, unbound, BIND and CoreDNS do): the kernel gives a
// datagram to the socket bound most precisely, so 127.0.0.11:53 stays
// berth's and the rest of port 53 is the container's. Docker instead
// moves its server to a high port behind a DNAT rule in the container's
// namespace; a NAT chain there cost each start ~1 ms here.
func (ns *netSetup) startDNS(nsFD int, rec *containerRecord) error {
	var conn net.PacketConn
	err := bridge.InNamespace(nsFD, func() error {
		var err error
		conn, err = reuseAddr.ListenPacket(context.Background(), "udp4", dns.Addr.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("starting the container's name server: %w", err)
	}
	hostConf, _ := os.ReadFile(hostResolvConf)
	srv := &dns.Server{
		Local:       ns.rt.resolverFor(rec.ID),
		HostServers: dns.Servers(hostConf),
		Reverse:     ns.rt.reverseName,
		Private:     ns.rt.inNetworks,
	}
	for _, s := range rec.Config.DNS {
		if ip, err := netip.ParseAddr(s); err == nil {
			srv.Upstream = append(srv.Upstream, netip.AddrPortFrom(ip, 53).String())
		}
	}
	go srv.ServeUDP(conn)
	ns.closers = append(ns.closers, func() { conn.Close() })
	return nil
}

// reuseAddr listens with SO_REUSEADDR set.
var reuseAddr = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}}

// resolverFor answers the names a container's name server knows: the
// containers and aliases on the networks the container is on, read from
// the endpoints every program of the root writes.
func (r *Runtime) resolverFor(containerID string) func(string) []netip.Addr {
	return func(name string) []netip.Addr {
		nets, err := os.ReadDir(filepath.Join(r.root, "endpoints"))
		if err != nil {
			return nil
		}
		var out []netip.Addr
		for _, n := range nets {
			if _, err := os.Stat(r.endpointPath(n.Name(), containerID)); err != nil {
				continue // not a network of this container
			}
			eps, _ := r.liveEndpoints(n.Name())
			if len(eps) == 0 {
				continue
			}
			// NAME.NETWORK too, as docker answers (and as a PTR question
			// here is answered); the endpoints of a network share its name.
			short, qualified := strings.CutSuffix(name, "."+strings.ToLower(eps[0].NetworkName))
			for _, ep := range eps {
				if ep.answers(name) || qualified && ep.answers(short) {
					out = append(out, ep.Addr.Addr())
				}
			}
		}
		return out
	}
}

// answers reports whether name is one of the endpoint's names: the
// container's name, an alias, its hostname or its short ID.
func (ep *endpointRecord) answers(name string) bool {
	if strings.EqualFold(name, ep.Name) || strings.EqualFold(name, ep.Hostname) || (len(name) >= 12 && strings.HasPrefix(ep.ContainerID, name)) {
		return true
	}
	for _, a := range ep.Aliases {
		if strings.EqualFold(name, a) {
			return true
		}
	}
	return false
}

// publish DNATs the host ports reservePorts reserved to the container's
// first endpoint and records them in its endpoint file.
func (ns *netSetup) publish(ctx context.Context, rec *containerRecord) error {
	if len(rec.Config.Publish) == 0 || len(ns.endpoints) == 0 {
		return nil
	}
	ep := ns.endpoints[0]
	ns.mu.Lock()
	bound := ep.Ports
	ns.mu.Unlock()
	if err := ns.rt.writeEndpoint(ep); err != nil {
		return err
	}
	if err := ns.rt.applyNAT(ctx); err != nil {
		return err
	}
	for _, b := range bound {
		if b.Protocol == "udp" {
			// Best effort: without conntrack over netlink (a module not
			// loaded) the binding works for every flow but one already
			// running.
			hostIP, _ := netip.ParseAddr(b.HostIP)
			nat.ForgetFlows(hostIP, b.HostPort)
		}
	}
	return nil
}

// reservePorts reserves the container's host ports for its first
// endpoint, before publish. A reservation is a socket bound to the host port, held
// by this process while the container runs: a port in use by anything is
// refused, and of two containers publishing one port at once exactly one
// wins. A direct start reserves before the container's program runs and
// publishes the rest (publish) while it starts.
func (ns *netSetup) reservePorts(rec *containerRecord) error {
	if len(rec.Config.Publish) == 0 || len(ns.endpoints) == 0 {
		return nil
	}
	ep := ns.endpoints[0]
	var bound []PortBinding
	for _, p := range rec.Config.Publish {
		hostIP, err := hostIPFor(p.HostIP)
		if err != nil {
			return err
		}
		fd, port, err := reservePort(hostIP, p.HostPort, p.proto())
		if err != nil {
			return err
		}
		ns.closers = append(ns.closers, func() { syscall.Close(fd) })
		b := p
		b.HostIP, b.HostPort, b.Protocol = hostIP.String(), port, p.proto()
		bound = append(bound, b)
	}
	ns.mu.Lock()
	ep.Ports = bound
	ns.mu.Unlock()
	return nil
}

// reservePort binds a socket to ip:port (port 0: a free one) and returns
// it with the port bound.
func reservePort(ip netip.Addr, port uint16, proto string) (int, uint16, error) {
	typ := syscall.SOCK_STREAM
	if proto == "udp" {
		typ = syscall.SOCK_DGRAM
	}
	fd, err := syscall.Socket(syscall.AF_INET, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	sa := &syscall.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		if errors.Is(err, syscall.EADDRINUSE) {
			return -1, 0, fmt.Errorf("%w: publishing %s:%d/%s: the port is already in use on the host", ErrInUse, ip, port, proto)
		}
		return -1, 0, fmt.Errorf("publishing %s:%d/%s: %w", ip, port, proto, err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return -1, 0, err
	}
	return fd, uint16(got.(*syscall.SockaddrInet4).Port), nil
}

// applyNAT rewrites the root's nftables table from every live endpoint and
// every network whose bridge is up.
func (r *Runtime) applyNAT(ctx context.Context) error {
	unlock, err := r.store.Lock(ctx, "nat", true)
	if err != nil {
		return err
	}
	defer unlock()
	recs, err := r.networkRecords()
	if err != nil {
		return err
	}
	var bridges []nat.Bridge
	var ports []nat.Port
	for _, n := range recs {
		name := bridgeName(r.root, n.ID)
		if !bridge.Exists(name) {
			continue
		}
		bridges = append(bridges, nat.Bridge{Name: name, Subnet: n.Subnet, Internal: n.Internal})
		eps, _ := r.liveEndpoints(n.ID)
		for _, ep := range eps {
			for _, p := range ep.Ports {
				hip, _ := netip.ParseAddr(p.HostIP)
				ports = append(ports, nat.Port{HostIP: hip, HostPort: p.HostPort, Proto: p.proto(), Dest: ep.Addr.Addr(), DestPort: p.ContainerPort})
			}
		}
	}
	return nat.Apply(natTable(r.root), r.root, bridges, ports)
}

// teardown releases what the container held: its name server and port
// reservations, its veths and endpoints, and the NAT rules for them.
func (ns *netSetup) teardown() {
	if ns == nil {
		return
	}
	ns.mu.Lock()
	closers, eps := ns.closers, ns.endpoints
	ns.closers, ns.endpoints = nil, nil
	ns.mu.Unlock()
	// The published ports' reservations (and the name server) close last,
	// once the rules no longer send anything to this container: a port
	// released earlier could be taken by another root's container while
	// this root's stale rule still shadowed its binding.
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if len(eps) == 0 {
		return
	}
	r := ns.rt
	tr := newTracer("net-teardown")
	defer tr.done()
	// The veths are not deleted here: deleting a link waits for RCU grace
	// periods (about 25 ms), and the kernel deletes them anyway, in the
	// background, when the container's namespace dies with its last process.
	// Addresses are handed out round-robin, so a new container never gets
	// the address of a veth still being torn down.
	//
	// A namespace can outlive its container, and with it the veth and the
	// address just released: a joiner (container:NAME) keeps it, and so does
	// any socket made in it (Dial). Joiners are known, and their veths go
	// now, which leaves the joiners with their loopback only; a socket is
	// not, so a veth still there a moment later goes then, off the
	// caller's path. That one is known by its index, not its name: the
	// container started again meanwhile (Start) has veths of the same
	// names.
	if r.namespaceShared(eps[0].ContainerID) {
		for _, ep := range eps {
			bridge.Delete(ep.HostIf)
		}
	} else {
		var indexes []int
		for _, ep := range eps {
			if i := bridge.Index(ep.HostIf); i > 0 {
				indexes = append(indexes, i)
			}
		}
		if len(indexes) > 0 {
			go func() {
				time.Sleep(vethGrace)
				for _, i := range indexes {
					bridge.DeleteIndex(i)
				}
			}()
		}
	}
	for _, ep := range eps {
		r.dropEndpoint(ep)
	}
	tr.mark("endpoints")
	ctx := context.Background()
	for _, ep := range eps {
		if len(ep.Ports) > 0 {
			r.applyNAT(ctx) // the bridges' rules stay while the bridges do
			break
		}
	}
	tr.mark("nat")
	for _, ep := range eps {
		r.maybeDownBridge(ctx, ep.NetworkID)
	}
	tr.mark("bridge")
}

// vethGrace is how long the kernel gets to delete a stopped container's
// veths with its namespace before teardown deletes them itself.
const vethGrace = time.Second

// namespaceShared reports whether a running container joined the network
// namespace of the container id (network mode container:ID).
func (r *Runtime) namespaceShared(id string) bool {
	// Joiners leave their IDs in the container's directory (prepareNetwork);
	// those that have stopped since do not count.
	entries, err := os.ReadDir(filepath.Join(r.containerDir(id), "netns-joiners"))
	if err != nil {
		return false
	}
	for _, e := range entries {
		rec, err := r.readRecord(e.Name())
		if err == nil && rec.Config.NetworkMode == "container:"+id && rec.alive() {
			return true
		}
	}
	return false
}

// maybeDownBridge deletes a network's bridge once no container is on it
// and no open Runtime holds it.
func (r *Runtime) maybeDownBridge(ctx context.Context, networkID string) {
	unlock, ok := r.store.TryLock("bridge-"+networkID, true)
	if !ok {
		return
	}
	defer unlock()
	lock, err := r.store.Lock(ctx, "net-"+networkID, true)
	if err != nil {
		return
	}
	defer lock()
	if r.hasLiveEndpoint(networkID) {
		return
	}
	bridge.Delete(bridgeName(r.root, networkID))
	r.applyNAT(ctx)
	dropForwardIfUnused()
}

// dropForwardIfUnused removes berth's rules from the host's forward chain
// once no berth bridge of any root is left on the host. It holds the
// host-wide lock bridges are made under (upBridge): another root's new
// bridge is then either seen here, or lets its traffic through again
// after the removal. Without it, a bridge made between the check and the
// removal found the rules there and was left without them. Where the lock
// cannot be had, the rules stay (harmless; the next bridge to go tries
// again).
func dropForwardIfUnused() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	release, err := hostIPAMLock(ctx)
	if err != nil {
		return
	}
	defer release()
	links, err := net.Interfaces()
	if err != nil {
		return
	}
	for _, l := range links {
		if strings.HasPrefix(l.Name, nat.BridgePrefix) {
			return
		}
	}
	nat.RemoveForward()
}

// releaseBridges lets go of the bridges this Runtime held, deleting those
// no container uses any more.
//
// handed (see nat.HandOff) go to the first bridge's lingering process, or
// are closed.
func (r *Runtime) releaseBridges(handed []*os.File) {
	r.mu.Lock()
	held := r.bridges
	r.bridges = nil
	r.mu.Unlock()
	for id, hold := range held {
		if r.bridgeLinger > 0 && r.lingerBridge(id, hold, handed) == nil {
			handed = nil // given
			continue
		}
		hold.Close()
		r.maybeDownBridge(context.Background(), id)
	}
	for _, f := range handed {
		f.Close()
	}
}

// bridgeAliasPrefix starts the alias of every bridge berth makes; the
// root's path follows.
const bridgeAliasPrefix = "berth-root:"

// sweepOrphanBridges deletes the bridges, and the rule tables, of berth
// roots that no longer exist (a test's temporary root removed while a
// program still held its bridge): no program can ever open those roots to
// sweep them. It returns the berth rule tables left on the host.
func sweepOrphanBridges() (tables []string) {
	links, err := bridge.Aliased(nat.BridgePrefix)
	if err != nil {
		// Nothing is known to be an orphan; the root's own table is still
		// the caller's to sweep.
		tables, _ = nat.Tables(nat.TablePrefix)
		return tables
	}
	deleted := false
	live := map[string]bool{} // tables of roots that exist, known from their bridges
	for name, alias := range links {
		root, ok := strings.CutPrefix(alias, bridgeAliasPrefix)
		if !ok || !filepath.IsAbs(root) {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, "locks")); !errors.Is(err, os.ErrNotExist) {
			live[natTable(root)] = true
			continue
		}
		bridge.Delete(name)
		nat.Delete(natTable(root))
		deleted = true
	}
	// A root deleted after its bridges went down (by the root's own
	// programs) but while its table still had rules leaves a table no
	// bridge alias leads to: its owner rule does. (Reading the rules is
	// the dear part, so tables a live bridge explains are skipped.)
	all, _ := nat.Tables(nat.TablePrefix)
	for _, t := range all {
		if !live[t] && orphanTable(t) {
			nat.Delete(t)
			deleted = true
			continue
		}
		tables = append(tables, t)
	}
	if deleted {
		dropForwardIfUnused()
	}
	return tables
}

// orphanTable reports whether rule table t belongs to a root that no
// longer exists, as its owner rule says.
func orphanTable(t string) bool {
	root, err := nat.Owner(t)
	if err != nil || !filepath.IsAbs(root) || t != natTable(root) {
		return false
	}
	_, err = os.Stat(filepath.Join(root, "locks"))
	return errors.Is(err, os.ErrNotExist)
}

// sweepNetworks deletes what dead programs left: endpoints of containers
// no one owns, bridges no one uses, and the rules for them. tables are the
// berth rule tables on the host, as sweepOrphanBridges left them.
func (r *Runtime) sweepNetworks(tables []string) {
	recs, err := r.networkRecords()
	if err != nil || len(recs) == 0 {
		if slices.Contains(tables, natTable(r.root)) {
			nat.Delete(natTable(r.root))
		}
		return
	}
	ctx := context.Background()
	changed := false
	for _, n := range recs {
		deleted, live := r.sweepDeadEndpoints(n.ID)
		changed = changed || deleted
		if !live && bridge.Exists(bridgeName(r.root, n.ID)) {
			r.maybeDownBridge(ctx, n.ID)
		}
	}
	if changed {
		r.applyNAT(ctx)
	}
}

// hostGateway is the address an extra host may name for the host's
// address on the container's first network.
const hostGateway = "host-gateway"

// parseExtraHost reads an extra host, "name:ip" or "name:host-gateway".
func parseExtraHost(h string) (name, ip string, err error) {
	name, ip, ok := strings.Cut(h, ":")
	if !ok || name == "" || hasSpaceOrControl(name) {
		return "", "", fmt.Errorf("%w: extra host %q: want name:ip or name:host-gateway", ErrInvalid, h)
	}
	if ip == hostGateway {
		return name, ip, nil
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return "", "", fmt.Errorf("%w: extra host %q: want name:ip or name:host-gateway", ErrInvalid, h)
	}
	return name, ip, nil
}

// hostsFile is a container's /etc/hosts: localhost, its own address and
// name (with its domain name first, hostname.domainname, where it has
// one), and the extra hosts it was given.
func hostsFile(cfg *containerConfig, ip netip.Addr) string {
	s := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	if !ip.IsValid() {
		ip = netip.AddrFrom4([4]byte{127, 0, 1, 1})
	}
	names := cfg.Hostname
	if cfg.Domainname != "" {
		names = cfg.Hostname + "." + cfg.Domainname + " " + cfg.Hostname
	}
	return s + ip.String() + "\t" + names + "\n" + extraHostLines(cfg.ExtraHosts)
}

// extraHostLines formats --add-host entries ("name:ip").
func extraHostLines(extra []string) string {
	var b strings.Builder
	for _, h := range extra {
		name, ip, _ := strings.Cut(h, ":")
		b.WriteString(ip + "\t" + name + "\n")
	}
	return b.String()
}

// hostResolvConf is the host's resolver configuration (a variable for the
// tests).
var hostResolvConf = "/etc/resolv.conf"

// resolvConf is the container's /etc/resolv.conf, made from the host's
// as docker makes it. Given no DNS settings, a container with the host's
// network gets the host's file as it is, and one without a network the
// host's without the loopback name servers it cannot reach. Otherwise the
// file is made anew: the name servers given (WithDNS) or the host's (the
// loopback ones only with the host's network); on a bridge network the one
// name server is the container's own, 127.0.0.11, which forwards to those
// (see startDNS); the search domains and options given, or the host's (its
// last search or domain line, its last options line, as the resolver
// reads them); on a bridge network ndots:0 unless an ndots option is
// there, so that a container's name is asked for as it is.
func resolvConf(cfg *containerConfig, mode string) []byte {
	host, _ := os.ReadFile(hostResolvConf)
	given := len(cfg.DNS)+len(cfg.DNSSearch)+len(cfg.DNSOptions) > 0
	if mode == "host" && !given {
		return host
	}
	var servers, search, options, kept []string
	for _, line := range strings.Split(string(host), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			switch f[0] {
			case "nameserver":
				if mode != "host" && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
					continue
				}
				servers = append(servers, f[1])
			case "search", "domain":
				search = f[1:]
			case "options":
				options = f[1:]
			}
		}
		kept = append(kept, line)
	}
	if mode == "none" && !given {
		return []byte(strings.Join(kept, "\n"))
	}
	if len(cfg.DNS) > 0 {
		servers = cfg.DNS
	}
	if mode == "bridge" {
		servers = []string{dns.Addr.Addr().String()}
	}
	if len(cfg.DNSSearch) > 0 {
		search = nil
		if cfg.DNSSearch[0] != "." {
			search = cfg.DNSSearch
		}
	}
	if len(cfg.DNSOptions) > 0 {
		options = cfg.DNSOptions
	}
	if mode == "bridge" && !slices.ContainsFunc(options, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		options = append(slices.Clip(options), "ndots:0")
	}
	var b strings.Builder
	for _, s := range servers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return []byte(b.String())
}

// fixEndpointAddresses checks WithIP's and WithMACAddress' addresses and
// puts them on the container's attachments to the networks they name (as
// WithNetwork names them).
func (r *Runtime) fixEndpointAddresses(ctx context.Context, fixed []fixedAddress, attach []networkAttachment) error {
	for _, f := range fixed {
		n, err := r.lookupNetwork(ctx, f.network)
		i := -1
		if err == nil {
			i = slices.IndexFunc(attach, func(a networkAttachment) bool { return a.NetworkID == n.ID })
		}
		if i < 0 {
			return fmt.Errorf("%w: an address for network %q, which the container does not join", ErrInvalid, f.network)
		}
		a := &attach[i]
		if f.mac != "" {
			hw, err := net.ParseMAC(f.mac)
			if err != nil || len(hw) != 6 || hw[0]&1 != 0 || [6]byte(hw) == [6]byte{} {
				return fmt.Errorf("%w: MAC address %q: want a unicast Ethernet address such as 02:42:ac:11:00:02", ErrInvalid, f.mac)
			}
			a.MAC = hw.String()
			continue
		}
		ip, err := netip.ParseAddr(f.ip)
		switch {
		case n.Name == DefaultNetwork:
			return fmt.Errorf("%w: a fixed address on the default network: only user-defined networks take one, as in docker", ErrInvalid)
		case n.AutoSubnet:
			// berth may move such a subnet, so no address in it is fixed.
			return fmt.Errorf("%w: a fixed address on network %q, whose subnet berth chose: it needs one given when the network is made (WithSubnet), as in docker", ErrInvalid, n.Name)
		case err != nil || !ip.Is4() || !n.Subnet.Contains(ip) || ip == n.Gateway || ip == n.Subnet.Masked().Addr() || ip == lastAddr(n.Subnet):
			return fmt.Errorf("%w: address %q on network %q: want an address of %s other than its first, last and gateway %s", ErrInvalid, f.ip, n.Name, n.Subnet, n.Gateway)
		}
		a.IP = ip
	}
	return nil
}

// hasSpaceOrControl reports white space or a control character in s,
// which would end a word or a line of the files a container is given
// (/etc/hosts, /etc/resolv.conf).
func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(c rune) bool { return c <= ' ' || c == 0x7f }) >= 0
}

// notDomainChar says c has no place in a domain name.
func notDomainChar(c rune) bool {
	return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_')
}

// checkResolverSettings checks WithDNSSearch's domains and
// WithDNSOptions' options, which become words of /etc/resolv.conf.
func checkResolverSettings(search, options []string) error {
	if slices.Contains(search, ".") && len(search) > 1 {
		return fmt.Errorf("%w: DNS search domains %q: \".\" (none) cannot be combined with others", ErrInvalid, search)
	}
	for _, d := range search {
		name := strings.TrimSuffix(d, ".")
		if d == "." {
			continue
		}
		if name == "" || len(name) > 253 || strings.HasPrefix(name, ".") || strings.Contains(name, "..") ||
			strings.IndexFunc(name, notDomainChar) >= 0 {
			return fmt.Errorf("%w: DNS search domain %q: want a domain name", ErrInvalid, d)
		}
	}
	for _, o := range options {
		if o == "" || hasSpaceOrControl(o) {
			return fmt.Errorf("%w: DNS option %q: want one word, such as ndots:2", ErrInvalid, o)
		}
	}
	return nil
}

// Ports returns the container's published ports with the host ports
// chosen (docker port). A container sharing another's network reports
// the other's. A port published on all addresses (HostIP "") is reached
// from the calling program at 127.0.0.1:HostPort.
func (c *Container) Ports(ctx context.Context) ([]PortBinding, error) {
	st, err := c.State(ctx)
	if err != nil {
		return nil, err
	}
	return st.Ports, nil
}

// Dial connects from the calling program to address inside the container's
// network namespace ("localhost:5432" reaches a server listening on the
// container's loopback), without publishing any port. network is "tcp" or
// "udp" (or their "4" and "6" forms). A name in address is resolved by the
// calling program (its /etc/hosts and name servers, as net.Dial would),
// and the addresses it gives are tried in turn from inside the container.
// The container must be running.
func (c *Container) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	ips, port, err := dialTargets(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("dialing %s in container %s: %w", address, c.Name, err)
	}
	f, err := c.netns()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	conn, err := dialInNamespace(ctx, int(f.Fd()), network, ips, port)
	if err != nil {
		return nil, fmt.Errorf("dialing %s in container %s: %w", address, c.Name, err)
	}
	return conn, nil
}

// dialTargets resolves the host part of a Dial's address to addresses,
// here, before anything runs in the container's namespace: net.Dialer
// resolves a name on other threads, and with more than one address it
// dials them on other goroutines, whose sockets would be made in whatever
// namespace their threads are in, the host's.
func dialTargets(ctx context.Context, network, address string) ([]netip.Addr, string, error) {
	family := "ip"
	switch network {
	case "tcp", "udp":
	case "tcp4", "udp4":
		family = "ip4"
	case "tcp6", "udp6":
		family = "ip6"
	default:
		return nil, "", fmt.Errorf("%w: network %q (want tcp or udp)", ErrInvalid, network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if host == "" {
		host = "localhost" // as net.Dial takes ":80"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, port, nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, family, host)
	if err != nil {
		return nil, "", err
	}
	return ips, port, nil
}

// dialInNamespace dials each address in turn, every socket made on a
// thread in the network namespace nsFD, and returns the first connection.
func dialInNamespace(ctx context.Context, nsFD int, network string, ips []netip.Addr, port string) (net.Conn, error) {
	var conn net.Conn
	err := bridge.InNamespace(nsFD, func() error {
		// With a single literal address, net.Dialer makes the socket on
		// this goroutine, which stays on this thread until it returns; the
		// connect it starts finishes wherever the goroutine runs.
		var d net.Dialer
		var errs []error
		for _, ip := range ips {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				conn = c
				return nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return errors.Join(errs...)
	})
	return conn, err
}

// netns opens the network namespace of the running container.
func (c *Container) netns() (*os.File, error) {
	rec, err := c.rt.currentRecord(c.ID)
	if err != nil {
		return nil, err
	}
	if !rec.alive() {
		return nil, fmt.Errorf("%w: container %s", ErrNotRunning, c.Name)
	}
	f, err := os.Open("/proc/" + strconv.Itoa(rec.State.Pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("%w: container %s: %v", ErrNotRunning, c.Name, err)
	}
	return f, nil
}

// WaitListening waits until something in the container listens on port
// (protocol "tcp", the default when empty, or "udp": a bound socket). It
// reads the kernel's socket table of the container's network namespace and
// runs nothing inside the container, so it works for images without a
// shell. It fails with ErrNotRunning if the container stops first (not
// while its restart policy restarts it).
func (c *Container) WaitListening(ctx context.Context, protocol string, port uint16) error {
	if protocol == "" {
		protocol = "tcp"
	}
	if protocol != "tcp" && protocol != "udp" {
		return fmt.Errorf("%w: protocol %q", ErrInvalid, protocol)
	}
	delay := 500 * time.Microsecond
	for {
		rec, err := c.rt.currentRecord(c.ID)
		if err != nil {
			return err
		}
		// One its restart policy restarts may listen yet; whether it
		// restarts is known once its exit is recorded.
		policyMayRestart := rec.State.Restarting || (rec.State.Running && rec.Config.Restart.restarts())
		alive := rec.alive()
		if !alive && !policyMayRestart {
			return fmt.Errorf("%w: container %s stopped before listening on %d/%s", ErrNotRunning, c.Name, port, protocol)
		}
		if alive && listening(rec.State.Pid, protocol, port) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// nameServerSocket is berth's name server's local address as
// /proc/PID/net/udp lists it (the address a host-order word, as the kernel
// prints the raw one).
var nameServerSocket = fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(dns.Addr.Addr().AsSlice()), dns.Addr.Port())

// listening scans /proc/PID/net/{tcp,tcp6,udp,udp6}, which list the
// sockets of PID's network namespace. berth's own name server there
// (127.0.0.11:53) is not the container's.
func listening(pid int, protocol string, port uint16) bool {
	want := fmt.Sprintf(":%04X ", port)
	for _, file := range []string{protocol, protocol + "6"} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/" + file)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) < 4 || !strings.HasSuffix(f[1]+" ", want) || f[1] == nameServerSocket {
				continue
			}
			if protocol == "udp" || f[3] == "0A" { // TCP_LISTEN
				return true
			}
		}
	}
	return false
}

// resolveNetworking turns the network options of Run into the container's
// configuration: network IDs, the mode, and the ports to publish.
func (r *Runtime) resolveNetworking(ctx context.Context, img *Image, o *runConfig, cfg *containerConfig) error {
	mode := o.networkMode
	attach := o.networks
	switch {
	case mode == "" || mode == "default" || mode == DefaultNetwork:
		mode = "bridge"
		if len(attach) == 0 {
			attach = []networkAttachment{{NetworkID: DefaultNetwork, Name: DefaultNetwork}}
		}
	case mode == "none" || mode == "host":
		if len(attach) > 0 {
			return fmt.Errorf("%w: network mode %q cannot be combined with WithNetwork", ErrInvalid, mode)
		}
	case strings.HasPrefix(mode, "container:"):
		if len(attach) > 0 {
			return fmt.Errorf("%w: network mode %q cannot be combined with WithNetwork", ErrInvalid, mode)
		}
		var err error
		if mode, err = r.containerMode(ctx, "network", mode); err != nil {
			return err
		}
	default:
		attach = append([]networkAttachment{{NetworkID: mode, Name: mode}}, attach...)
		mode = "bridge"
	}
	cfg.NetworkMode = mode
	var nets []*networkRecord // attach's, looked up
	for _, a := range attach {
		n, err := r.lookupNetwork(ctx, a.NetworkID)
		if err != nil {
			return err
		}
		nets = append(nets, n)
		for _, have := range cfg.Networks {
			if have.NetworkID == n.ID {
				return fmt.Errorf("%w: network %q given twice", ErrInvalid, n.Name)
			}
		}
		cfg.Networks = append(cfg.Networks, networkAttachment{NetworkID: n.ID, Name: n.Name, Aliases: a.Aliases})
	}
	if err := r.fixEndpointAddresses(ctx, o.fixedAddresses, cfg.Networks); err != nil {
		return err
	}
	var gateway netip.Addr // the host's address on the first network (host-gateway)
	switch {
	case len(nets) > 0:
		gateway = nets[0].Gateway
	case mode == "host":
		gateway = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	var hosts []string
	for _, h := range o.extraHosts {
		name, ip, err := parseExtraHost(h)
		if err != nil {
			return err
		}
		if ip == hostGateway {
			if !gateway.IsValid() {
				return fmt.Errorf("%w: extra host %q: host-gateway needs a bridge network or the host's", ErrInvalid, h)
			}
			ip = gateway.String()
		}
		hosts = append(hosts, name+":"+ip)
	}
	for _, s := range o.dns {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%w: DNS server %q: want an IP address", ErrInvalid, s)
		}
	}
	if err := checkResolverSettings(o.dnsSearch, o.dnsOptions); err != nil {
		return err
	}
	if strings.HasPrefix(mode, "container:") && len(o.dns)+len(o.dnsSearch)+len(o.dnsOptions)+len(hosts) > 0 {
		// The files are the other container's, as its network is.
		return fmt.Errorf("%w: conflicting options: DNS settings or extra hosts and the network mode container", ErrInvalid)
	}
	cfg.ExtraHosts, cfg.DNS, cfg.DNSSearch, cfg.DNSOptions = hosts, o.dns, o.dnsSearch, o.dnsOptions
	for _, spec := range o.publish {
		b, err := ParsePortBinding(spec)
		if err != nil {
			return err
		}
		b.Protocol = b.proto()
		cfg.Publish = append(cfg.Publish, b)
	}
	if o.publishAll {
		for _, p := range cfg.ExposedPorts {
			b, err := ParsePortBinding(p)
			if err != nil {
				return fmt.Errorf("image EXPOSE %q: %w", p, err)
			}
			b.Protocol = b.proto()
			// A port given with WithPublish is published as given only
			// (docker run -p 8080:80 -P).
			if !slices.ContainsFunc(cfg.Publish, func(have PortBinding) bool {
				return have.ContainerPort == b.ContainerPort && have.Protocol == b.Protocol
			}) {
				cfg.Publish = append(cfg.Publish, b)
			}
		}
	}
	if len(cfg.Publish) > 0 && mode != "bridge" {
		return fmt.Errorf("%w: ports cannot be published with network mode %q", ErrInvalid, o.networkMode)
	}
	if len(cfg.Publish) > 0 && len(nets) > 0 && nets[0].Internal {
		// Ports are published through the first network, and an internal
		// network has no way in from the host (docker publishes nothing
		// there, silently).
		return fmt.Errorf("%w: ports cannot be published on internal network %q (list a network that is not internal first)", ErrInvalid, nets[0].Name)
	}
	return nil
}

// reverseName names the container holding ip on one of the root's
// networks (its name, for PTR questions).
func (r *Runtime) reverseName(ip netip.Addr) (string, bool) {
	recs, _ := r.networkRecords()
	for _, n := range recs {
		if !n.Subnet.Contains(ip) {
			continue
		}
		eps, _ := r.liveEndpoints(n.ID)
		for _, ep := range eps {
			if ep.Addr.Addr() == ip {
				return ep.Name + "." + n.Name, true
			}
		}
	}
	return "", false
}

// inNetworks reports whether ip lies in one of the root's networks.
func (r *Runtime) inNetworks(ip netip.Addr) bool {
	recs, _ := r.networkRecords()
	for _, n := range recs {
		if n.Subnet.Contains(ip) {
			return true
		}
	}
	return false
}

// enableForwarding switches on IPv4 forwarding, as docker does when its
// first bridge comes up: without it, containers reach neither the outside
// nor each other's published ports through the host.
func enableForwarding() error {
	const knob = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(knob); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(knob, []byte("1"), 0); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding: %w", err)
	}
	return nil
}
