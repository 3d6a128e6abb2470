package berth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
	"github.com/berth-dev/berth/internal/nat"
	"golang.org/x/sys/unix"
)

// serveHTTP starts busybox httpd detached-in-spirit (attached here) in a
// container serving "hello from NAME" on port 80.
func httpServer(t *testing.T, rt *berth.Runtime, name string, opts ...berth.RunOption) *berth.Container {
	t.Helper()
	script := fmt.Sprintf("mkdir -p /www && echo hello from %s > /www/index.html && exec httpd -f -p 80 -h /www", name)
	c := mustRun(t, rt, "busybox", sh(script), append([]berth.RunOption{berth.WithName(name)}, opts...)...)
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitListening(ctx, "tcp", 80); err != nil {
		t.Fatalf("%s never listened on 80: %v", name, err)
	}
	return c
}

// getPublished fetches / from c's one published port through 127.0.0.1.
func getPublished(t *testing.T, c *berth.Container) string {
	t.Helper()
	ports, err := c.Ports(context.Background())
	if err != nil || len(ports) != 1 || ports[0].HostPort == 0 {
		t.Fatalf("Ports of %s = %v, %v; want one bound port", c.Name, ports, err)
	}
	return httpGet(t, fmt.Sprintf("127.0.0.1:%d", ports[0].HostPort))
}

func httpGet(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading from %s: %v", addr, err)
	}
	s := string(b)
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		s = s[i+4:]
	}
	return strings.TrimSpace(s)
}

func TestNetworkDefaultBridge(t *testing.T) {
	rt := busyboxRuntime(t)
	out := mustOutput(t, rt, "busybox", sh("ip -o -4 addr show eth0; ip route; cat /etc/resolv.conf"))
	if !strings.Contains(out, "eth0") || !strings.Contains(out, "default via") || !strings.Contains(out, "nameserver 127.0.0.11") {
		t.Fatalf("container on the default network:\n%s", out)
	}
	n, err := rt.Network(context.Background(), berth.DefaultNetwork)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, " "+n.Subnet.Addr().String()[:strings.LastIndex(n.Subnet.Addr().String(), ".")]) {
		t.Errorf("address not in the default subnet %s:\n%s", n.Subnet, out)
	}
}

func TestNetworkNone(t *testing.T) {
	rt := busyboxRuntime(t)
	out := mustOutput(t, rt, "busybox", sh("ls /sys/class/net"), berth.WithNetworkMode("none"))
	if strings.TrimSpace(out) != "lo" {
		t.Fatalf("--network none has interfaces %q, want only lo", out)
	}
}

// hostServer serves TCP on all of the host's addresses until the test
// ends, calling serve for each connection (closed after it), and returns
// the port.
func hostServer(t *testing.T, serve func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			serve(conn)
			conn.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNetworkHostGateway: --add-host NAME:host-gateway names the host's
// address on the container's network (docker's host.docker.internal), a
// server on the host listening on all addresses answers there, and a
// container without a bridge network or the host's has none to name.
func TestNetworkHostGateway(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	port := hostServer(t, func(c net.Conn) { c.Write([]byte("from the host\n")) })
	n, err := rt.Network(ctx, berth.DefaultNetwork)
	if err != nil {
		t.Fatal(err)
	}
	out := mustOutput(t, rt, "busybox", sh(fmt.Sprintf("grep -w host.docker.internal /etc/hosts | cut -f1; nc host.docker.internal %d", port)),
		berth.WithExtraHosts("host.docker.internal:host-gateway"), berth.WithAutoRemove())
	if want := n.Gateway.String() + "\nfrom the host\n"; out != want {
		t.Errorf("host-gateway on the default network: %q, want %q", out, want)
	}
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithNetworkMode("none"), berth.WithExtraHosts("h:host-gateway")); !errors.Is(err, berth.ErrInvalid) {
		t.Errorf("host-gateway with --network none: %v, want ErrInvalid", err)
	}
}

// TestNetworkSubnetRefused: a subnet the host routes itself (loopback
// above all: 127.0.0.1 on a bridge would shadow the host's own) or one
// that is not an IPv4 CIDR of at most /30 is refused, and nothing is made.
func TestNetworkSubnetRefused(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, cidr := range []string{"127.0.0.0/24", "126.0.0.0/7", "0.0.0.0/0", "0.1.0.0/16", "169.254.7.0/24",
		"224.1.0.0/16", "255.255.255.0/24", "10.0.0.0/31", "fd00::/64", "10.1.2.3"} {
		_, err := rt.CreateNetwork(ctx, "bad", berth.WithSubnet(cidr))
		if !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), strings.Split(cidr, "/")[0][:2]) {
			t.Errorf("subnet %s: got %v, want ErrInvalid naming it", cidr, err)
		}
		if _, err := rt.Network(ctx, "bad"); !errors.Is(err, berth.ErrNotFound) {
			t.Errorf("subnet %s: network exists after the refusal (%v)", cidr, err)
		}
	}
	n, err := rt.CreateNetwork(ctx, "good", berth.WithSubnet("10.231.8.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Subnet.String() != "10.231.8.0/24" {
		t.Errorf("subnet %s, want 10.231.8.0/24", n.Subnet)
	}
	// Idempotent, as Container.Remove and Volume.Remove are.
	for i := range 2 {
		if err := n.Remove(ctx); err != nil {
			t.Errorf("Remove #%d: %v", i+1, err)
		}
	}
}

func TestNetworkNamesAndPublish(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	n, err := rt.CreateNetwork(ctx, "stack")
	if err != nil {
		t.Fatal(err)
	}
	httpServer(t, rt, "web", berth.WithNetwork("stack", "www"), berth.WithPublish("127.0.0.1::80"))
	for _, name := range []string{"web", "www", "web.stack", "www.stack"} {
		out, err := output(t, rt, "busybox", sh("wget -q -O - http://"+name+"/"), berth.WithNetwork("stack"))
		if err != nil || strings.TrimSpace(out) != "hello from web" {
			t.Errorf("wget http://%s/ from the network: %q, %v", name, out, err)
		}
	}
	out, err := output(t, rt, "busybox", sh("nslookup web 127.0.0.11"), berth.WithNetwork("stack"))
	if err != nil || !strings.Contains(out, n.Subnet.Addr().String()[:6]) {
		t.Errorf("nslookup web: %q, %v", out, err)
	}
	c, err := rt.Container(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := getPublished(t, c); got != "hello from web" {
		t.Errorf("through the published port: %q", got)
	}
	conn, err := c.Dial(ctx, "tcp", "127.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
	b, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(b), "hello from web") {
		t.Errorf("Dial: %q", b)
	}
	if err := n.Remove(ctx); !errors.Is(err, berth.ErrInUse) {
		t.Errorf("removing a network in use: %v, want ErrInUse", err)
	}
}

func TestNetworkConnectDisconnect(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	n, err := rt.CreateNetwork(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	web := httpServer(t, rt, "web2", berth.WithNetworkMode("none"))
	if err := n.Connect(ctx, web, "site"); err == nil {
		t.Fatal("Connect of a --network none container succeeded")
	}
	web = httpServer(t, rt, "web3")
	if err := n.Connect(ctx, web, "site"); err != nil {
		t.Fatal(err)
	}
	if err := n.Connect(ctx, web); !errors.Is(err, berth.ErrExists) {
		t.Errorf("second Connect: %v, want ErrExists", err)
	}
	out, err := output(t, rt, "busybox", sh("wget -q -O - http://site/"), berth.WithNetwork("late"))
	if err != nil || strings.TrimSpace(out) != "hello from web3" {
		t.Fatalf("wget http://site/ after Connect: %q, %v", out, err)
	}
	eps, err := n.Endpoints(ctx)
	if err != nil || len(eps) != 1 || eps[0].Container != "web3" {
		t.Errorf("Endpoints = %+v, %v", eps, err)
	}
	if err := n.Disconnect(ctx, web); err != nil {
		t.Fatal(err)
	}
	if out, err := output(t, rt, "busybox", sh("nslookup site 127.0.0.11"), berth.WithNetwork("late")); err == nil {
		t.Errorf("site still resolves after Disconnect: %q", out)
	}
	st, _ := web.State(ctx)
	if len(st.Networks) != 1 || st.Networks[0].Network != berth.DefaultNetwork {
		t.Errorf("networks after Disconnect: %+v", st.Networks)
	}
	// Leaving the first network frees eth0 while eth1 stays: the next
	// Connect takes eth0 (it took the count of networks, 1, and failed on
	// the existing eth1).
	if err := n.Connect(ctx, web); err != nil {
		t.Fatal(err)
	}
	def, err := rt.Network(ctx, berth.DefaultNetwork)
	if err != nil {
		t.Fatal(err)
	}
	if err := def.Disconnect(ctx, web); err != nil {
		t.Fatal(err)
	}
	later, err := rt.CreateNetwork(ctx, "later")
	if err != nil {
		t.Fatal(err)
	}
	if err := later.Connect(ctx, web, "site2"); err != nil {
		t.Fatalf("Connect after the first network left: %v", err)
	}
	out, err = output(t, rt, "busybox", sh("wget -q -O - http://site2/"), berth.WithNetwork("later"))
	if err != nil || strings.TrimSpace(out) != "hello from web3" {
		t.Errorf("wget http://site2/ after Connect: %q, %v", out, err)
	}
}

// TestBridgeLinger checks WithBridgeLinger: after Close the unused bridge
// stays for the linger time, a program opening the root meanwhile uses it
// (and keeps it past the first program's linger), and it goes once nobody
// uses it.
func TestBridgeLinger(t *testing.T) {
	berthtest.Skip(t)
	root := t.TempDir()
	ctx := context.Background()
	open := func() *berth.Runtime {
		rt, err := berth.New(root, berth.WithBridgeLinger(400*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rt := open()
	berthtest.Busybox(t, rt, "busybox")
	mustOutput(t, rt, "busybox", sh("true"))
	n, err := rt.Network(ctx, berth.DefaultNetwork)
	if err != nil {
		t.Fatal(err)
	}
	br := namesOf(root, []string{n.ID}, nil).bridges[0]
	rt.Close()
	if !hostLinks(t)[br] {
		t.Fatalf("bridge %s was deleted at Close despite the linger", br)
	}
	rt2 := open()
	mustOutput(t, rt2, "busybox", sh("true"))
	time.Sleep(700 * time.Millisecond) // the first linger is over; rt2 holds it
	if !hostLinks(t)[br] {
		t.Fatalf("bridge %s went while a Runtime still held it", br)
	}
	rt2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for hostLinks(t)[br] || strings.Contains(command(t, "nft", "list", "tables"), "berth-"+rootTag(root)) {
		if time.Now().After(deadline) {
			t.Fatalf("bridge %s or the root's nftables table still there 5 s after the last Close", br)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBridgeLingerExtended checks that a program closing while a lingering
// process holds the bridge starts no second one and moves the end of the
// linger to its own Close.
func TestBridgeLingerExtended(t *testing.T) {
	berthtest.Skip(t)
	root := t.TempDir()
	const linger = 600 * time.Millisecond
	use := func() string {
		rt, err := berth.New(root, berth.WithBridgeLinger(linger))
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		berthtest.Busybox(t, rt, "busybox")
		mustOutput(t, rt, "busybox", sh("true"))
		n, err := rt.Network(context.Background(), berth.DefaultNetwork)
		if err != nil {
			t.Fatal(err)
		}
		return namesOf(root, []string{n.ID}, nil).bridges[0]
	}
	br := use()
	first := time.Now()
	time.Sleep(linger / 2)
	use()
	second := time.Now()
	if n := lingerers(t, root); n != 1 {
		t.Errorf("%d lingering processes for the root, want 1", n)
	}
	time.Sleep(time.Until(first.Add(linger + 150*time.Millisecond)))
	if time.Since(second) < linger-50*time.Millisecond && !hostLinks(t)[br] {
		t.Fatalf("bridge %s went at the first program's linger, not the second's", br)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hostLinks(t)[br] {
		if time.Now().After(deadline) {
			t.Fatalf("bridge %s still there 5 s after the last Close", br)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The lingering process exits after deleting the bridge, and may
	// still be releasing its locks in the root meanwhile (the test's
	// temporary directory was once removed under it).
	for lingerers(t, root) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the lingering process still runs 5 s after the last Close")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBridgeLingerKeepsNetfilterSockets checks that a program whose last
// container with a published port just ended gives its netfilter sockets
// to the process lingering with the bridge, so that its own exit does not
// wait out the deletion's grace period: the lingering process holds them,
// from a program that starts it and from one that finds it running, and
// the program holds none.
func TestBridgeLingerKeepsNetfilterSockets(t *testing.T) {
	berthtest.Skip(t)
	root := t.TempDir()
	use := func() {
		rt, err := berth.New(root, berth.WithBridgeLinger(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		berthtest.Busybox(t, rt, "busybox")
		mustOutput(t, rt, "busybox", sh("true"), berth.WithPublish("127.0.0.1::80"))
		rt.Close()
	}
	use()
	pids := lingererPids(t, root)
	if len(pids) != 1 {
		t.Fatalf("%d lingering processes for the root, want 1", len(pids))
	}
	first := netfilterSockets(t, pids[0])
	if first == 0 {
		t.Errorf("the lingering process started at Close holds no netfilter socket")
	}
	if n := netfilterSockets(t, os.Getpid()); n != 0 {
		t.Errorf("the program holds %d netfilter sockets after Close, want 0", n)
	}
	use()
	// The lingering process takes them as it reads the message Close sent;
	// it keeps them a second.
	n := netfilterSockets(t, pids[0])
	for deadline := time.Now().Add(500 * time.Millisecond); n <= first && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		n = netfilterSockets(t, pids[0])
	}
	if n <= first {
		t.Errorf("the lingering process holds %d netfilter sockets after a second program's Close, %d before; want more", n, first)
	}
	if n := netfilterSockets(t, os.Getpid()); n != 0 {
		t.Errorf("the second program holds %d netfilter sockets after Close, want 0", n)
	}
}

// netfilterSockets counts the NETLINK_NETFILTER sockets process pid has
// open (their inodes, as /proc/net/netlink lists them).
func netfilterSockets(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/netlink")
	if err != nil {
		t.Fatal(err)
	}
	nf := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == strconv.Itoa(unix.NETLINK_NETFILTER) {
			nf[f[9]] = true
		}
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	n := 0
	for _, fd := range fds {
		l, _ := os.Readlink(fd)
		if ino, ok := strings.CutPrefix(l, "socket:["); ok && nf[strings.TrimSuffix(ino, "]")] {
			n++
		}
	}
	return n
}

// lingererPids lists the live lingering processes of root (their
// environment as started names it).
func lingererPids(t *testing.T, root string) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/environ")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("_BERTH_BRIDGE_LINGER="+root+"\n")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// lingerers counts the live lingering processes of root.
func lingerers(t *testing.T, root string) int {
	t.Helper()
	return len(lingererPids(t, root))
}

// TestBridgeLingerRootRemoved checks that a lingering bridge whose root is
// removed meanwhile still goes, and that nothing is written where the root
// was.
func TestBridgeLingerRootRemoved(t *testing.T) {
	berthtest.Skip(t)
	root := filepath.Join(t.TempDir(), "root")
	rt, err := berth.New(root, berth.WithBridgeLinger(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	berthtest.Busybox(t, rt, "busybox")
	mustOutput(t, rt, "busybox", sh("true"))
	n, err := rt.Network(context.Background(), berth.DefaultNetwork)
	if err != nil {
		t.Fatal(err)
	}
	br := namesOf(root, []string{n.ID}, nil).bridges[0]
	rt.Close()
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hostLinks(t)[br] || strings.Contains(command(t, "nft", "list", "tables"), "berth-"+rootTag(root)) {
		if time.Now().After(deadline) {
			t.Fatalf("bridge %s or its table outlived the removed root by 5 s", br)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("the lingering process re-created %s", root)
	}
}

// TestSweepOrphanTable checks that New deletes the nftables table of a root
// that is gone even when no bridge is left to lead to it (its bridges went
// down, then something other than berth deleted the root), and keeps the
// table of a root that exists.
func TestSweepOrphanTable(t *testing.T) {
	berthtest.Skip(t)
	gone := filepath.Join(t.TempDir(), "gone")
	kept := filepath.Join(t.TempDir(), "kept")
	for _, root := range []string{gone, kept} {
		if err := os.MkdirAll(filepath.Join(root, "locks"), 0o700); err != nil {
			t.Fatal(err)
		}
		// The rules of a bridge that no longer exists, as the root left them.
		b := nat.Bridge{Name: "berth" + rootTag(root)[:9], Subnet: netip.MustParsePrefix("10.200.250.0/24")}
		if err := nat.Apply("berth-"+rootTag(root), root, []nat.Bridge{b}, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nat.Delete("berth-" + rootTag(root)) })
	}
	if owner, err := nat.Owner("berth-" + rootTag(gone)); err != nil || owner != gone {
		t.Fatalf("Owner = %q, %v; want %q", owner, err, gone)
	}
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	rt, err := berth.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rt.Close()
	tables := command(t, "nft", "list", "tables")
	if strings.Contains(tables, "berth-"+rootTag(gone)) {
		t.Errorf("the table of the removed root %s is still there:\n%s", gone, tables)
	}
	if !strings.Contains(tables, "berth-"+rootTag(kept)) {
		t.Errorf("the table of the existing root %s was deleted", kept)
	}
}

// TestSweepOrphanBridge checks that New deletes the bridge and rules of a
// root that was removed while a program still held them: no program could
// ever open that root again to sweep it.
func TestSweepOrphanBridge(t *testing.T) {
	berthtest.Skip(t)
	root := filepath.Join(t.TempDir(), "gone")
	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	berthtest.Busybox(t, rt, "busybox")
	mustOutput(t, rt, "busybox", sh("true"))
	n, err := rt.Network(context.Background(), berth.DefaultNetwork)
	if err != nil {
		t.Fatal(err)
	}
	br := namesOf(root, []string{n.ID}, nil).bridges[0]
	if !hostLinks(t)[br] {
		t.Fatalf("bridge %s is not up while its Runtime is open", br)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	berthtest.NewRuntime(t) // New on another root sweeps orphans
	if hostLinks(t)[br] {
		t.Errorf("bridge %s of the removed root survived New on another root", br)
	}
	if strings.Contains(command(t, "nft", "list", "tables"), "berth-"+rootTag(root)) {
		t.Errorf("the removed root's nftables table survived New on another root")
	}
}
