package nat

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/google/nftables"
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
