package bridge

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
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
	if os.Geteuid() != 0 {
		t.Skip("creating a link needs root")
	}
	name := fmt.Sprintf("bm%d", os.Getpid()%1000000)
	if err := Ensure(name, netip.MustParsePrefix("10.254.77.1/24"), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(name) })
	br, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
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
	if br, err = netlink.LinkByName(name); err != nil {
		t.Fatal(err)
	}
	if got := br.Attrs().HardwareAddr; !bytes.Equal(got, before) {
		t.Fatalf("bridge address after a port with %s joined: %s, want %s unchanged", low, got, before)
	}
}
