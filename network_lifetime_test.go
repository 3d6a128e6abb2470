package berth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// netPlan is what the helper program (helperNetProgram) does in a root:
// create the networks, run the containers, print "started", and then exit
// (when every container is detached) or block until killed.
type netPlan struct {
	Root       string
	Networks   []string
	Containers []planContainer
}

type planContainer struct {
	Name    string
	Network string
	Aliases []string
	Publish []string
	Script  string
	Detach  bool
}

// The helper program is recognised here rather than in TestMain so that it
// lives beside the tests that start it; berth's own init, which runs
// before this one, has already handled berth's re-execs.
func init() {
	if plan := os.Getenv("BERTH_TEST_NET_PLAN"); plan != "" {
		helperNetProgram(plan)
	}
}

func helperNetProgram(planJSON string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var plan netPlan
	if err := json.Unmarshal([]byte(planJSON), &plan); err != nil {
		fail(err)
	}
	ctx := context.Background()
	rt, err := berth.New(plan.Root)
	if err != nil {
		fail(err)
	}
	for _, n := range plan.Networks {
		if _, err := rt.CreateNetwork(ctx, n); err != nil && !errors.Is(err, berth.ErrExists) {
			fail(err)
		}
	}
	all := true
	for _, c := range plan.Containers {
		opts := []berth.RunOption{berth.WithName(c.Name), berth.WithPublish(c.Publish...)}
		if c.Network != "" {
			opts = append(opts, berth.WithNetwork(c.Network, c.Aliases...))
		}
		if c.Detach {
			opts = append(opts, berth.WithDetach())
		}
		all = all && c.Detach
		if _, err := rt.Run(ctx, "busybox", sh(c.Script), opts...); err != nil {
			fail(err)
		}
	}
	fmt.Println("started")
	if all {
		os.Exit(0)
	}
	select {}
}

// startNetProgram runs plan in a separate program (this test binary) and
// returns once its containers run.
func startNetProgram(t *testing.T, plan netPlan) *exec.Cmd {
	t.Helper()
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	return startHelperProgram(t, "BERTH_TEST_NET_PLAN="+string(b))
}

func webScript(name string) string {
	return fmt.Sprintf("mkdir -p /www && echo hello from %s > /www/index.html && exec httpd -f -p 80 -h /www", name)
}

// rootNames are the host-wide names berth gives a root's things: the
// bridges of its networks ("berth" and 9 hex digits of the sha256 of root
// tag and network ID), its containers' host veths ("bv", 10 characters of
// the container ID, the interface's index) and its nftables table.
type rootNames struct {
	bridges, veths []string
	table          string
}

func namesOf(root string, networkIDs, containerIDs []string) rootNames {
	n := rootNames{table: "berth-" + rootTag(root)}
	for _, id := range networkIDs {
		h := sha256.Sum256([]byte(rootTag(root) + "/" + id))
		n.bridges = append(n.bridges, "berth"+hex.EncodeToString(h[:])[:9])
	}
	for _, id := range containerIDs {
		for i := range 4 {
			n.veths = append(n.veths, "bv"+id[:10]+strconv.Itoa(i))
		}
	}
	return n
}

func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("needs %s to read the host's network state: %v", name, err)
	}
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// hostLinks is the set of link names of `ip -o link`.
func hostLinks(t *testing.T) map[string]bool {
	t.Helper()
	links := map[string]bool{}
	for _, l := range strings.Split(command(t, "ip", "-o", "link"), "\n") {
		f := strings.SplitN(l, ": ", 3)
		if len(f) >= 2 {
			name, _, _ := strings.Cut(f[1], "@")
			links[name] = true
		}
	}
	return links
}

// netFootprint is the part of the host's network state berth can touch,
// as `ip -o link`, `ip netns` and `nft list ruleset` show it, narrowed to
// berth's own lines so that docker and podman at work on the same machine
// do not disturb it.
type netFootprint struct {
	links          []string // berth* and bv* links of the root
	netns          string   // `ip netns`, but podman's netns-*
	table          string   // the root's nftables table, "" when absent
	forward        []string // berth's rules in the host's filter FORWARD chain
	anyBerthBridge bool
}

func footprint(t *testing.T, names rootNames) netFootprint {
	t.Helper()
	var fp netFootprint
	links := hostLinks(t)
	for _, l := range append(append([]string(nil), names.bridges...), names.veths...) {
		if links[l] {
			fp.links = append(fp.links, l)
		}
	}
	for l := range links {
		fp.anyBerthBridge = fp.anyBerthBridge || strings.HasPrefix(l, "berth")
	}
	var ns []string
	for _, l := range strings.Split(strings.TrimSpace(command(t, "ip", "netns")), "\n") {
		if l != "" && !strings.HasPrefix(l, "netns-") {
			ns = append(ns, l)
		}
	}
	fp.netns = strings.Join(ns, "\n")
	ruleset := command(t, "nft", "list", "ruleset")
	fp.table = nftBlock(ruleset, "table ip "+names.table+" {")
	filter := nftBlock(ruleset, "table ip filter {")
	for _, l := range strings.Split(nftBlock(filter, "chain FORWARD {"), "\n") {
		if strings.Contains(l, `"berth*"`) {
			fp.forward = append(fp.forward, strings.TrimSpace(l))
		}
	}
	return fp
}

// nftBlock returns the block of text that opens with the line header and
// ends at its closing brace, "" when there is none.
func nftBlock(text, header string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != header {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, "\t "))
		for j := i + 1; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == "}" && len(lines[j])-len(strings.TrimLeft(lines[j], "\t ")) == indent {
				return strings.Join(lines[i:j+1], "\n")
			}
		}
		return strings.Join(lines[i:], "\n")
	}
	return ""
}

// settledFootprint is footprint once the host's berth links are gone, or
// after five seconds. A veth goes with its container's network namespace,
// which the kernel tears down asynchronously once the namespace's last
// process is dead: after a sweep killed them, the links go a moment later.
func settledFootprint(t *testing.T, names rootNames) netFootprint {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fp := footprint(t, names)
		if len(fp.links) == 0 || time.Now().After(deadline) {
			return fp
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkFootprint compares the host's state with the baseline: none of the
// root's links, the same netns, the root's table as it was, and berth's
// forward rules present once each exactly while some berth bridge (of any
// root) exists on the host, and absent otherwise.
func checkFootprint(t *testing.T, when string, before, after netFootprint) {
	t.Helper()
	if len(after.links) > 0 {
		t.Errorf("%s: links left on the host: %v", when, after.links)
	}
	if d := diffLines(before.netns, after.netns); d != "" {
		t.Errorf("%s: ip netns (-before +after):\n%s", when, d)
	}
	if d := diffLines(before.table, after.table); d != "" {
		t.Errorf("%s: nftables table (-before +after):\n%s", when, d)
	}
	want := []string(nil)
	if after.anyBerthBridge {
		want = []string{`iifname "berth*" accept`, `oifname "berth*" accept`}
	}
	got := slices.Clone(after.forward)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: berth's rules in filter FORWARD = %q, want %q (a berth bridge on the host: %v)", when, got, want, after.anyBerthBridge)
	}
}

// portFree reports whether a TCP or UDP socket can bind port on all of the
// host's addresses: no reservation holds it.
func portFree(proto string, port uint16) bool {
	addr := fmt.Sprintf("0.0.0.0:%d", port)
	if proto == "udp" {
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// TestNetworkKilledProgram SIGKILLs a program whose containers are on a
// user-defined and the default network with TCP and UDP ports published;
// the next New on the root leaves the host's links, netns and nftables
// as they were before, and the ports free.
func TestNetworkKilledProgram(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	setup, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	berthtest.Busybox(t, setup, "busybox")
	setup.Close()
	before := footprint(t, namesOf(root, nil, nil))

	tcpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	prog := startNetProgram(t, netPlan{Root: root, Networks: []string{"appnet"}, Containers: []planContainer{
		{Name: "web", Network: "appnet", Aliases: []string{"www"}, Publish: []string{fmt.Sprintf("%d:80", tcpPort), fmt.Sprintf("%d:53/udp", udpPort)}, Script: webScript("web")},
		{Name: "db", Network: "appnet", Script: "exec sleep 300"},
		{Name: "plain", Publish: []string{"127.0.0.1::80"}, Script: webScript("plain")},
	}})
	defer func() {
		prog.Process.Kill()
		prog.Wait()
	}()

	observer, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	var ctrIDs, netIDs []string
	list, err := observer.Containers(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("Containers = %d, %v; want 3", len(list), err)
	}
	for _, info := range list {
		ctrIDs = append(ctrIDs, info.ID)
	}
	for _, n := range []string{"appnet", berth.DefaultNetwork} {
		nw, err := observer.Network(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		netIDs = append(netIDs, nw.ID)
	}
	web, err := observer.Container(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := web.WaitListening(wctx, "tcp", 80); err != nil {
		t.Fatal(err)
	}
	if got := httpGet(t, fmt.Sprintf("127.0.0.1:%d", tcpPort)); got != "hello from web" {
		t.Fatalf("the killed program's published port before the kill: %q", got)
	}
	observer.Close()
	names := namesOf(root, netIDs, ctrIDs)
	running := footprint(t, names)
	// The names are berth's: while the containers run, their links and
	// table exist (or the check below would prove nothing).
	if len(running.links) != len(names.bridges)+len(list) || running.table == "" || !strings.Contains(running.table, "dport "+strconv.Itoa(int(tcpPort))) {
		t.Fatalf("while running: links %v (want %d bridges and a veth per container), table:\n%s", running.links, len(names.bridges), running.table)
	}
	if portFree("tcp", tcpPort) || portFree("udp", udpPort) {
		t.Fatalf("ports %d/tcp and %d/udp are not reserved while published", tcpPort, udpPort)
	}

	prog.Process.Signal(syscall.SIGKILL)
	prog.Wait()

	rt, err := berth.New(root)
	if err != nil {
		t.Fatalf("New after the kill: %v", err)
	}
	defer rt.Close()
	checkFootprint(t, "after New", before, settledFootprint(t, names))
	if !portFree("tcp", tcpPort) || !portFree("udp", udpPort) {
		t.Errorf("ports %d/tcp and %d/udp still held after New", tcpPort, udpPort)
	}
	if ents, _ := filepath.Glob(filepath.Join(root, "endpoints", "*", "*.json")); len(ents) > 0 {
		t.Errorf("endpoints left after New: %v", ents)
	}
	for _, id := range ctrIDs {
		if ents, _ := filepath.Glob(filepath.Join(root, "locks", "*-"+id)); len(ents) > 0 {
			t.Errorf("lock files of a swept container left after New: %v", ents)
		}
	}
	// The network works again, on the port the dead program held.
	httpServer(t, rt, "web", berth.WithNetwork("appnet"), berth.WithPublish(fmt.Sprintf("%d:80", tcpPort)))
	if got := httpGet(t, fmt.Sprintf("127.0.0.1:%d", tcpPort)); got != "hello from web" {
		t.Errorf("port %d after New: %q", tcpPort, got)
	}
}

// TestNetworkKilledProgramRulesAfterRead: a killed program's published
// port is unpublished by the next New even when a live program read the
// network's endpoints in between (Endpoints, a name lookup) and the bridge
// stays up for another container. Reading used to delete the dead
// container's endpoint file, and the sweep, finding none, left its rule
// sending the freed host port to the dead container's address.
func TestNetworkKilledProgramRulesAfterRead(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	rt := berthtest.NewRuntime(t)
	root := rt.Root()
	berthtest.Busybox(t, rt, "busybox")
	nw, err := rt.CreateNetwork(ctx, "appnet")
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, "busybox", sh("exec sleep 300"), berth.WithNetwork("appnet")) // keeps the bridge up

	port := freePort(t, "tcp")
	prog := startNetProgram(t, netPlan{Root: root, Containers: []planContainer{
		{Name: "web", Network: "appnet", Publish: []string{fmt.Sprintf("%d:80", port)}, Script: webScript("web")},
	}})
	names := namesOf(root, nil, nil)
	if !strings.Contains(footprint(t, names).table, "dport "+strconv.Itoa(int(port))) {
		t.Fatalf("no rule for port %d while published", port)
	}
	prog.Process.Signal(syscall.SIGKILL)
	prog.Wait()
	if eps, err := nw.Endpoints(ctx); err != nil || len(eps) != 1 {
		t.Fatalf("Endpoints after the kill = %v, %v; want the live container's only", eps, err)
	}

	sameRoot(t, rt) // its New sweeps
	if table := footprint(t, names).table; strings.Contains(table, "dport "+strconv.Itoa(int(port))) {
		t.Errorf("the dead container's rule for port %d is left after New:\n%s", port, table)
	}
	if !portFree("tcp", port) {
		t.Errorf("port %d still held after New", port)
	}
}

// TestNetworkDetachedOutlivesProgram starts a detached container with
// published ports from a program that then exits: its ports, and its name
// on its network, keep working; Remove frees them.
func TestNetworkDetachedOutlivesProgram(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	berthtest.Busybox(t, rt, "busybox")
	before := footprint(t, namesOf(root, nil, nil))
	host := hostAddr(t)

	port := freePort(t, "tcp")
	prog := startNetProgram(t, netPlan{Root: root, Networks: []string{"svc"}, Containers: []planContainer{
		{Name: "lasting", Network: "svc", Aliases: []string{"site"}, Publish: []string{fmt.Sprintf("%d:80", port), "127.0.0.1::80"}, Script: webScript("lasting"), Detach: true},
	}})
	if err := prog.Wait(); err != nil {
		t.Fatalf("the starting program: %v", err)
	}
	c, err := rt.Container(ctx, "lasting")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, berth.WithForce())
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitListening(wctx, "tcp", 80); err != nil {
		t.Fatal(err)
	}
	ports, err := c.Ports(ctx)
	if err != nil || len(ports) != 2 || ports[0].HostPort != port || ports[1].HostIP != "127.0.0.1" || ports[1].HostPort == 0 {
		t.Fatalf("Ports = %+v, %v; want %d and a free port on 127.0.0.1", ports, err, port)
	}
	loopPort := ports[1].HostPort
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("%s:%d", host, port), fmt.Sprintf("127.0.0.1:%d", loopPort)} {
		if got := httpGet(t, addr); got != "hello from lasting" {
			t.Errorf("GET %s after its program exited: %q", addr, got)
		}
	}
	if portFree("tcp", port) || portFree("tcp", loopPort) {
		t.Errorf("ports %d and %d are not reserved after the starting program exited", port, loopPort)
	}
	// Its name server (served by the monitor now) and its name on the
	// network.
	if out, err := execOutput(t, c, "nslookup site"); err != nil || !strings.Contains(out, ipOf(t, c).String()) {
		t.Errorf("nslookup site in the detached container: %q, %v", out, err)
	}
	if out, err := output(t, rt, "busybox", sh("wget -q -O - http://site/"), berth.WithNetwork("svc")); err != nil || strings.TrimSpace(out) != "hello from lasting" {
		t.Errorf("wget http://site/ from another container: %q, %v", out, err)
	}

	id := c.ID
	if err := c.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	if !portFree("tcp", port) || !portFree("tcp", loopPort) {
		t.Errorf("ports %d and %d still held after Remove", port, loopPort)
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		conn.Close()
		t.Errorf("127.0.0.1:%d still accepts connections after Remove", port)
	}
	svc, err := rt.Network(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	names := namesOf(root, []string{svc.ID}, []string{id})
	// The kernel deletes the veth with the container's namespace, a moment
	// after the container is gone.
	if !eventually(2*time.Second, func() bool { return !hostLinks(t)[names.veths[0]] }) {
		t.Errorf("veth %s left 2s after Remove", names.veths[0])
	}
	fp := footprint(t, names)
	if strings.Contains(fp.table, "dnat to") {
		t.Errorf("DNAT rules left after Remove:\n%s", fp.table)
	}
	rt.Close()
	// The monitor, the last Runtime that used the bridge, exits once idle
	// for a moment; the bridge and the table go then.
	eventually(10*time.Second, func() bool {
		fp := footprint(t, names)
		return len(fp.links) == 0 && fp.table == before.table
	})
	checkFootprint(t, "after Remove, Close and the monitor's exit", before, footprint(t, names))
}

// TestNetworkCycles runs and removes 200 containers publishing one fixed
// port on a user-defined network: each finds the port free (the last one's
// reservation and rules are gone), every 50th serves it, and the host is
// back at its baseline once the Runtime closes.
func TestNetworkCycles(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	berthtest.Busybox(t, rt, "busybox")
	before := footprint(t, namesOf(root, nil, nil))
	nw, err := rt.CreateNetwork(ctx, "cycles")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "tcp")
	spec := fmt.Sprintf("127.0.0.1:%d:80", port)
	var ids []string
	start := time.Now()
	for i := range 200 {
		name := fmt.Sprintf("cycle%d", i)
		serve := i%50 == 49
		script := "true"
		if serve {
			script = webScript(name)
		}
		c, err := rt.Run(ctx, "busybox", sh(script), berth.WithName(name), berth.WithNetwork("cycles"), berth.WithPublish(spec))
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		ids = append(ids, c.ID)
		if serve {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.WaitListening(wctx, "tcp", 80)
			cancel()
			if err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			if got := httpGet(t, fmt.Sprintf("127.0.0.1:%d", port)); got != "hello from "+name {
				t.Fatalf("cycle %d: port %d answers %q", i, port, got)
			}
		} else if err := c.Wait(ctx); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := c.Remove(ctx, berth.WithForce()); err != nil {
			t.Fatalf("cycle %d: Remove: %v", i, err)
		}
	}
	t.Logf("200 cycles in %v", time.Since(start))
	names := namesOf(root, []string{nw.ID}, ids)
	// The kernel deletes the last veths with their namespaces, a moment
	// after their containers are gone.
	var fp netFootprint
	eventually(2*time.Second, func() bool {
		fp = footprint(t, names)
		return len(fp.links) == 1
	})
	if len(fp.links) != 1 || fp.links[0] != names.bridges[0] {
		t.Errorf("links while the Runtime is open: %v, want only the bridge %s", fp.links, names.bridges[0])
	}
	if strings.Contains(fp.table, "dnat to") {
		t.Errorf("DNAT rules left after the cycles:\n%s", fp.table)
	}
	if !portFree("tcp", port) {
		t.Errorf("port %d still held after the cycles", port)
	}
	if ents, _ := filepath.Glob(filepath.Join(root, "endpoints", "*", "*.json")); len(ents) > 0 {
		t.Errorf("endpoints left: %v", ents)
	}
	rt.Close()
	checkFootprint(t, "after Close", before, footprint(t, names))
}

// TestNetworkContainerModeProviderRemoved removes a container whose
// network namespace another container (container:NAME) still uses: the
// removed container's veth and address must not stay on its network, where
// the address is handed out again.
func TestNetworkContainerModeProviderRemoved(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	base := sleeper(t, rt, "provider")
	baseIP := ipOf(t, base)
	joiner := sleeper(t, rt, "user", berth.WithNetworkMode("container:provider"))
	veth := namesOf("", nil, []string{base.ID}).veths[0]
	if !hostLinks(t)[veth] {
		t.Fatalf("no veth %s while the provider runs", veth)
	}
	if err := base.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	if !eventually(2*time.Second, func() bool { return !hostLinks(t)[veth] }) {
		t.Errorf("veth %s of the removed provider still on the host 2s later, while container:provider runs", veth)
	}
	if out, err := execOutput(t, joiner, "ip -o -4 addr"); err == nil && strings.Contains(out, " "+baseIP.String()+"/") {
		t.Errorf("the joiner still has the removed provider's address %s, free for another container:\n%s", baseIP, out)
	}
}

// TestNetworkRemoveWithDialedConn removes a container while the program
// still holds a connection made with Dial, whose socket keeps the
// container's network namespace alive: the container's veth and address
// must leave the bridge all the same, or the address, free again, would
// answer for a container that is gone.
func TestNetworkRemoveWithDialedConn(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c := httpServer(t, rt, "dialed")
	ip := ipOf(t, c)
	conn, err := c.Dial(ctx, "tcp", "127.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	veth := namesOf("", nil, []string{c.ID}).veths[0]
	if err := c.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	if !eventually(2*time.Second, func() bool { return !hostLinks(t)[veth] }) {
		t.Errorf("veth %s of the removed container still on the host 2s later, while a Dial connection is open", veth)
	}
	out, err := output(t, rt, "busybox", sh(fmt.Sprintf("ping -c1 -W1 %s >/dev/null 2>&1; echo ping=$?", ip)), noUpstream)
	if err != nil || strings.TrimSpace(out) != "ping=1" {
		t.Errorf("the removed container's address %s from the network: %q, %v; want no answer", ip, out, err)
	}
}

// TestNetworkDetachedBridgeGoes removes a detached container that was the
// only user of its network, from a program that never used the network:
// once the monitor that ran the container has nothing left to do, the
// bridge and the root's rules go.
func TestNetworkDetachedBridgeGoes(t *testing.T) {
	berthtest.Skip(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	rt, err := berth.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	berthtest.Busybox(t, rt, "busybox")
	before := footprint(t, namesOf(root, nil, nil))
	prog := startNetProgram(t, netPlan{Root: root, Networks: []string{"solo"}, Containers: []planContainer{
		{Name: "alone", Network: "solo", Publish: []string{"127.0.0.1::80"}, Script: "exec sleep 300", Detach: true},
	}})
	if err := prog.Wait(); err != nil {
		t.Fatalf("the starting program: %v", err)
	}
	c, err := rt.Container(ctx, "alone")
	if err != nil {
		t.Fatal(err)
	}
	solo, err := rt.Network(ctx, "solo")
	if err != nil {
		t.Fatal(err)
	}
	names := namesOf(root, []string{solo.ID}, []string{c.ID})
	if fp := footprint(t, names); len(fp.links) != 2 {
		t.Fatalf("links while the container runs: %v, want its bridge and veth", fp.links)
	}
	if err := c.Remove(ctx, berth.WithForce()); err != nil {
		t.Fatal(err)
	}
	var fp netFootprint
	eventually(10*time.Second, func() bool {
		fp = footprint(t, names)
		return len(fp.links) == 0 && fp.table == before.table
	})
	checkFootprint(t, "10s after Remove", before, fp)
}
