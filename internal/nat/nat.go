// Package nat renders berth's packet rules into one nftables table per
// berth root, with google/nftables (pure Go, no `nft` or `iptables`
// binary). Every Apply brings the table, in one netlink transaction, to
// the complete list of bridges and published ports: a rule of a container
// that is gone can never outlive the next Apply, so a stale rule never
// shadows a new binding, and sweeping after a crash is one more Apply.
package nat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/berth-dev/berth/internal/nldump"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BridgePrefix starts the name of every bridge berth makes; the rules that
// keep networks apart match it.
const BridgePrefix = "berth"

// TablePrefix starts the name of every table berth makes.
const TablePrefix = "berth-"

// Bridge is a berth network's bridge.
type Bridge struct {
	Name   string
	Subnet netip.Prefix
	// Internal networks reach neither the outside nor the host's other
	// interfaces: no masquerade, and the forward chain drops what leaves.
	Internal bool
}

// Port is one published port: traffic to HostIP (any local address when
// invalid) on HostPort is sent to Dest:DestPort.
type Port struct {
	HostIP   netip.Addr
	HostPort uint16
	Proto    string // "tcp" or "udp"
	Dest     netip.Addr
	DestPort uint16
}

// Apply makes table hold exactly the rules for bridges and ports; with
// neither, the table is deleted. Each call is one transaction, so no
// packet sees a half-made table.
//
// Every rule carries a key naming what it is for (its user data), and
// Apply adds the rules the table lacks and deletes the ones no longer
// wanted, keeping the others: publishing a port adds two rules and
// deletes none. A deletion costs the commit an RCU grace period or more
// (7-23 ms here, as did re-making the table each time, which unregistered
// its chains' hooks); an addition ~0.3 ms.
func Apply(table, owner string, bridges []Bridge, ports []Port) error {
	if len(bridges) == 0 && len(ports) == 0 {
		return Delete(table)
	}
	have, err := ruleKeys(table)
	if err != nil {
		return fmt.Errorf("reading nftables table %s: %w", table, err)
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	err = transact(func(c *nftables.Conn) error { return commit(c, t, have, false, owner, bridges, ports) })
	if err != nil && have != nil {
		// A table changed by hand (a chain deleted, say): made anew.
		err = transact(func(c *nftables.Conn) error { return commit(c, t, nil, true, owner, bridges, ports) })
	}
	if err != nil {
		return fmt.Errorf("writing nftables table %s: %w", table, err)
	}
	return nil
}

// The process keeps its netfilter netlink sockets open, one for
// transactions and one for dumps. Closing such a socket while a committed
// deletion's objects await their RCU grace period makes the closer wait
// that period out (the kernel's nft_rcv_nl_event flushes the destroy
// work): a socket per transaction made every transaction with a deletion
// wait 7-23 ms in its close, as the end of a container with published
// ports did (10 ms, in the off-CPU profile of berth run --rm -p). Kept
// open, the grace period passes in the background; a process that exits
// within it still waits for the rest as its sockets close.
var (
	connMu       sync.Mutex
	conn         *nftables.Conn  // nil until the first transaction, and after a failed one
	connRaw      syscall.RawConn // conn's socket
	lastDeletion time.Time       // of the last transaction that deleted anything

	dumpMu sync.Mutex
	dumpFD = -1
)

// transact runs fn, which queues messages on c and flushes them, on the
// process's connection, one caller at a time. After an error the
// connection is dropped: it may hold unread replies or a sticky error.
func transact(fn func(c *nftables.Conn) error) error {
	connMu.Lock()
	defer connMu.Unlock()
	if conn == nil {
		c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(nc *mnl.Conn) error {
			connRaw, _ = nc.SyscallConn()
			return nil
		}))
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		conn = c
	}
	err := fn(conn)
	if err != nil {
		conn.CloseLasting()
		conn, connRaw = nil, nil
	}
	return err
}

// deleted notes that a transaction with deletions was committed (see
// HandOff).
func deleted() { lastDeletion = time.Now() }

// HandOff is for a program about to exit: when a deletion was committed in
// the last second, it returns duplicates of the process's netfilter
// sockets and closes the process's own, which then close without waiting
// (the duplicates hold the sockets open), and otherwise nil. Whoever takes
// the duplicates keeps them until the grace period is surely over (a
// lingering bridge's process keeps them for seconds), or closes them and
// waits.
func HandOff() []*os.File {
	connMu.Lock()
	defer connMu.Unlock()
	dumpMu.Lock()
	defer dumpMu.Unlock()
	if time.Since(lastDeletion) > time.Second {
		return nil
	}
	var out []*os.File
	if conn != nil && connRaw != nil {
		connRaw.Control(func(fd uintptr) {
			if dup, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); err == nil {
				out = append(out, os.NewFile(uintptr(dup), "nftables"))
			}
		})
		conn.CloseLasting()
		conn, connRaw = nil, nil
	}
	if dumpFD >= 0 {
		out = append(out, os.NewFile(uintptr(dumpFD), "nfnetlink dump"))
		dumpFD = -1
	}
	return out
}

// dump reads one netfilter dump on the process's dump socket. After an
// error the socket is closed: a dump cut short leaves messages behind.
func dump(typ uint16, payload []byte) ([]syscall.NetlinkMessage, error) {
	dumpMu.Lock()
	defer dumpMu.Unlock()
	if dumpFD < 0 {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return nil, err
		}
		dumpFD = fd
	}
	msgs, err := nldump.DumpOn(dumpFD, typ, payload)
	if err != nil && !errors.Is(err, unix.ENOENT) { // ENOENT is a whole answer
		unix.Close(dumpFD)
		dumpFD = -1
	}
	return msgs, err
}

// commit brings table t to the rules for bridges and ports in one
// transaction: it adds those it lacks and deletes the others of have,
// the rules t holds. With have nil, t is made (first deleted, if anew: a
// table changed by hand).
func commit(c *nftables.Conn, t *nftables.Table, have map[ruleID][]uint64, anew bool, owner string, bridges []Bridge, ports []Port) error {
	chains := baseChains(t)
	if have == nil {
		if anew {
			// Adding first makes the delete valid whether or not the
			// table exists.
			c.AddTable(t)
			c.DelTable(t)
		}
		c.AddTable(t)
		for _, ch := range chains {
			c.AddChain(ch)
		}
	}
	wanted := map[ruleID]bool{}
	for _, r := range render(chains, owner, bridges, ports) {
		id := ruleID{r.chain.Name, r.key}
		if wanted[id] {
			continue
		}
		wanted[id] = true
		if len(have[id]) == 0 {
			c.AddRule(&nftables.Rule{Table: t, Chain: r.chain, Exprs: r.exprs, UserData: []byte(r.key)})
		}
	}
	dels := anew
	for id, handles := range have {
		for i, h := range handles {
			if i == 0 && wanted[id] {
				continue // kept
			}
			c.DelRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: id.chain, Table: t}, Handle: h})
			dels = true
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	if dels {
		deleted()
	}
	return nil
}

// ruleID is a rule's chain and key.
type ruleID struct{ chain, key string }

// ruleKeys lists the rules of table by chain and key (their user data),
// with their handles, from one dump; nil when the table does not exist.
func ruleKeys(table string) (map[ruleID][]uint64, error) {
	name := append([]byte(table), 0)
	attr := make([]byte, unix.SizeofNlAttr, unix.SizeofNlAttr+len(name)+unix.NLA_ALIGNTO)
	binary.NativeEndian.PutUint16(attr[0:], uint16(unix.SizeofNlAttr+len(name)))
	binary.NativeEndian.PutUint16(attr[2:], unix.NFTA_RULE_TABLE)
	attr = append(attr, name...)
	for len(attr)%unix.NLA_ALIGNTO != 0 {
		attr = append(attr, 0)
	}
	req := append([]byte{unix.AF_INET, 0, 0, 0}, attr...) // nfgenmsg, then the table
	msgs, err := dump(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETRULE, req)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	have := map[ruleID][]uint64{}
	for _, m := range msgs {
		var id ruleID
		var handle uint64
		if len(m.Data) < sizeofNfgenmsg {
			continue
		}
		for b := m.Data[sizeofNfgenmsg:]; len(b) >= unix.SizeofNlAttr; {
			l := int(binary.NativeEndian.Uint16(b))
			if l < unix.SizeofNlAttr || l > len(b) {
				break
			}
			v := b[unix.SizeofNlAttr:l]
			switch binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
			case unix.NFTA_RULE_CHAIN:
				id.chain = strings.TrimRight(string(v), "\x00")
			case unix.NFTA_RULE_HANDLE:
				if len(v) == 8 {
					handle = binary.BigEndian.Uint64(v)
				}
			case unix.NFTA_RULE_USERDATA:
				id.key = string(v)
			}
			b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
		}
		if id.chain != "" && handle != 0 {
			have[id] = append(have[id], handle)
		}
	}
	return have, nil
}

// Delete removes table; a missing table is not an error.
func Delete(table string) error {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	err := transact(func(c *nftables.Conn) error {
		c.AddTable(t)
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return err
		}
		deleted()
		return nil
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting nftables table %s: %w", table, err)
	}
	return nil
}

// ownerPrefix starts the user data of the rule that names a table's owner.
const ownerPrefix = "berth-root:"

// Owner returns the owner Apply recorded in table (the berth root that
// made it), or "" if it records none. A table has no user data of its own
// here, so a rule carries it: with it a table that outlived its root (a
// root directory deleted by something other than berth) can be told from
// a live one and removed, even once its bridges are gone.
func Owner(table string) (string, error) {
	c, err := nftables.New()
	if err != nil {
		return "", err
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	rules, err := c.GetRules(t, &nftables.Chain{Name: "forward", Table: t})
	if err != nil {
		return "", err
	}
	for _, r := range rules {
		if owner, ok := bytes.CutPrefix(r.UserData, []byte(ownerPrefix)); ok {
			return string(owner), nil
		}
	}
	return "", nil
}

// Tables lists the IPv4 tables whose names start with prefix. Every
// program opening a root asks (its sweep), so it reads one raw dump of
// table names rather than setting up a full nftables connection.
func Tables(prefix string) ([]string, error) {
	req := make([]byte, sizeofNfgenmsg)
	req[0] = unix.AF_INET // nfgenmsg: family, version 0, resource 0
	msgs, err := dump(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETTABLE, req)
	if err != nil {
		return nil, fmt.Errorf("listing nftables tables: %w", err)
	}
	var out []string
	for _, m := range msgs {
		if name := tableName(m.Data); name != "" && strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out, nil
}

// sizeofNfgenmsg is struct nfgenmsg's size: family, version, resource id.
const sizeofNfgenmsg = int(unsafe.Sizeof(unix.Nfgenmsg{}))

// tableName reads NFTA_TABLE_NAME from a table message's payload (an
// nfgenmsg, then attributes).
func tableName(b []byte) string {
	if len(b) < sizeofNfgenmsg {
		return ""
	}
	for b = b[sizeofNfgenmsg:]; len(b) >= unix.SizeofNlAttr; {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofNlAttr || l > len(b) {
			return ""
		}
		if binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == unix.NFTA_TABLE_NAME {
			return strings.TrimRight(string(b[unix.SizeofNlAttr:l]), "\x00")
		}
		b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
	}
	return ""
}

// baseChains are the chains of a berth table, by name.
func baseChains(t *nftables.Table) map[string]*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	chain := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority, typ nftables.ChainType) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: t, Hooknum: hook, Priority: prio, Type: typ, Policy: &accept}
	}
	return map[string]*nftables.Chain{
		"prerouting":  chain("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, nftables.ChainTypeNAT),
		"output":      chain("output", nftables.ChainHookOutput, nftables.ChainPriorityNATDest, nftables.ChainTypeNAT),
		"postrouting": chain("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, nftables.ChainTypeNAT),
		"forward":     chain("forward", nftables.ChainHookForward, nftables.ChainPriorityFilter, nftables.ChainTypeFilter),
		"raw":         chain("raw", nftables.ChainHookPrerouting, nftables.ChainPriorityRaw, nftables.ChainTypeFilter),
		"input":       chain("input", nftables.ChainHookInput, nftables.ChainPriorityFilter, nftables.ChainTypeFilter),
	}
}

// A rule to be, with the key that names what it is for: every input its
// expressions depend on is in the key, so a rule whose key the table
// holds is the same rule.
type rule struct {
	chain *nftables.Chain
	key   string
	exprs []expr.Any
}

// render lists the rules for bridges and ports, in the order a new table
// gets them (added later, a rule goes last in its chain: the accepts that
// must come first in forward are there from the table's first Apply on,
// and every other rule's place among its chain's does not matter).
func render(chains map[string]*nftables.Chain, owner string, bridges []Bridge, ports []Port) []rule {
	pre, output, post := chains["prerouting"], chains["output"], chains["postrouting"]
	fwd, raw, input := chains["forward"], chains["raw"], chains["input"]
	var out []rule
	add := func(ch *nftables.Chain, key string, exprs ...expr.Any) {
		out = append(out, rule{ch, key, exprs})
	}

	// Connections a published port let in pass between networks; replies
	// of anything pass. The first rule carries the table's owner (see
	// Owner).
	add(fwd, ownerPrefix+owner, cat(ctBits(expr.CtKeySTATUS, ipsDstNAT), verdict(expr.VerdictAccept))...)
	add(fwd, "established", cat(ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))...)

	sorted := append([]Port(nil), ports...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].HostPort < sorted[j].HostPort })
	for _, p := range sorted {
		// Published ports are DNATed in the kernel from every local address
		// (or only HostIP), for traffic from outside (prerouting) and from the
		// host itself, 127.0.0.1 included (output): no proxy process copies
		// the bytes.
		var match []expr.Any
		host := "local"
		if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
			match = append(match, ipAddr(16, p.HostIP)...)
			host = p.HostIP.String()
		} else {
			match = append(match, localDest()...)
		}
		match = cat(match, l4(p.Proto, p.HostPort), dnat(p.Dest, p.DestPort))
		key := fmt.Sprintf("port %s %d/%s to %s:%d", host, p.HostPort, p.Proto, p.Dest, p.DestPort)
		add(pre, key, match...)
		add(output, key, match...)
	}

	loopback := netip.MustParsePrefix("127.0.0.0/8")
	for _, b := range bridges {
		in, notIn := ifname(unix.NFT_META_IIFNAME, b.Name, true), ifname(unix.NFT_META_IIFNAME, b.Name, false)
		out, notOut := ifname(unix.NFT_META_OIFNAME, b.Name, true), ifname(unix.NFT_META_OIFNAME, b.Name, false)
		key := func(what string) string {
			return fmt.Sprintf("bridge %s %s internal=%t %s", b.Name, b.Subnet.Masked(), b.Internal, what)
		}
		// Localhost sources DNATed into the bridge and hairpin connections
		// (a container reaching a port the host publishes for its own
		// network) are masqueraded, or replies would bypass the NAT.
		add(post, key("masquerade from loopback"), cat(out, subnet(12, loopback), masq())...)
		add(post, key("masquerade hairpin"), cat(out, subnet(12, b.Subnet), ctBits(expr.CtKeySTATUS, ipsDstNAT), masq())...)
		// A container never reaches the host's loopback, even with
		// route_localnet on its bridge.
		add(raw, key("drop to loopback"), cat(in, subnet(16, loopback), verdict(expr.VerdictDrop))...)
		// Networks are isolated from each other (docker's isolation chains).
		add(fwd, key("isolate"), cat(in, notOut, ifnamePrefix(unix.NFT_META_OIFNAME, BridgePrefix), verdict(expr.VerdictDrop))...)
		if b.Internal {
			// The host's addresses beyond the bridge are the host's other
			// interfaces too: only the gateway's subnet is reachable.
			add(input, key("drop to host"), cat(in, notSubnet(16, b.Subnet), verdict(expr.VerdictDrop))...)
			add(fwd, key("drop out"), cat(in, notOut, verdict(expr.VerdictDrop))...)
			add(fwd, key("drop in"), cat(out, notIn, verdict(expr.VerdictDrop))...)
			continue
		}
		add(post, key("masquerade out"), cat(subnet(12, b.Subnet), notOut, masq())...)
		// Nothing else comes in from beyond the host: a neighbour routing
		// the subnet through the host reaches published ports only (the
		// DNATed accept above), as docker's DROP policy has it.
		add(fwd, key("drop in unpublished"), cat(out, notIn, verdict(expr.VerdictDrop))...)
	}
	return out
}

// ipsDstNAT is the conntrack status bit of a DNATed connection.
const ipsDstNAT = 0x20

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

// ctBits matches a conntrack key with any of bits set.
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, bits)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func ifname(key expr.MetaKey, name string, equal bool) []expr.Any {
	op := expr.CmpOpEq
	if !equal {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifnameBytes(name)},
	}
}

// ifnamePrefix compares only the first bytes of the name, as nft's
// `oifname "berth*"` does.
func ifnamePrefix(key expr.MetaKey, prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)},
	}
}

// subnet matches the IPv4 header's source (offset 12) or destination (16)
// against p.
func subnet(offset uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	a := p.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

// notSubnet is subnet with the comparison negated.
func notSubnet(offset uint32, p netip.Prefix) []expr.Any {
	m := subnet(offset, p)
	cmp := *m[len(m)-1].(*expr.Cmp)
	cmp.Op = expr.CmpOpNeq
	m[len(m)-1] = &cmp
	return m
}

func ipAddr(offset uint32, ip netip.Addr) []expr.Any {
	a := ip.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

// localDest is `fib daddr type local`.
func localDest() []expr.Any {
	typ := make([]byte, 4)
	binary.NativeEndian.PutUint32(typ, unix.RTN_LOCAL)
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: typ},
	}
}

func l4(proto string, port uint16) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		p = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
	}
}

func dnat(ip netip.Addr, port uint16) []expr.Any {
	a := ip.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: be16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func be16(v uint16) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, v)
	return b
}

// forwardTag marks the rules berth adds to a table it does not own.
var forwardTag = []byte("berth")

// AllowForward makes sure a host forward chain that other software owns
// (iptables-nft's "filter FORWARD", which docker leaves with policy drop,
// and which sees bridged frames when br_netfilter is loaded) accepts
// traffic of berth's bridges: a drop there would win over any accept of
// berth's own table. It is a no-op where no such chain exists. Isolation
// and internal networks are still enforced by berth's table, whose drops
// are final.
func AllowForward() error {
	c, t, ch, ours, err := forwardRules()
	if err != nil || ch == nil || len(ours) > 0 {
		return err
	}
	for _, key := range []expr.MetaKey{unix.NFT_META_OIFNAME, unix.NFT_META_IIFNAME} {
		c.InsertRule(&nftables.Rule{Table: t, Chain: ch, UserData: forwardTag,
			Exprs: cat(ifnamePrefix(key, BridgePrefix), verdict(expr.VerdictAccept))})
	}
	return c.Flush()
}

// RemoveForward deletes what AllowForward added.
func RemoveForward() error {
	c, _, _, ours, err := forwardRules()
	if err != nil || len(ours) == 0 {
		return err
	}
	for _, r := range ours {
		c.DelRule(r)
	}
	return c.Flush()
}

// forwardRules finds the foreign forward chain (nil when there is none)
// and the rules berth added to it.
func forwardRules() (*nftables.Conn, *nftables.Table, *nftables.Chain, []*nftables.Rule, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	t, ch, err := foreignForward(c)
	if err != nil || ch == nil {
		return c, nil, nil, nil, err
	}
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return c, nil, nil, nil, err
	}
	var ours []*nftables.Rule
	for _, r := range rules {
		if string(r.UserData) == string(forwardTag) {
			ours = append(ours, r)
		}
	}
	return c, t, ch, ours, nil
}

func foreignForward(c *nftables.Conn) (*nftables.Table, *nftables.Chain, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, nil, err
	}
	for _, ch := range chains {
		if ch.Table.Name == "filter" && ch.Name == "FORWARD" {
			return ch.Table, ch, nil
		}
	}
	return nil, nil, nil
}

// ForgetFlows deletes the kernel's connection-tracking entries of UDP
// datagrams to port (on hostIP, or any address when hostIP is invalid or
// unspecified), as `conntrack -D -p udp --orig-port-dst PORT` does. A UDP
// flow keeps the path conntrack chose for its first datagram while
// datagrams keep coming: to a container since removed, or to the host's
// own socket from before the rule existed. Called once a new binding's
// rule is in place, it makes the flow's next datagram take the rule.
func ForgetFlows(hostIP netip.Addr, port uint16) error {
	f := &netlink.ConntrackFilter{}
	if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
		return err
	}
	if err := f.AddPort(netlink.ConntrackOrigDstPort, port); err != nil {
		return err
	}
	if hostIP.IsValid() && !hostIP.IsUnspecified() {
		if err := f.AddIP(netlink.ConntrackOrigDstIP, hostIP.AsSlice()); err != nil {
			return err
		}
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
		return fmt.Errorf("forgetting tracked udp flows to port %d: %w", port, err)
	}
	return nil
}
