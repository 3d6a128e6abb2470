package berth_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/internal/initproc"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// These tests send traffic only to this machine: 127.0.0.1, the host's own
// addresses (hostAddr) and the addresses of the containers berth makes.
// Names that are not containers are resolved only where the host answers
// from its /etc/hosts; containers that ask for names that no longer exist
// are given WithDNS("127.0.0.1"), where nothing listens, so that their
// name server never forwards a question off the machine.

// noUpstream keeps a container's name server from forwarding questions
// beyond this machine: nothing serves 127.0.0.1:53 on the host.
var noUpstream = berth.WithDNS("127.0.0.1")

// hostAddr is an IPv4 address of the host that is not loopback and not on
// a bridge of berth, docker or podman.
func hostAddr(t *testing.T) netip.Addr {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		skip := false
		for _, p := range []string{"berth", "bv", "docker", "veth", "br-", "podman", "cni"} {
			skip = skip || strings.HasPrefix(ifc.Name, p)
		}
		if skip {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && ip.IsGlobalUnicast() {
					return ip
				}
			}
		}
	}
	t.Skip("the host has no non-loopback IPv4 address to reach published ports at")
	return netip.Addr{}
}

// freePort is a port no socket of the host holds right now.
func freePort(t *testing.T, proto string) uint16 {
	t.Helper()
	var addr net.Addr
	if proto == "udp" {
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		addr = c.LocalAddr()
	} else {
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addr = l.Addr()
	}
	_, p, _ := net.SplitHostPort(addr.String())
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

// execOutput runs script in the running container c and returns its
// stdout and the Wait error (with stderr).
func execOutput(t *testing.T, c *berth.Container, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	p := sh(script)
	p.Stdout, p.Stderr = &out, &errOut
	e, err := c.Exec(ctx, p)
	if err != nil {
		return "", err
	}
	err = e.Wait(ctx)
	if err != nil && errOut.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), err
}

// sleeper runs a container that only waits, removed when the test ends.
func sleeper(t *testing.T, rt *berth.Runtime, name string, opts ...berth.RunOption) *berth.Container {
	t.Helper()
	c := mustRun(t, rt, "busybox", sh("exec sleep 300"), append([]berth.RunOption{berth.WithName(name)}, opts...)...)
	t.Cleanup(func() { c.Remove(context.Background(), berth.WithForce()) })
	return c
}

// ipOf is the container's address on its first network.
func ipOf(t *testing.T, c *berth.Container) netip.Addr {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil || len(st.Networks) == 0 {
		t.Fatalf("State of %s: %+v, %v; want an address", c.Name, st.Networks, err)
	}
	return st.Networks[0].IP
}

func gatewayOf(t *testing.T, rt *berth.Runtime, network string) netip.Addr {
	t.Helper()
	n, err := rt.Network(context.Background(), network)
	if err != nil {
		t.Fatal(err)
	}
	return n.Gateway
}

// netnsOf opens the network namespace of the running container c, closed
// at the end of the test.
func netnsOf(t *testing.T, c *berth.Container) *os.File {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil || st.Pid == 0 {
		t.Fatalf("State of %s: %+v, %v", c.Name, st, err)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// udpServerIn serves UDP port inside c's network namespace from this test
// process (busybox's nc has no UDP mode): "ping X" is answered "pong X",
// anything else is taken for a DNS question and answered NXDOMAIN, which
// busybox nslookup, the one UDP client in the image, prints. The server
// stops when the test ends or when stop is called: its socket keeps the
// container's namespace, and so its address, alive.
func udpServerIn(t *testing.T, c *berth.Container, port uint16) (stop func()) {
	t.Helper()
	st, err := c.State(context.Background())
	if err != nil || st.Pid == 0 {
		t.Fatalf("State of %s: %+v, %v", c.Name, st, err)
	}
	nsf, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close() // not kept: the server's socket alone keeps the namespace
	type result struct {
		conn net.PacketConn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// A fresh goroutine: should the thread fail to come back to the
		// host's namespace, it stays locked and dies with the goroutine.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer self.Close()
		if err := unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		conn, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	res := <-ch
	if res.err != nil {
		t.Fatalf("listening on udp %d in %s: %v", port, c.Name, res.err)
	}
	t.Cleanup(func() { res.conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := res.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := buf[:n]
			if rest, ok := bytes.CutPrefix(msg, []byte("ping ")); ok {
				res.conn.WriteTo(append([]byte("pong "), rest...), from)
				continue
			}
			if resp := nxdomain(msg); resp != nil {
				res.conn.WriteTo(resp, from)
			}
		}
	}()
	return func() { res.conn.Close() }
}

func nxdomain(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RCode: dnsmessage.RCodeNameError},
		Questions: []dnsmessage.Question{q},
	}
	b, _ := m.Pack()
	return b
}

// udpPing sends "ping X" to addr and returns the answer.
func udpPing(addr string) (string, error) {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	for try := 0; try < 3; try++ {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("ping " + addr)); err != nil {
			return "", err
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if try == 2 {
			return "", err
		}
	}
	return "", nil
}

// TestNetworkNameResolution checks names on a user-defined network: by
// container name and alias through nslookup, ping and wget (getaddrinfo),
// a container joining and leaving changes what the others resolve, other
// networks do not see the names, and the host's names resolve through the
// host's resolver.
func TestNetworkNameResolution(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if _, err := rt.CreateNetwork(ctx, "names"); err != nil {
		t.Fatal(err)
	}
	db := httpServer(t, rt, "db", berth.WithNetwork("names", "database"))
	dbIP := ipOf(t, db)
	obs := sleeper(t, rt, "observer", berth.WithNetwork("names"), noUpstream)

	for _, tc := range []struct{ name, script, want string }{
		{"nslookup name", "nslookup db", "Address: " + dbIP.String()},
		{"nslookup alias", "nslookup database", "Address: " + dbIP.String()},
		{"nslookup upper case", "nslookup DataBase", "Address: " + dbIP.String()},
		{"ping name", "ping -c1 -W3 db", "bytes from " + dbIP.String()},
		{"ping alias", "ping -c1 -W3 database", "bytes from " + dbIP.String()},
		{"wget name", "wget -q -O - http://db/", "hello from db"},
		{"wget alias", "wget -q -O - http://database/", "hello from db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := execOutput(t, obs, tc.script)
			if err != nil || !strings.Contains(out, tc.want) {
				t.Errorf("%s: %q, %v; want %q in the output", tc.script, out, err, tc.want)
			}
		})
	}

	t.Run("join and leave", func(t *testing.T) {
		if out, err := execOutput(t, obs, "nslookup late"); err == nil {
			t.Fatalf("nslookup late before it exists: %q, want a failure", out)
		}
		late := sleeper(t, rt, "late", berth.WithNetwork("names", "latecomer"))
		lateIP := ipOf(t, late)
		for _, name := range []string{"late", "latecomer"} {
			out, err := execOutput(t, obs, "nslookup "+name)
			if err != nil || !strings.Contains(out, "Address: "+lateIP.String()) {
				t.Errorf("nslookup %s after it joined: %q, %v; want %s", name, out, err, lateIP)
			}
		}
		if err := late.Remove(ctx, berth.WithForce()); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"late", "latecomer"} {
			if out, err := execOutput(t, obs, "nslookup "+name); err == nil || strings.Contains(out, lateIP.String()) {
				t.Errorf("nslookup %s after it left: %q, %v; want a failure", name, out, err)
			}
		}
		// db is still there.
		if out, err := execOutput(t, obs, "nslookup db"); err != nil || !strings.Contains(out, dbIP.String()) {
			t.Errorf("nslookup db after late left: %q, %v", out, err)
		}
	})

	t.Run("other network", func(t *testing.T) {
		for _, name := range []string{"db", "database"} {
			out, err := output(t, rt, "busybox", sh("nslookup "+name), noUpstream)
			if err == nil || strings.Contains(out, dbIP.String()) {
				t.Errorf("nslookup %s from the default network: %q, %v; want a failure", name, out, err)
			}
		}
	})

	t.Run("host names", func(t *testing.T) {
		name, addr := hostsFileName(t)
		// -type=a: only the question the host answers from /etc/hosts, so
		// nothing is asked beyond this machine.
		out, err := output(t, rt, "busybox", sh("nslookup -type=a "+name), berth.WithNetwork("names"))
		if err != nil || !strings.Contains(out, "Address: "+addr.String()) {
			t.Errorf("nslookup -type=a %s (in the host's /etc/hosts): %q, %v; want %s", name, out, err, addr)
		}
	})
}

// hostsFileName is a name of the host's /etc/hosts other than localhost
// (the host's own hostname when listed) and the IPv4 address the host's
// resolver gives it. It skips when there is none: every other name would
// be asked of name servers beyond this machine.
func hostsFileName(t *testing.T) (string, netip.Addr) {
	t.Helper()
	b, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Skipf("reading the host's /etc/hosts: %v", err)
	}
	hostname, _ := os.Hostname()
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		if len(f) < 2 {
			continue
		}
		if ip, err := netip.ParseAddr(f[0]); err != nil || !ip.Is4() {
			continue
		}
		for _, n := range f[1:] {
			if n == hostname {
				names = append([]string{n}, names...)
			} else if n != "localhost" && !strings.Contains(n, "localhost") {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		t.Skip("the host's /etc/hosts names no host but localhost; resolving any other name would leave this machine")
	}
	addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip4", names[0])
	if err != nil || len(addrs) == 0 {
		t.Skipf("the host does not resolve %q from its /etc/hosts: %v", names[0], err)
	}
	return names[0], addrs[0].Unmap()
}

// TestNetworkPublishTCP publishes a server's port fixed and random, and
// reaches it from the host at 127.0.0.1 and at the host's own address, and
// from containers through the host: on the server's network (hairpin) and
// on another one, at the host's address and at their gateway.
func TestNetworkPublishTCP(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := hostAddr(t)
	if _, err := rt.CreateNetwork(ctx, "pub"); err != nil {
		t.Fatal(err)
	}
	fixed := freePort(t, "tcp")
	for _, tc := range []struct {
		name string
		spec string
		port uint16
	}{
		{"fixed", fmt.Sprintf("%d:80", fixed), fixed},
		{"random", "80", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "web-" + tc.name
			c := httpServer(t, rt, name, berth.WithNetwork("pub"), berth.WithPublish(tc.spec))
			ports, err := c.Ports(ctx)
			if err != nil || len(ports) != 1 {
				t.Fatalf("Ports = %v, %v; want one binding", ports, err)
			}
			port := ports[0].HostPort
			if port == 0 || (tc.port != 0 && port != tc.port) {
				t.Fatalf("Ports = %v; want host port %d (0: any free one)", ports, tc.port)
			}
			want := berth.PortBinding{HostIP: "0.0.0.0", HostPort: port, ContainerPort: 80, Protocol: "tcp"}
			if ports[0] != want {
				t.Errorf("Ports = %+v, want %+v", ports[0], want)
			}
			if got := ports[0].String(); got != fmt.Sprintf("80/tcp -> 0.0.0.0:%d", port) {
				t.Errorf("binding String() = %q", got)
			}
			for _, ip := range []string{"127.0.0.1", host.String()} {
				if got := httpGet(t, net.JoinHostPort(ip, strconv.Itoa(int(port)))); got != "hello from "+name {
					t.Errorf("GET %s:%d from the host = %q", ip, port, got)
				}
			}
			for _, network := range []string{"pub", berth.DefaultNetwork} {
				gw := gatewayOf(t, rt, network)
				script := fmt.Sprintf("wget -q -O - http://%s:%d/ && wget -q -O - http://%s:%d/", host, port, gw, port)
				out, err := output(t, rt, "busybox", sh(script), berth.WithNetwork(network))
				if err != nil || out != strings.Repeat("hello from "+name+"\n", 2) {
					t.Errorf("from a container on %q through %s and %s: %q, %v", network, host, gw, out, err)
				}
			}
		})
	}
}

// A network's gateway keeps its hardware address while ports come and go.
// A Linux bridge without an address of its own takes its ports' lowest, so
// a container that learned the gateway while some port was the lowest kept
// sending replies to an address nobody had once that port left: a request
// to a published port through the host's address connected and then hung
// (TestNetworkPublishTCP failed that way about once in forty runs). The
// test adds the lowest possible port itself, lets the container learn the
// gateway, removes the port, and asks again.
func TestNetworkGatewayAddressStable(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := hostAddr(t)
	if _, err := rt.CreateNetwork(ctx, "gw"); err != nil {
		t.Fatal(err)
	}
	c := httpServer(t, rt, "web", berth.WithNetwork("gw"), berth.WithPublish("80"))
	ports, err := c.Ports(ctx)
	if err != nil || len(ports) != 1 {
		t.Fatalf("Ports = %v, %v; want one binding", ports, err)
	}
	port := strconv.Itoa(int(ports[0].HostPort))
	br := linkWithAddr(t, gatewayOf(t, rt, "gw"))
	before := br.Attrs().HardwareAddr

	low := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "bvlow" + strconv.Itoa(os.Getpid()%10000), HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}, MasterIndex: br.Attrs().Index},
		PeerName:  "bvlowpeer" + strconv.Itoa(os.Getpid()%10000),
	}
	if err := netlink.LinkAdd(low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(low) })
	if err := netlink.LinkSetUp(low); err != nil {
		t.Fatal(err)
	}
	if got := httpGet(t, net.JoinHostPort("127.0.0.1", port)); got != "hello from web" {
		t.Fatalf("GET 127.0.0.1:%s = %q", port, got)
	}
	if err := netlink.LinkDel(low); err != nil {
		t.Fatal(err)
	}
	if got := httpGet(t, net.JoinHostPort(host.String(), port)); got != "hello from web" {
		t.Errorf("GET %s:%s after a port left the bridge = %q", host, port, got)
	}
	if after := linkWithAddr(t, gatewayOf(t, rt, "gw")).Attrs().HardwareAddr; !bytes.Equal(after, before) {
		t.Errorf("gateway address changed from %s to %s", before, after)
	}
}

// linkWithAddr is the host link that holds addr.
func linkWithAddr(t *testing.T, addr netip.Addr) netlink.Link {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			link, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				t.Fatal(err)
			}
			return link
		}
	}
	t.Fatalf("no host link has %s", addr)
	return nil
}

// Addresses are given once each among live containers, a removed
// container's address is given again, and a full subnet is a clear error;
// also in a root whose network has no address claims yet (a root from
// before them, with containers running), which must not give a running
// container's address to another.
func TestNetworkAddressAllocation(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	n, err := rt.CreateNetwork(ctx, "small", berth.WithSubnet("10.231.9.0/29")) // .2-.6 for containers
	if err != nil {
		t.Fatal(err)
	}
	// Round-robin: a removed container's address is not the next one
	// given while others are free (a veth the kernel is still deleting
	// may hold it).
	first := sleeper(t, rt, "rr", berth.WithNetwork("small"))
	firstIP := ipOf(t, first)
	if err := first.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	rr := sleeper(t, rt, "rr2", berth.WithNetwork("small"))
	if got := ipOf(t, rr); got != firstIP.Next() {
		t.Fatalf("after %s was freed the next container got %s, want %s", firstIP, got, firstIP.Next())
	}
	if err := rr.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	ips := map[netip.Addr]*berth.Container{}
	var order []*berth.Container
	for i := range 5 {
		c := sleeper(t, rt, fmt.Sprintf("s%d", i), berth.WithNetwork("small"))
		ip := ipOf(t, c)
		if other, dup := ips[ip]; dup || !n.Subnet.Contains(ip) || ip == n.Gateway {
			t.Fatalf("%s got %s (gateway %s, held by %v)", c.Name, ip, n.Gateway, other)
		}
		ips[ip] = c
		order = append(order, c)
	}
	full := func(name string) {
		t.Helper()
		_, err := rt.Run(ctx, "busybox", sh("exec sleep 300"), berth.WithName(name), berth.WithNetwork("small"))
		if err == nil || !strings.Contains(err.Error(), "no free address") {
			t.Fatalf("Run on a full /29: %v; want no free address", err)
		}
	}
	full("extra")
	// replace removes c and checks that the next container gets its address.
	replace := func(c *berth.Container, name string) {
		t.Helper()
		freed := ipOf(t, c)
		if err := c.Remove(ctx, berth.WithForce()); err != nil {
			t.Fatal(err)
		}
		next := sleeper(t, rt, name, berth.WithNetwork("small"))
		if got := ipOf(t, next); got != freed {
			t.Fatalf("%s got %s; the only free address was %s", name, got, freed)
		}
		full(name + "-extra")
	}
	replace(order[1], "r1")

	// A root from before the claims file: only endpoint files say who
	// holds what.
	claims := filepath.Join(rt.Root(), "endpoints", n.ID, "claims")
	if st, err := os.Stat(claims); err != nil || st.Size() > 8*64 {
		t.Fatalf("claims file: %v, %v; want one of at most 8 slots of 64 bytes for a /29", st, err)
	}
	if err := os.Remove(claims); err != nil {
		t.Fatal(err)
	}
	replace(order[3], "r3")
	replace(order[0], "r0")

	// A claim whose container still runs but has left the network.
	freed := ipOf(t, order[2])
	if err := n.Disconnect(ctx, order[2]); err != nil {
		t.Fatal(err)
	}
	if got := ipOf(t, sleeper(t, rt, "after-disconnect", berth.WithNetwork("small"))); got != freed {
		t.Fatalf("after a disconnect the next container got %s; the only free address was %s", got, freed)
	}
	full("extra-after-disconnect")
}

// TestNetworkPublishUDP is TestNetworkPublishTCP for UDP.
func TestNetworkPublishUDP(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := hostAddr(t)
	if _, err := rt.CreateNetwork(ctx, "pub"); err != nil {
		t.Fatal(err)
	}
	fixed := freePort(t, "udp")
	for _, tc := range []struct {
		name string
		spec string
		port uint16
	}{
		{"fixed", fmt.Sprintf("%d:9000/udp", fixed), fixed},
		{"random", "9000/udp", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sleeper(t, rt, "udp-"+tc.name, berth.WithNetwork("pub"), berth.WithPublish(tc.spec))
			udpServerIn(t, c, 9000)
			ports, err := c.Ports(ctx)
			if err != nil || len(ports) != 1 {
				t.Fatalf("Ports = %v, %v; want one binding", ports, err)
			}
			port := ports[0].HostPort
			if port == 0 || (tc.port != 0 && port != tc.port) {
				t.Fatalf("Ports = %v; want host port %d (0: any free one)", ports, tc.port)
			}
			want := berth.PortBinding{HostIP: "0.0.0.0", HostPort: port, ContainerPort: 9000, Protocol: "udp"}
			if ports[0] != want {
				t.Errorf("Ports = %+v, want %+v", ports[0], want)
			}
			for _, ip := range []string{"127.0.0.1", host.String()} {
				addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
				if got, err := udpPing(addr); got != "pong "+addr {
					t.Errorf("udp ping %s from the host = %q, %v", addr, got, err)
				}
			}
			for _, network := range []string{"pub", berth.DefaultNetwork} {
				for _, to := range []netip.Addr{host, gatewayOf(t, rt, network)} {
					script := fmt.Sprintf("nslookup -type=a -port=%d probe %s", port, to)
					out, _ := output(t, rt, "busybox", sh(script), berth.WithNetwork(network))
					if !strings.Contains(out, "NXDOMAIN") {
						t.Errorf("udp from a container on %q to %s:%d: %q; want the server's NXDOMAIN", network, to, port, out)
					}
				}
			}
		})
	}
}

// TestNetworkPublishInUse checks that a host port already held, by a host
// program or another container, fails Run with ErrInUse, leaves the holder
// working, and is free again once released.
func TestNetworkPublishInUse(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	run := func(name, spec string) error {
		c, err := rt.Run(ctx, "busybox", sh("exec sleep 300"), berth.WithName(name), berth.WithPublish(spec))
		if err == nil {
			c.Remove(ctx, berth.WithForce())
			return nil
		}
		if c, cerr := rt.Container(ctx, name); cerr == nil {
			c.Remove(ctx, berth.WithForce())
		}
		return err
	}
	for _, tc := range []struct {
		name, proto, listen, spec string
	}{
		{"tcp on all addresses", "tcp", "0.0.0.0:0", "%d:80"},
		{"tcp on loopback, publishing on all", "tcp", "127.0.0.1:0", "%d:80"},
		{"tcp on all, publishing on loopback", "tcp", "0.0.0.0:0", "127.0.0.1:%d:80"},
		{"udp", "udp", "0.0.0.0:0", "%d:53/udp"},
	} {
		t.Run("host "+tc.name, func(t *testing.T) {
			var holder io.Closer
			var addr string
			if tc.proto == "udp" {
				c, err := net.ListenPacket("udp4", tc.listen)
				if err != nil {
					t.Fatal(err)
				}
				holder, addr = c, c.LocalAddr().String()
			} else {
				l, err := net.Listen("tcp4", tc.listen)
				if err != nil {
					t.Fatal(err)
				}
				holder, addr = l, l.Addr().String()
			}
			_, p, _ := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(p)
			spec := fmt.Sprintf(tc.spec, port)
			err := run("taken", spec)
			if !errors.Is(err, berth.ErrInUse) || !strings.Contains(err.Error(), p) {
				t.Errorf("publishing %s while the host holds %s: %v; want ErrInUse naming the port", spec, addr, err)
			}
			holder.Close()
			if err := run("free", spec); err != nil {
				t.Errorf("publishing %s once the host let it go: %v", spec, err)
			}
		})
	}

	t.Run("another container", func(t *testing.T) {
		port := freePort(t, "tcp")
		spec := fmt.Sprintf("%d:80", port)
		httpServer(t, rt, "first", berth.WithPublish(spec))
		err := run("second", spec)
		if !errors.Is(err, berth.ErrInUse) || !strings.Contains(err.Error(), strconv.Itoa(int(port))) {
			t.Errorf("publishing %s held by another container: %v; want ErrInUse naming the port", spec, err)
		}
		// The failed attempt took nothing from the holder.
		if got := httpGet(t, fmt.Sprintf("127.0.0.1:%d", port)); got != "hello from first" {
			t.Errorf("the holder's port after a failed publish: %q", got)
		}
		n, err := rt.Network(ctx, berth.DefaultNetwork)
		if err != nil {
			t.Fatal(err)
		}
		eps, err := n.Endpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ep := range eps {
			if ep.Container != "first" {
				t.Errorf("endpoint left by the failed container: %+v", ep)
			}
		}
	})
}

// TestNetworkPublishRace starts 8 containers at once publishing one host
// port: exactly one wins, the others fail with ErrInUse, and the port
// reaches the winner.
func TestNetworkPublishRace(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	port := freePort(t, "tcp")
	const n = 8
	errs := make([]error, n)
	ctrs := make([]*berth.Container, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("racer%d", i)
			script := fmt.Sprintf("mkdir -p /www && echo hello from %s > /www/index.html && exec httpd -f -p 80 -h /www", name)
			ctrs[i], errs[i] = rt.Run(ctx, "busybox", sh(script), berth.WithName(name), berth.WithPublish(fmt.Sprintf("%d:80", port)))
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range n {
			if c, err := rt.Container(ctx, fmt.Sprintf("racer%d", i)); err == nil {
				c.Remove(ctx, berth.WithForce())
			}
		}
	})
	var winners []int
	for i, err := range errs {
		switch {
		case err == nil:
			winners = append(winners, i)
		case !errors.Is(err, berth.ErrInUse):
			t.Errorf("racer%d: %v; want success or ErrInUse", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d of %d containers published port %d (%v); want exactly one", len(winners), n, port, winners)
	}
	w := ctrs[winners[0]]
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.WaitListening(wctx, "tcp", 80); err != nil {
		t.Fatal(err)
	}
	if got := httpGet(t, fmt.Sprintf("127.0.0.1:%d", port)); got != "hello from "+w.Name {
		t.Errorf("port %d answers %q; want the winner %s", port, got, w.Name)
	}
	if err := w.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatalf("port %d still held after the winner was removed: %v", port, err)
	}
	l.Close()
}

// TestNetworkPublishLoopbackOnly publishes on 127.0.0.1: reachable there,
// not at the host's other address, from the host or from a container.
func TestNetworkPublishLoopbackOnly(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := hostAddr(t)
	c := httpServer(t, rt, "local", berth.WithPublish("127.0.0.1::80"))
	ports, err := c.Ports(ctx)
	if err != nil || len(ports) != 1 || ports[0].HostIP != "127.0.0.1" || ports[0].HostPort == 0 {
		t.Fatalf("Ports = %+v, %v; want one binding on 127.0.0.1", ports, err)
	}
	port := ports[0].HostPort
	if got := httpGet(t, fmt.Sprintf("127.0.0.1:%d", port)); got != "hello from local" {
		t.Errorf("GET 127.0.0.1:%d = %q", port, got)
	}
	addr := net.JoinHostPort(host.String(), strconv.Itoa(int(port)))
	if conn, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(conn)
		conn.Close()
		if strings.Contains(string(b), "hello from local") {
			t.Errorf("a port published on 127.0.0.1 answers at %s", addr)
		}
	}
	out, err := output(t, rt, "busybox", sh(fmt.Sprintf("timeout 3 wget -q -O - http://%s/", addr)))
	if err == nil || strings.Contains(out, "hello from local") {
		t.Errorf("a container reached the 127.0.0.1-only port at %s: %q, %v", addr, out, err)
	}
}

// TestNetworkModeNone checks that --network none has a working loopback
// and nothing else.
func TestNetworkModeNone(t *testing.T) {
	rt := busyboxRuntime(t)
	host := hostAddr(t)
	script := `ip -o link | cut -d: -f2 | tr -d ' '; echo ---; ip -o -4 addr | awk '{print $2, $4}'; echo ---; ip route; echo ---
mkdir -p /www && echo hello on lo > /www/index.html && httpd -p 127.0.0.1:8080 -h /www && wget -q -O - http://127.0.0.1:8080/; echo ---
timeout 3 wget -q -O - http://` + host.String() + `:1/ 2>&1; echo rc=$?`
	out := mustOutput(t, rt, "busybox", sh(script), berth.WithNetworkMode("none"))
	parts := strings.Split(out, "---\n")
	if len(parts) != 5 {
		t.Fatalf("output:\n%s", out)
	}
	if links := strings.TrimSpace(parts[0]); links != "lo" {
		t.Errorf("links %q, want only lo", links)
	}
	if addrs := strings.TrimSpace(parts[1]); addrs != "lo 127.0.0.1/8" {
		t.Errorf("addresses %q, want lo 127.0.0.1/8", addrs)
	}
	if routes := strings.TrimSpace(parts[2]); routes != "" {
		t.Errorf("routes %q, want none", routes)
	}
	if got := strings.TrimSpace(parts[3]); got != "hello on lo" {
		t.Errorf("server on the loopback: %q", got)
	}
	if got := parts[4]; !strings.Contains(got, "unreachable") || strings.Contains(got, "rc=0") {
		t.Errorf("reaching the host from --network none: %q; want network unreachable", got)
	}
}

// TestNetworkContainerMode checks container:NAME: the joiner has the
// other's address, reaches a server on its loopback, serves on the shared
// loopback in turn, and reports the other's published ports.
func TestNetworkContainerMode(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	base := mustRun(t, rt, "busybox", sh("mkdir -p /www && echo hello from base > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"),
		berth.WithName("base"), berth.WithPublish("127.0.0.1::9999"))
	t.Cleanup(func() { base.Remove(ctx, berth.WithForce()) })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := base.WaitListening(wctx, "tcp", 8080); err != nil {
		t.Fatal(err)
	}
	baseIP := ipOf(t, base)
	joiner := sleeper(t, rt, "joiner", berth.WithNetworkMode("container:base"))
	out, err := execOutput(t, joiner, "ip -o -4 addr show eth0; wget -q -O - http://127.0.0.1:8080/")
	if err != nil || !strings.Contains(out, " "+baseIP.String()+"/") || !strings.Contains(out, "hello from base") {
		t.Errorf("in container:base: %q, %v; want address %s and base's loopback server", out, err, baseIP)
	}
	if _, err := execOutput(t, joiner, "mkdir -p /www && echo hello from joiner > /www/index.html && httpd -p 127.0.0.1:8081 -h /www"); err != nil {
		t.Fatal(err)
	}
	if out, err := execOutput(t, base, "wget -q -O - http://127.0.0.1:8081/"); err != nil || strings.TrimSpace(out) != "hello from joiner" {
		t.Errorf("base reaching the joiner's loopback server: %q, %v", out, err)
	}
	bp, err := base.Ports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jp, err := joiner.Ports(ctx)
	if err != nil || len(jp) != 1 || jp[0] != bp[0] {
		t.Errorf("joiner's Ports = %v, %v; want base's %v", jp, err, bp)
	}
}

// TestNetworkIsolation checks that containers on two networks cannot reach
// each other's addresses, while containers on one network can.
func TestNetworkIsolation(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, n := range []string{"neta", "netb"} {
		if _, err := rt.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	srvB := httpServer(t, rt, "srvb", berth.WithNetwork("netb"))
	srvA := httpServer(t, rt, "srva", berth.WithNetwork("neta"))
	ipB, ipA := ipOf(t, srvB), ipOf(t, srvA)
	probe := func(ip netip.Addr) string {
		// A dropped packet gets no answer: both probes wait 2s, side by side.
		return fmt.Sprintf("(timeout 2 wget -q -O - http://%s/ 2>&1; echo rc=$?) & ping -c1 -W2 %s >/dev/null 2>&1; echo ping=$?; wait", ip, ip)
	}
	// Each network reaches its own server: the probe can succeed.
	for _, tc := range []struct {
		network, server string
		ip              netip.Addr
	}{{"neta", "srva", ipA}, {"netb", "srvb", ipB}} {
		out, _ := output(t, rt, "busybox", sh(probe(tc.ip)), berth.WithNetwork(tc.network))
		if !strings.Contains(out, "hello from "+tc.server) || !strings.Contains(out, "ping=0") {
			t.Errorf("%s reaching its own %s at %s: %q", tc.network, tc.server, tc.ip, out)
		}
	}
	var wg sync.WaitGroup
	for _, tc := range []struct {
		network, server string
		ip              netip.Addr
	}{{"neta", "srvb", ipB}, {"netb", "srva", ipA}, {berth.DefaultNetwork, "srva", ipA}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, _ := output(t, rt, "busybox", sh(probe(tc.ip)), berth.WithNetwork(tc.network))
			if strings.Contains(out, "hello from") || strings.Contains(out, "rc=0") || strings.Contains(out, "ping=0") {
				t.Errorf("%s reached %s on another network at %s: %q", tc.network, tc.server, tc.ip, out)
			}
		}()
	}
	wg.Wait()
}

// TestNetworkTransfer1GiB sends 1 GiB from a container through a port
// published on 127.0.0.1 and checks every byte: an 8 MiB random block,
// bind-mounted into the container, sent 128 times.
func TestNetworkTransfer1GiB(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	const blockSize, blocks = 8 << 20, 128
	block := make([]byte, blockSize)
	rand.Read(block)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "block"), block, 0o644); err != nil {
		t.Fatal(err)
	}
	// dd with 8 MiB blocks: busybox cat's small writes, not the network
	// path, would set the pace.
	script := fmt.Sprintf(`exec nc -l -p 9000 -e sh -c 'i=0; while [ $i -lt %d ]; do dd if=/data/block bs=%d 2>/dev/null; i=$((i+1)); done'`, blocks, blockSize)
	c := mustRun(t, rt, "busybox", sh(script), berth.WithPublish("127.0.0.1::9000"),
		berth.WithMounts(berth.Mount{Type: berth.MountBind, Source: dir, Target: "/data", ReadOnly: true}))
	t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitListening(wctx, "tcp", 9000); err != nil {
		t.Fatal(err)
	}
	ports, err := c.Ports(ctx)
	if err != nil || len(ports) != 1 {
		t.Fatalf("Ports = %v, %v", ports, err)
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].HostPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(90 * time.Second))
	start := time.Now()
	r := bufio.NewReaderSize(conn, 4<<20)
	got := make([]byte, blockSize)
	for i := range blocks {
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatalf("block %d of %d: %v", i, blocks, err)
		}
		if !bytes.Equal(got, block) {
			t.Fatalf("block %d of %d differs from what the container sent", i, blocks)
		}
	}
	if n, err := io.Copy(io.Discard, r); n != 0 || err != nil {
		t.Errorf("after 1 GiB: %d more bytes, %v; want EOF", n, err)
	}
	d := time.Since(start)
	t.Logf("1 GiB in %v (%.0f MB/s)", d, float64(blockSize*blocks)/d.Seconds()/1e6)
}

// TestNetworkPublishUDPRestart keeps one UDP client socket sending to a
// published port while the container behind it is replaced: the new
// container gets the datagrams. The kernel's connection tracking keeps
// the path of a UDP flow while datagrams keep coming, so a path to the
// removed container, or to the host's own socket from while no rule
// existed, must not survive the new binding.
func TestNetworkPublishUDPRestart(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	port := freePort(t, "udp")
	spec := fmt.Sprintf("%d:9000/udp", port)
	client, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ping := func() (string, error) {
		buf := make([]byte, 512)
		for try := 0; try < 3; try++ {
			client.SetDeadline(time.Now().Add(500 * time.Millisecond))
			client.Write([]byte("ping x"))
			n, err := client.Read(buf)
			if err == nil {
				return string(buf[:n]), nil
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, unix.ECONNREFUSED) {
				return "", err
			}
		}
		return "", errors.New("no answer")
	}
	for i := range 2 {
		c := sleeper(t, rt, fmt.Sprintf("udp%d", i), berth.WithPublish(spec))
		stop := udpServerIn(t, c, 9000)
		if got, err := ping(); got != "pong x" {
			t.Fatalf("container %d: %q, %v; want pong x", i, got, err)
		}
		stop()
		if err := c.Remove(ctx, berth.WithForce()); err != nil {
			t.Fatal(err)
		}
		// The client keeps sending while no container publishes the port.
		ping()
		// The next server must have another address than this one had.
		sleeper(t, rt, fmt.Sprintf("filler%d", i))
	}
}

// TestNetworkInternal checks an internal network: its containers reach
// each other, and nothing of the host beyond the bridge, its other
// addresses included.
func TestNetworkInternal(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := hostAddr(t)
	if _, err := rt.CreateNetwork(ctx, "sealed", berth.WithInternal()); err != nil {
		t.Fatal(err)
	}
	srv := httpServer(t, rt, "inside", berth.WithNetwork("sealed"))
	port := strconv.Itoa(hostServer(t, func(conn net.Conn) {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil || strings.TrimSpace(line) == "" {
				break
			}
		}
		fmt.Fprintf(conn, "HTTP/1.0 200 OK\r\n\r\nhello from the host\n")
	}))
	// The host's listener answers from the default network: the probe works.
	out, err := output(t, rt, "busybox", sh(fmt.Sprintf("timeout 2 wget -q -O - http://%s:%s/", host, port)))
	if err != nil || strings.TrimSpace(out) != "hello from the host" {
		t.Fatalf("the host's listener from the default network: %q, %v", out, err)
	}
	out, err = output(t, rt, "busybox", sh(fmt.Sprintf("wget -q -O - http://%s/ && (timeout 2 wget -q -O - http://%s:%s/ 2>&1; echo rc=$?)", ipOf(t, srv), host, port)),
		berth.WithNetwork("sealed"), noUpstream)
	if err != nil || !strings.Contains(out, "hello from inside") {
		t.Errorf("a peer on the internal network: %q, %v", out, err)
	}
	if strings.Contains(out, "hello from the host") || strings.Contains(out, "rc=0") {
		t.Errorf("a container on an internal network reached the host's %s:%s: %q", host, port, out)
	}
	// Nothing comes in either: a port cannot be published there (docker
	// publishes nothing, silently). Listed after a network that is not
	// internal, the internal one is no obstacle.
	if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithNetwork("sealed"), berth.WithPublish("80")); !errors.Is(err, berth.ErrInvalid) || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("publishing on an internal network: %v, want ErrInvalid naming it", err)
	}
	if _, err := rt.CreateNetwork(ctx, "open"); err != nil {
		t.Fatal(err)
	}
	both := httpServer(t, rt, "both", berth.WithNetwork("open"), berth.WithNetwork("sealed"), berth.WithPublish("127.0.0.1::80"))
	if got := getPublished(t, both); got != "hello from both" {
		t.Errorf("through the port published on the network that is not internal: %q", got)
	}
}

// TestNetworkPublishHostAddrOnly publishes on the host's own address: it
// answers there and not at 127.0.0.1.
func TestNetworkPublishHostAddrOnly(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	host := hostAddr(t)
	c := httpServer(t, rt, "addronly", berth.WithPublish(host.String()+"::80"))
	ports, err := c.Ports(ctx)
	if err != nil || len(ports) != 1 || ports[0].HostIP != host.String() || ports[0].HostPort == 0 {
		t.Fatalf("Ports = %+v, %v; want one binding on %s", ports, err, host)
	}
	port := strconv.Itoa(int(ports[0].HostPort))
	if got := httpGet(t, net.JoinHostPort(host.String(), port)); got != "hello from addronly" {
		t.Errorf("GET %s:%s = %q", host, port, got)
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second); err == nil {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(conn)
		conn.Close()
		if strings.Contains(string(b), "hello from addronly") {
			t.Errorf("a port published on %s answers at 127.0.0.1:%s", host, port)
		}
	}
}

// TestNetworkSubnetsAcrossRoots creates networks in two roots at once and
// brings them up at once: each gets a subnet of its own, and every
// container reaches its own server.
func TestNetworkSubnetsAcrossRoots(t *testing.T) {
	rts := []*berth.Runtime{busyboxRuntime(t), busyboxRuntime(t)}
	ctx := context.Background()
	type result struct {
		subnet netip.Prefix
		out    string
		err    error
	}
	const perRoot = 3
	results := make([]result, len(rts)*perRoot)
	var wg sync.WaitGroup
	for i, rt := range rts {
		for j := range perRoot {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := &results[i*perRoot+j]
				name := fmt.Sprintf("net%d", j)
				n, err := rt.CreateNetwork(ctx, name)
				if err != nil {
					res.err = err
					return
				}
				script := "mkdir -p /www && echo hello > /www/index.html && httpd -p 80 -h /www && wget -q -O - http://srv/ && ip -o -4 addr show eth0"
				res.out, res.err = output(t, rt, "busybox", sh(script), berth.WithNetwork(name, "srv"), noUpstream)
				if n2, err := rt.Network(ctx, name); err == nil {
					res.subnet = n2.Subnet
				} else {
					res.subnet = n.Subnet
				}
			}()
		}
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i, res := range results {
		if res.err != nil || !strings.HasPrefix(res.out, "hello\n") {
			t.Errorf("network %d: %q, %v", i, res.out, res.err)
			continue
		}
		if !strings.Contains(res.out, " "+res.subnet.Addr().String()[:strings.LastIndexByte(res.subnet.Addr().String(), '.')+1]) {
			t.Errorf("network %d: address outside its subnet %s: %q", i, res.subnet, res.out)
		}
		if k, dup := seen[res.subnet]; dup {
			t.Errorf("networks %d and %d share subnet %s", k, i, res.subnet)
		}
		seen[res.subnet] = i
	}
}

// TestNetworkPublishReleasedOnExit checks that a container that exits on
// its own (not removed) lets its host port go: another container can
// publish it, and the exited one's rules do not shadow the new binding.
func TestNetworkPublishReleasedOnExit(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	port := freePort(t, "tcp")
	spec := fmt.Sprintf("127.0.0.1:%d:80", port)
	first := mustRun(t, rt, "busybox", sh("true"), berth.WithName("brief"), berth.WithPublish(spec))
	t.Cleanup(func() { first.Remove(ctx, berth.WithForce()) })
	if err := first.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !eventually(2*time.Second, func() bool { return portFree("tcp", port) }) {
		t.Errorf("port %d still held after its container exited", port)
	}
	httpServer(t, rt, "next", berth.WithPublish(spec))
	if got := httpGet(t, fmt.Sprintf("127.0.0.1:%d", port)); got != "hello from next" {
		t.Errorf("port %d after the first container exited: %q", port, got)
	}
}

// TestNetworkTwoNetworks attaches a container to two networks: each
// network's containers resolve it to its address there and reach it.
func TestNetworkTwoNetworks(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	for _, n := range []string{"front", "back"} {
		if _, err := rt.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	c := httpServer(t, rt, "both", berth.WithNetwork("front"), berth.WithNetwork("back", "api"))
	st, err := c.State(ctx)
	if err != nil || len(st.Networks) != 2 {
		t.Fatalf("State.Networks = %+v, %v; want two", st.Networks, err)
	}
	for _, ep := range st.Networks {
		for _, name := range []string{"both", "api"} {
			out, err := output(t, rt, "busybox", sh("nslookup "+name+" && wget -q -O - http://"+name+"/"), berth.WithNetwork(ep.Network), noUpstream)
			wantOK := name == "both" || ep.Network == "back"
			if !wantOK {
				if err == nil || strings.Contains(out, "hello from both") {
					t.Errorf("%s from %s (an alias on the other network): %q, %v; want a failure", name, ep.Network, out, err)
				}
				continue
			}
			if err != nil || !strings.Contains(out, "Address: "+ep.IP.String()) || !strings.Contains(out, "hello from both") {
				t.Errorf("%s from %s: %q, %v; want %s and the page", name, ep.Network, out, err, ep.IP)
			}
			for _, other := range st.Networks {
				if other.Network != ep.Network && strings.Contains(out, other.IP.String()) {
					t.Errorf("%s from %s answers its address %s on %s, unreachable from there: %q", name, ep.Network, other.IP, other.Network, out)
				}
			}
		}
	}
}

// TestNetworkNeighbourReachesPublishedOnly: a neighbour that routes a
// network's subnet through the host (here a network namespace the test
// makes, on a veth with an address of this machine) reaches a container's
// published port through the host and nothing else of it, as docker's
// DROP policy has it: the container's own address is not open to it.
func TestNetworkNeighbourReachesPublishedOnly(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := httpServer(t, rt, "web", berth.WithPublish("80"))
	st, err := c.State(ctx)
	if err != nil || len(st.Networks) != 1 || len(st.Ports) != 1 {
		t.Fatalf("State = %+v, %v", st, err)
	}
	ctrAddr := net.JoinHostPort(st.Networks[0].IP.String(), "80")
	published := net.JoinHostPort("198.18.77.1", strconv.Itoa(int(st.Ports[0].HostPort)))

	nsc := make(chan *os.File)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	// On a thread of its own, which ends with the test (never the main
	// thread, whose namespace /proc/self/net shows for the whole program).
	go initproc.OnOwnThread(func() {
		if unix.Unshare(unix.CLONE_NEWNET) != nil {
			nsc <- nil
			return
		}
		f, _ := os.Open("/proc/thread-self/ns/net")
		nsc <- f
		<-done
	})
	ns := <-nsc
	if ns == nil {
		t.Fatal("cannot make the neighbour's namespace")
	}
	defer ns.Close()
	suffix := strconv.Itoa(os.Getpid() % 100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tnb" + suffix}, PeerName: "tnbpeer" + suffix}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })
	mustNL := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustNL(netlink.AddrAdd(veth, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 77, 1), Mask: net.CIDRMask(30, 32)}}))
	mustNL(netlink.LinkSetUp(veth))
	peer, err := netlink.LinkByName("tnbpeer" + suffix)
	mustNL(err)
	mustNL(netlink.LinkSetNsFd(peer, int(ns.Fd())))
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	mustNL(err)
	defer h.Close()
	peer, err = h.LinkByName("tnbpeer" + suffix)
	mustNL(err)
	mustNL(h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 77, 2), Mask: net.CIDRMask(30, 32)}}))
	mustNL(h.LinkSetUp(peer))
	mustNL(h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IPv4(198, 18, 77, 1)}))

	// dial connects from the neighbour's namespace and returns what an
	// HTTP GET reads, or the error.
	dial := func(addr string) (string, error) {
		var body []byte
		err := inNetNS(ns, func() error {
			conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
			body, err = io.ReadAll(conn)
			return err
		})
		return string(body), err
	}
	if got, err := dial(published); err != nil || !strings.Contains(got, "hello from web") {
		t.Fatalf("the neighbour through the published port %s: %q, %v", published, got, err)
	}
	if got, err := dial(ctrAddr); err == nil {
		t.Errorf("the neighbour reached the container's own address %s: %q", ctrAddr, got)
	}
}

// inNetNS runs fn on a thread in the network namespace ns, which ends
// with it (initproc.OnOwnThread); its sockets are made there.
func inNetNS(ns *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go initproc.OnOwnThread(func() {
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	})
	return <-errc
}

// TestNetworkOwnNameServer: a name server of the container's own binds
// 0.0.0.0:53 (asking for address reuse, as dnsmasq, unbound, BIND and
// CoreDNS do) beside berth's on 127.0.0.11:53; container names still
// resolve through berth's, and the rest of port 53 reaches the
// container's.
func TestNetworkOwnNameServer(t *testing.T) {
	rt := busyboxRuntime(t)
	if _, err := rt.CreateNetwork(context.Background(), "dnsown"); err != nil {
		t.Fatal(err)
	}
	c := sleeper(t, rt, "dns-own", berth.WithNetwork("dnsown"), noUpstream)
	ns := netnsOf(t, c)
	reuse := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
	}}
	var own net.PacketConn
	if err := inNetNS(ns, func() (err error) {
		own, err = reuse.ListenPacket(context.Background(), "udp4", "0.0.0.0:53")
		return err
	}); err != nil {
		t.Fatalf("binding 0.0.0.0:53 in the container: %v", err)
	}
	defer own.Close()

	ip := ipOf(t, c)
	if out, err := execOutput(t, c, "nslookup dns-own"); err != nil || !strings.Contains(out, "Address: "+ip.String()) {
		t.Errorf("nslookup dns-own with the container's server on 0.0.0.0:53: %q, %v; want %s", out, err, ip)
	}
	if err := inNetNS(ns, func() error {
		conn, err := net.Dial("udp4", netip.AddrPortFrom(ip, 53).String())
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("to the container's server"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	own.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _, err := own.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to the container's server" {
		t.Errorf("the container's server on 0.0.0.0:53 read %q, %v", buf[:n], err)
	}
}

// TestWaitListeningUDPNameServer: berth's own name server in the
// container's namespace (127.0.0.11:53) is not something the container
// listens on: WaitListening for UDP 53 waits until a server of the
// container's binds it.
func TestWaitListeningUDPNameServer(t *testing.T) {
	rt := busyboxRuntime(t)
	if _, err := rt.CreateNetwork(context.Background(), "dnswait"); err != nil {
		t.Fatal(err)
	}
	c := sleeper(t, rt, "dns-wait", berth.WithNetwork("dnswait"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.WaitListening(ctx, "udp", 53); err == nil {
		t.Fatal("WaitListening(udp, 53) returned with nothing of the container's on the port")
	}
	// A server of the container's on another address of the port (not
	// 0.0.0.0 without address reuse: the name server holds 127.0.0.11:53).
	ns := netnsOf(t, c)
	var conn net.PacketConn
	if err := inNetNS(ns, func() (err error) {
		conn, err = net.ListenPacket("udp4", "127.0.0.1:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitListening(ctx, "udp", 53); err != nil {
		t.Errorf("WaitListening(udp, 53) with a server on 127.0.0.1:53: %v", err)
	}
}

// TestNetworkFixedAddresses: WithIP gives a container its address on a
// network with a subnet of the user's, at every start, and another
// running container's address is refused (ErrInUse) until it stops;
// WithMACAddress sets the interface's Ethernet address, on the default
// network too; addresses docker refuses are refused.
func TestNetworkFixedAddresses(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	if _, err := rt.CreateNetwork(ctx, "fixed", berth.WithSubnet("10.231.10.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CreateNetwork(ctx, "chosen"); err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr("10.231.10.50")
	a := sleeper(t, rt, "fixed-a", berth.WithNetwork("fixed"), berth.WithIP("fixed", want.String()), berth.WithMACAddress("fixed", "02:AA:bb:cc:dd:ee"))
	if got := ipOf(t, a); got != want {
		t.Fatalf("WithIP %s: the container has %s", want, got)
	}
	if out, err := execOutput(t, a, "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk '{print $4}'"); err != nil || out != "02:aa:bb:cc:dd:ee\n10.231.10.50/24\n" {
		t.Errorf("eth0's MAC and address: %q, %v", out, err)
	}
	b := sleeper(t, rt, "fixed-b", berth.WithNetwork("fixed"))
	if out, err := execOutput(t, b, "ping -c 1 -W 3 fixed-a >/dev/null && echo reached"); err != nil || out != "reached\n" {
		t.Errorf("another container pinging fixed-a by name: %q, %v", out, err)
	}
	if _, err := rt.Run(ctx, "busybox", sh("exec sleep 300"), berth.WithNetwork("fixed"), berth.WithIP("fixed", want.String()), berth.WithAutoRemove()); !errors.Is(err, berth.ErrInUse) {
		t.Errorf("a second container with a running one's address: %v, want ErrInUse", err)
	}
	if err := a.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c := sleeper(t, rt, "fixed-c", berth.WithNetwork("fixed"), berth.WithIP("fixed", want.String()))
	if err := a.Start(ctx); !errors.Is(err, berth.ErrInUse) {
		t.Errorf("starting again while another container has its address: %v, want ErrInUse", err)
	}
	if err := c.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatalf("starting again once its address is free: %v", err)
	}
	if got := ipOf(t, a); got != want {
		t.Errorf("started again: the container has %s, want %s", got, want)
	}

	d := sleeper(t, rt, "fixed-mac", berth.WithMACAddress(berth.DefaultNetwork, "02:00:00:00:00:07"))
	if out, err := execOutput(t, d, "cat /sys/class/net/eth0/address"); err != nil || out != "02:00:00:00:00:07\n" {
		t.Errorf("WithMACAddress on the default network: %q, %v", out, err)
	}

	for _, bad := range []struct {
		name string
		opts []berth.RunOption
	}{
		{"an address on the default network", []berth.RunOption{berth.WithIP(berth.DefaultNetwork, "172.17.0.9")}},
		{"an address on a network whose subnet berth chose", []berth.RunOption{berth.WithNetwork("chosen"), berth.WithIP("chosen", "10.0.0.9")}},
		{"an address outside the subnet", []berth.RunOption{berth.WithNetwork("fixed"), berth.WithIP("fixed", "10.231.11.5")}},
		{"the gateway's address", []berth.RunOption{berth.WithNetwork("fixed"), berth.WithIP("fixed", "10.231.10.1")}},
		{"the subnet's first address", []berth.RunOption{berth.WithNetwork("fixed"), berth.WithIP("fixed", "10.231.10.0")}},
		{"the subnet's last address", []berth.RunOption{berth.WithNetwork("fixed"), berth.WithIP("fixed", "10.231.10.255")}},
		{"an IPv6 address", []berth.RunOption{berth.WithNetwork("fixed"), berth.WithIP("fixed", "fd00::5")}},
		{"no address", []berth.RunOption{berth.WithNetwork("fixed"), berth.WithIP("fixed", "ten")}},
		{"a network the container does not join", []berth.RunOption{berth.WithNetwork("fixed"), berth.WithIP("chosen", "10.0.0.9")}},
		{"a multicast MAC address", []berth.RunOption{berth.WithMACAddress(berth.DefaultNetwork, "01:00:5e:00:00:01")}},
		{"a MAC address of zeros", []berth.RunOption{berth.WithMACAddress(berth.DefaultNetwork, "00:00:00:00:00:00")}},
		{"a long MAC address", []berth.RunOption{berth.WithMACAddress(berth.DefaultNetwork, "02:00:00:00:00:00:00:07")}},
		{"no MAC address", []berth.RunOption{berth.WithMACAddress(berth.DefaultNetwork, "zz")}},
	} {
		if _, err := rt.Run(ctx, "busybox", sh("true"), append(bad.opts, berth.WithAutoRemove())...); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", bad.name, err)
		}
	}
}

// TestStatsNetIO: Stats counts the bytes a container sent and received
// on its network interfaces (docker stats' NET I/O), not loopback's, and
// none without a network.
func TestStatsNetIO(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := sleeper(t, rt, "talker")
	before, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gw := gatewayOf(t, rt, berth.DefaultNetwork)
	if out, err := execOutput(t, c, "ping -A -c 3 -W 2 -s 1000 "+gw.String()+" >/dev/null && ping -A -c 20 -s 1000 127.0.0.1 >/dev/null && echo pinged"); err != nil || out != "pinged\n" {
		t.Fatalf("pinging the gateway: %q, %v", out, err)
	}
	after, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Three echo requests and replies of 1000 bytes each way; the twenty
	// to loopback (20 kB each way) must not count.
	if sent, got := after.NetTx-before.NetTx, after.NetRx-before.NetRx; sent < 3000 || got < 3000 || sent > 15000 || got > 15000 {
		t.Errorf("NET I/O of three 1000-byte pings: sent %d, received %d bytes", sent, got)
	}
	quiet := sleeper(t, rt, "quiet", berth.WithNetworkMode("none"))
	if out, err := execOutput(t, quiet, "ping -A -c 5 -s 1000 127.0.0.1 >/dev/null && echo pinged"); err != nil || out != "pinged\n" {
		t.Fatalf("pinging loopback: %q, %v", out, err)
	}
	if s, err := quiet.Stats(ctx); err != nil || s.NetRx != 0 || s.NetTx != 0 {
		t.Errorf("Stats without a network: %+v, %v; want no NET I/O", s, err)
	}
}
