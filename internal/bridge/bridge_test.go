package bridge

import (
	"fmt"
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
