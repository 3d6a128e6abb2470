// Package bridge is berth's link plumbing, the pure-Go equivalent of
// `ip link add type bridge`, `ip link add type veth peer netns`, `ip addr
// add` and `ip route add default` inside a container's network namespace. It
// talks netlink through vishvananda/netlink and never runs a tool.
package bridge

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/nldump"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Ensure makes the bridge name, with gateway (e.g. 10.99.0.1/24) as its
// address, and brings it up. It is idempotent and safe to race: a bridge
// made meanwhile by another process is used. route_localnet is switched on
// for the bridge alone, so that a port published on 127.0.0.1 can be DNATed
// out of it (docker does the same when its userland proxy is off).
//
// The bridge is given an address of its own, as docker gives its bridges.
// A bridge without one takes the lowest address of its ports, so it would
// change whenever a container joins or leaves, and containers that had
// learned the gateway's old address would send their replies nowhere until
// their neighbour entry expired (seconds).
//
// alias is written as the link's alias (`ip link show` prints it), so that
// what made the bridge can be found from the link alone: Aliased lists
// the bridges with their aliases.
func Ensure(name string, gateway netip.Prefix, alias string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if !isNotFound(err) {
			return fmt.Errorf("looking up bridge %s: %w", name, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: randomMAC()}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("looking up bridge %s: %w", name, err)
		}
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s exists and is a %s, not a bridge", name, link.Type())
	}
	if alias != "" && link.Attrs().Alias != alias {
		if err := netlink.LinkSetAlias(link, alias); err != nil {
			return fmt.Errorf("naming bridge %s: %w", name, err)
		}
	}
	addr := &netlink.Addr{IPNet: prefixNet(gateway)}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("addressing bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up bridge %s: %w", name, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+name+"/route_localnet", []byte("1"), 0); err != nil {
		return fmt.Errorf("route_localnet on %s: %w", name, err)
	}
	return nil
}

// randomMAC is a random unicast, locally administered Ethernet address.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// Delete removes the link name; a missing link is not an error. The
// veths still attached to a bridge are detached by the kernel.
func Delete(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting link %s: %w", name, err)
	}
	return nil
}

// DeletePrefixed deletes every link of the host whose name starts with
// prefix.
func DeletePrefixed(prefix string) error {
	links, err := netlink.LinkList()
	// A dump that links changed under (the kernel's NLM_F_DUMP_INTR) is
	// asked again.
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 10; try++ {
		links, err = netlink.LinkList()
	}
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
				return fmt.Errorf("deleting link %s: %w", l.Attrs().Name, err)
			}
		}
	}
	return nil
}

// Index is the index of the host's link name, or 0 when there is none.
func Index(name string) int {
	index, _, err := indexAndMTU(name)
	if err != nil {
		return 0
	}
	return index
}

// DeleteIndex removes the link whose index is index, if there still is
// one: unlike a name, which a new link can take as soon as the old one
// goes, an index is not handed out again soon.
func DeleteIndex(index int) error {
	err := netlink.LinkDel(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting link %d: %w", index, err)
	}
	return nil
}

// Exists reports whether a link called name exists on the host.
func Exists(name string) bool {
	_, _, err := indexAndMTU(name)
	return err == nil
}

// indexAndMTU returns the index and MTU of the host's interface name,
// through two ioctls: a netlink lookup would fetch and decode every
// attribute and statistic of the link.
func indexAndMTU(name string) (index, mtu int, err error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, 0, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, 0, err
	}
	index = int(ifr.Uint32())
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, 0, err
	}
	return index, int(ifr.Uint32()), nil
}

// Endpoint is one interface of a container on a bridge.
type Endpoint struct {
	Bridge   string           // host bridge the host end joins
	HostName string           // host end of the veth pair
	Name     string           // the interface inside the container, "eth0"
	Addr     netip.Prefix     // the container's address and subnet
	Gateway  netip.Addr       // default route; invalid for no default route
	MAC      net.HardwareAddr // the container end's address
}

// Attach creates the veth pair of ep with its container end directly in
// the network namespace open as nsFD, addresses it, brings it and the
// namespace's loopback up and adds the default route. On failure nothing
// is left on the host.
func Attach(nsFD int, ep Endpoint) (retErr error) {
	brIndex, brMTU, err := indexAndMTU(ep.Bridge)
	if err != nil {
		return fmt.Errorf("looking up bridge %s: %w", ep.Bridge, err)
	}
	if err := addVeth(ep, brIndex, brMTU, nsFD); err != nil {
		return fmt.Errorf("creating veth %s: %w", ep.HostName, err)
	}
	defer func() {
		if retErr != nil {
			Delete(ep.HostName)
		}
	}()
	h, err := netlink.NewHandleAt(netns.NsHandle(nsFD), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the container's namespace: %w", err)
	}
	defer h.Close()
	// The name server listens on lo, which a child stage brings up only
	// later. Loopback is interface 1 in every namespace (LOOPBACK_IFINDEX):
	// no lookup.
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	link, err := h.LinkByName(ep.Name)
	if err != nil {
		return fmt.Errorf("finding %s in the container: %w", ep.Name, err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(ep.Addr)}); err != nil {
		return fmt.Errorf("addressing %s: %w", ep.Name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", ep.Name, err)
	}
	if ep.Gateway.IsValid() {
		gw := net.IP(ep.Gateway.AsSlice())
		if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("default route via %s: %w", ep.Gateway, err)
		}
	}
	return nil
}

// addVeth creates ep's veth pair in one request: the host end, named
// ep.HostName, up and on the bridge whose index is brIndex; the container
// end, named ep.Name with the address ep.MAC, down, in the namespace open
// as nsFD; both with the bridge's MTU. (netlink.LinkAdd takes three
// requests for less: the pair, a lookup of the new link by name and its
// master; bringing the host end up was a fourth.)
func addVeth(ep Endpoint, brIndex, mtu, nsFD int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	host := nl.NewIfInfomsg(unix.AF_UNSPEC)
	host.Flags, host.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(host)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(ep.HostName)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(brIndex))))
	req.AddData(nl.NewRtAttr(unix.IFLA_TXQLEN, nl.Uint32Attr(0))) // as netlink.LinkAdd and docker make them
	// One queue each way, asked for: a veth made with as many as there
	// are CPUs is cut to one real queue once registered, and each cut
	// waits out an expedited RCU grace period (synchronize_net), four per
	// pair; 1.4 ms per container here, the largest single wait of a start.
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1)))
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1)))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peer := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC) // down: veth opens an end only once its peer is linked (ENOTCONN)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(ep.Name))
	peer.AddRtAttr(unix.IFLA_TXQLEN, nl.Uint32Attr(0))
	peer.AddRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1))
	peer.AddRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1))
	peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu)))
	if ep.MAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(ep.MAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nsFD)))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// Detach deletes the container interface name from the namespace open as
// nsFD; its host end goes with it.
func Detach(nsFD int, name string) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(nsFD), unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	return h.LinkDel(link)
}

// InNamespace runs fn on a thread that has joined the network namespace
// open as nsFD: sockets fn creates belong to that namespace and keep
// working from any thread afterwards. Should the thread fail to return to
// its namespace, it is discarded rather than reused.
func InNamespace(nsFD int, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("joining the container's network namespace: %w", err)
	}
	fnErr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return fmt.Errorf("returning to the host's network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// HostRoutes lists the IPv4 destinations the host routes anywhere, so that
// a new subnet can avoid them.
func HostRoutes() ([]netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route overlaps everything and blocks nothing
		}
		if p, ok := netipPrefix(r.Dst); ok && p.Bits() > 0 {
			out = append(out, p)
		}
	}
	return out, nil
}

// HostAddrs lists the host's own IPv4 addresses.
func HostAddrs() ([]netip.Addr, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			out = append(out, ip)
		}
	}
	return out, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	bits := p.Addr().BitLen()
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip, ones), true
}

// Aliased maps the names of the host's bridges starting with prefix to
// their aliases. Every program opening a root asks, so it reads one raw
// link dump for the two attributes it needs rather than decoding every
// link in full, and has the kernel leave out other kinds of link and
// every link's statistics (a kernel without either filter ignores it):
// a fresh program's dump took 243 -> 155 µs here, a second one 130 -> 49
// µs (medians of five, with five links on the host).
func Aliased(prefix string) (map[string]string, error) {
	msgs, err := nldump.Dump(unix.NETLINK_ROUTE, unix.RTM_GETLINK, bridgeDumpRequest)
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	out := map[string]string{}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return nil, fmt.Errorf("listing links: %w", err)
		}
		var name, alias string
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				name = cString(a.Value)
			case unix.IFLA_IFALIAS:
				alias = cString(a.Value)
			}
		}
		if strings.HasPrefix(name, prefix) {
			out[name] = alias
		}
	}
	return out, nil
}

// bridgeDumpRequest is an RTM_GETLINK dump request's payload for every
// bridge (AF_UNSPEC), without statistics.
var bridgeDumpRequest = func() []byte {
	const skipStats = 1 << 3 // RTEXT_FILTER_SKIP_STATS
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.ZeroTerminated("bridge"))
	b := make([]byte, unix.SizeofIfInfomsg)
	b = append(b, nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(skipStats)).Serialize()...)
	return append(b, info.Serialize()...)
}()

// cString is a netlink string attribute without its terminating NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
