package nat

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Tables reads its own dump of table names: it must list what nftables
// itself lists, a new table as soon as it exists, and no table once it is
// gone.
func TestTables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: nftables needs root")
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("berthtest%d", os.Getpid())
	tbl := c.AddTable(&nftables.Table{Name: name, Family: nftables.TableFamilyIPv4})
	// An inet table, whose name starts the same, is not an IPv4 one.
	inet := c.AddTable(&nftables.Table{Name: name + "x", Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// One batch each: a batch fails whole, and tbl may be gone already.
		for _, x := range []*nftables.Table{tbl, inet} {
			c.DelTable(x)
			c.Flush()
		}
	})

	got, err := Tables("")
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range want {
		names = append(names, w.Name)
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("Tables(\"\") = %q, nftables lists %q", got, names)
	}
	if got, err := Tables(name); err != nil || !slices.Equal(got, []string{name}) {
		t.Errorf("Tables(%q) = %q, %v; want just it", name, got, err)
	}
	if got, err := Tables(name + "-no"); err != nil || len(got) != 0 {
		t.Errorf("Tables(%q) = %q, %v; want none", name+"-no", got, err)
	}

	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := Tables(name); err != nil || len(got) != 0 {
		t.Errorf("Tables(%q) after deleting it = %q, %v", name, got, err)
	}
}

// Apply changes a table by what differs: rules it still wants stay (the
// same handles), new ones are added, unwanted ones (a port no longer
// published, a rule without a key from an older berth) deleted; a table
// whose chain was deleted by hand is made anew.
func TestApplyIncremental(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: nftables needs root")
	}
	table := fmt.Sprintf("berthtest-apply%d", os.Getpid())
	t.Cleanup(func() { Delete(table) })
	bridges := []Bridge{{Name: "berthtest0", Subnet: netip.MustParsePrefix("10.231.7.0/24")}}
	port := func(n uint16) Port {
		return Port{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: n, Proto: "tcp", Dest: netip.MustParseAddr("10.231.7.2"), DestPort: 80}
	}
	mustApply := func(ports ...Port) map[ruleID][]uint64 {
		t.Helper()
		if err := Apply(table, "/owner", bridges, ports); err != nil {
			t.Fatal(err)
		}
		have, err := ruleKeys(table)
		if err != nil {
			t.Fatal(err)
		}
		// Exactly the rules render gives, each once.
		want := map[ruleID]bool{}
		for _, r := range render(baseChains(&nftables.Table{Name: table}), "/owner", bridges, ports) {
			want[ruleID{r.chain.Name, r.key}] = true
		}
		for id, hs := range have {
			if !want[id] || len(hs) != 1 {
				t.Errorf("rule %q in %s: %d in the table, wanted: %t", id.key, id.chain, len(hs), want[id])
			}
		}
		for id := range want {
			if len(have[id]) == 0 {
				t.Errorf("rule %q missing from %s", id.key, id.chain)
			}
		}
		return have
	}
	dnat := func(n uint16) ruleID {
		return ruleID{"prerouting", fmt.Sprintf("port 127.0.0.1 %d/tcp to 10.231.7.2:80", n)}
	}

	first := mustApply(port(30001))
	second := mustApply(port(30001), port(30002))
	if !slices.Equal(first[dnat(30001)], second[dnat(30001)]) {
		t.Errorf("publishing a second port re-made the first's rule: handles %v, then %v", first[dnat(30001)], second[dnat(30001)])
	}
	third := mustApply(port(30002))
	if !slices.Equal(second[dnat(30002)], third[dnat(30002)]) {
		t.Errorf("unpublishing the first port re-made the second's rule: handles %v, then %v", second[dnat(30002)], third[dnat(30002)])
	}

	// A rule without a key (an older berth's) goes; a chain deleted by
	// hand comes back.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	c.AddRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: "prerouting", Table: tbl}, Exprs: verdict(expr.VerdictAccept)})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	mustApply(port(30002))
	raw := &nftables.Chain{Name: "raw", Table: tbl}
	c.FlushChain(raw)
	c.DelChain(raw)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	mustApply(port(30002), port(30003))
}
