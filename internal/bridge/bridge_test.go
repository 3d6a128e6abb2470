package bridge

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A bare bridge (no address, down): Aliased and Exists must see it,
// with its alias, and stop seeing it once it is gone.
func TestAliasedAndExists(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a link needs root")
	}
	name := fmt.Sprintf("bt%d", os.Getpid()%1000000)
	link := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(link) })
	if err := netlink.LinkSetAlias(link, "berth-root:/some/where"); err != nil {
		t.Fatal(err)
	}

	got, err := Aliased("bt")
	if err != nil {
		t.Fatal(err)
	}
	if got[name] != "berth-root:/some/where" {
		t.Fatalf("Aliased(bt) = %q, want %s with its alias", got, name)
	}
	if _, ok := got["lo"]; ok {
		t.Fatalf("Aliased(bt) = %q: lo does not start with the prefix", got)
	}
	if !Exists(name) || !Exists("lo") {
		t.Fatalf("Exists(%s) = %v, Exists(lo) = %v; want both true", name, Exists(name), Exists("lo"))
	}

	if err := netlink.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatalf("Exists(%s) after deleting it = true", name)
	}
	if got, err := Aliased("bt"); err != nil || len(got) != 0 {
		t.Fatalf("Aliased(bt) after deleting %s = %q, %v", name, got, err)
	}
	if Exists("no-such-link-x") || Exists("name-longer-than-ifnamsiz-allows") {
		t.Fatal("Exists is true for links that cannot exist")
	}
}

// A bridge Ensure made keeps its own hardware address when a port with a
// lower one joins: a bridge left to take its ports' lowest address changes
// it as containers come and go, and containers that learned the gateway's
// old address lose their replies.
func TestEnsureFixesTheBridgeAddress(t *testing.T) {
	name, br := testBridge(t, "bm", "10.254.77.1/24")
	before := br.Attrs().HardwareAddr
	if len(before) != 6 || before[0]&0x03 != 0x02 {
		t.Fatalf("bridge address %s: want a unicast, locally administered one", before)
	}

	low := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: name + "a", HardwareAddr: low, MasterIndex: br.Attrs().Index},
		PeerName:  name + "b",
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(name + "a") })
	if err := netlink.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	br, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := br.Attrs().HardwareAddr; !bytes.Equal(got, before) {
		t.Fatalf("bridge address after a port with %s joined: %s, want %s unchanged", low, got, before)
	}
}

// Attach wires a container end into a fresh namespace: the host end on
// the bridge, up, with the bridge's MTU; the container end up, with its
// hardware address, address and default route; the namespace's loopback
// up. A second Attach of the same names fails and leaves the first alone.
func TestAttach(t *testing.T) {
	name, br := testBridge(t, "ba", "10.254.78.1/24")
	if err := netlink.LinkSetMTU(br, 1400); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t)
	ep := Endpoint{
		Bridge: name, HostName: name + "h", Name: "eth0",
		Addr: netip.MustParsePrefix("10.254.78.7/24"), Gateway: netip.MustParseAddr("10.254.78.1"),
		MAC: net.HardwareAddr{0x02, 0x42, 10, 254, 78, 7},
	}
	if err := Attach(int(ns.Fd()), ep); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(ep.HostName) })

	host, err := netlink.LinkByName(ep.HostName)
	if err != nil {
		t.Fatal(err)
	}
	if a := host.Attrs(); a.MasterIndex != br.Attrs().Index || a.Flags&net.FlagUp == 0 || a.MTU != 1400 || a.TxQLen != 0 {
		t.Errorf("host end: master %d, flags %v, MTU %d, txqueuelen %d; want master %d, up, MTU 1400, txqueuelen 0", a.MasterIndex, a.Flags, a.MTU, a.TxQLen, br.Attrs().Index)
	}
	// One queue each way, made so (not cut down from one per CPU, which
	// waits out grace periods): the device has no others at all.
	if a := host.Attrs(); a.NumTxQueues != 1 || a.NumRxQueues != 1 {
		t.Errorf("host end: %d transmit and %d receive queues; want 1 and 1", a.NumTxQueues, a.NumRxQueues)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctr, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if a := ctr.Attrs(); a.Flags&net.FlagUp == 0 || a.MTU != 1400 || a.TxQLen != 0 || !bytes.Equal(a.HardwareAddr, ep.MAC) {
		t.Errorf("container end: flags %v, MTU %d, txqueuelen %d, address %s; want up, 1400, 0, %s", a.Flags, a.MTU, a.TxQLen, a.HardwareAddr, ep.MAC)
	}
	if a := ctr.Attrs(); a.NumTxQueues != 1 || a.NumRxQueues != 1 {
		t.Errorf("container end: %d transmit and %d receive queues; want 1 and 1", a.NumTxQueues, a.NumRxQueues)
	}
	addrs, err := h.AddrList(ctr, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.254.78.7/24" {
		t.Errorf("container end's addresses: %v, %v; want 10.254.78.7/24", addrs, err)
	}
	routes, err := h.RouteList(ctr, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	gw := false
	for _, r := range routes {
		def := r.Dst == nil
		if r.Dst != nil {
			ones, _ := r.Dst.Mask.Size()
			def = ones == 0
		}
		gw = gw || (def && r.Gw.Equal(net.ParseIP("10.254.78.1")))
	}
	if !gw {
		t.Errorf("no default route via 10.254.78.1 in %v", routes)
	}
	if lo, err := h.LinkByIndex(1); err != nil || lo.Attrs().Name != "lo" || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("interface 1 of the namespace: %v, %v; want lo, up", lo, err)
	}

	if err := Attach(int(ns.Fd()), ep); err == nil {
		t.Fatal("a second Attach of the same names succeeded")
	}
	if !Exists(ep.HostName) {
		t.Fatal("a failed second Attach deleted the first's host end")
	}
}

// testBridge makes a bridge with Ensure, named prefix and this process's
// ID, with the gateway address gw, and deletes it when the test ends. It
// skips the test without root.
func testBridge(t *testing.T, prefix, gw string) (string, netlink.Link) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating a link needs root")
	}
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%1000000)
	if err := Ensure(name, netip.MustParsePrefix(gw), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(name) })
	br, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return name, br
}

// newNamespace makes a network namespace on a thread of its own, which
// then ends, and returns it open; it goes when the test ends.
func newNamespace(t *testing.T) *os.File {
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		ch <- result{f, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.f.Close() })
	return r.f
}
