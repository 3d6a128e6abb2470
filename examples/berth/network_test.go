package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseNetworkFlag(t *testing.T) {
	for _, tc := range []struct {
		in      string
		name    string
		aliases []string
		err     bool
	}{
		{in: "front", name: "front"},
		{in: "container:web", name: "container:web"},
		{in: "name=front,alias=a,alias=b", name: "front", aliases: []string{"a", "b"}},
		{in: "alias=a", err: true},
		{in: "name=front,ip=10.0.0.2", err: true},
	} {
		name, aliases, err := parseNetworkFlag(tc.in)
		if (err != nil) != tc.err || name != tc.name || !slices.Equal(aliases, tc.aliases) {
			t.Errorf("parseNetworkFlag(%q) = %q, %q, %v; want %q, %q (error %v)", tc.in, name, aliases, err, tc.name, tc.aliases, tc.err)
		}
	}
}

func TestExpandPortRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "80", want: []string{"80"}},
		{in: "127.0.0.1::80/udp", want: []string{"127.0.0.1::80/udp"}},
		{in: "80-82", want: []string{"80", "81", "82"}},
		{in: "8000-8001:80-81", want: []string{"8000:80", "8001:81"}},
		{in: "127.0.0.1:8000-8001:80-81/udp", want: []string{"127.0.0.1:8000:80/udp", "127.0.0.1:8001:81/udp"}},
		{in: "127.0.0.1::80-81", want: []string{"127.0.0.1::80", "127.0.0.1::81"}},
		{in: "8000-8002:80-81", err: true},
		{in: "82-80", err: true},
		{in: "x-81", err: true},
	} {
		got, err := expandPortRange(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("expandPortRange(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestNetworkOptionsRefused(t *testing.T) {
	for _, f := range []runFlags{
		{networkAliases: []string{"a"}}, // aliases on the default bridge
		{networks: []string{"bridge"}, networkAliases: []string{"a"}},
		{networks: []string{"none", "front"}}, // a mode and a network
		{networks: []string{"host"}, networkAliases: []string{"a"}},
		{publish: []string{"1-2:80"}},
	} {
		if _, err := f.networkOptions(); err == nil {
			t.Errorf("networkOptions(%+v) accepted", f)
		}
	}
}

// TestNetworkCLI drives network create/ls/inspect/rm through the binary.
func TestNetworkCLI(t *testing.T) {
	root, _ := setup(t)
	id := strings.TrimSpace(mustBerth(t, root, "network", "create", "--subnet", "10.231.7.0/24", "--gateway", "10.231.7.254",
		"--internal", "--label", "team=db", "--label", "bare", "backend"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("network create printed %q, want a 64-digit network ID", id)
	}
	if res := runBerth(t, root, nil, "network", "create", "backend"); res.code != 1 || !strings.Contains(res.stderr, "already exists") {
		t.Errorf("network create of a taken name: exit %d, %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "network", "create", "--gateway", "10.1.1.1", "other"); res.code != 1 || !strings.Contains(res.stderr, "subnet") {
		t.Errorf("network create --gateway without --subnet: exit %d, %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "network", "create", "--subnet", "10.231.7.128/25", "overlapping"); res.code != 1 || !strings.Contains(res.stderr, "overlaps") {
		t.Errorf("network create of an overlapping subnet: exit %d, %q", res.code, res.stderr)
	}
	mustBerth(t, root, "network", "create", "frontend")

	out := mustBerth(t, root, "network", "ls")
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, columns.Split(strings.TrimSpace(l), -1))
	}
	want := [][]string{
		{"NETWORK ID", "NAME", "DRIVER", "SCOPE"},
		{"<id>", "backend", "bridge", "local"},
		{"<id>", "bridge", "bridge", "local"},
		{"<id>", "frontend", "bridge", "local"},
	}
	if len(rows) != len(want) {
		t.Fatalf("network ls:\n%s\nwant %d rows", out, len(want))
	}
	for i, r := range rows {
		if i > 0 && len(r) == 4 && regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(r[0]) {
			r[0] = "<id>"
		}
		if !slices.Equal(r, want[i]) {
			t.Errorf("network ls row %d = %q, want %q", i, r, want[i])
		}
	}
	if got := strings.Fields(mustBerth(t, root, "network", "ls", "-q")); len(got) != 3 || got[0] != id[:12] {
		t.Errorf("network ls -q = %q, want 3 short IDs, %s first", got, id[:12])
	}
	if got := mustBerth(t, root, "network", "ls", "--format", "{{.Name}} {{.Internal}} {{.Labels}}"); !strings.HasPrefix(got, "backend true bare=,team=db\n") {
		t.Errorf("network ls --format = %q", got)
	}

	var inspected []struct {
		Name, Id, Driver string
		IPAM             struct {
			Config []struct{ Subnet, Gateway string }
		}
		Internal   bool
		Labels     map[string]string
		Containers map[string]any
	}
	out = mustBerth(t, root, "network", "inspect", "backend", id[:12])
	if err := json.Unmarshal([]byte(out), &inspected); err != nil || len(inspected) != 2 {
		t.Fatalf("network inspect: %v\n%s", err, out)
	}
	got := inspected[0]
	if got.Name != "backend" || got.Id != id || got.Driver != "bridge" || !got.Internal || got.Labels["team"] != "db" ||
		len(got.IPAM.Config) != 1 || got.IPAM.Config[0].Subnet != "10.231.7.0/24" || got.IPAM.Config[0].Gateway != "10.231.7.254" ||
		got.Containers == nil || len(got.Containers) != 0 {
		t.Errorf("network inspect backend = %+v", got)
	}
	if inspected[1].Id != id {
		t.Errorf("network inspect by ID prefix found %q, want %q", inspected[1].Id, id)
	}
	if got := mustBerth(t, root, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "frontend"); !regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+/\d+\n$`).MatchString(got) {
		t.Errorf("network inspect -f of an allocated subnet = %q", got)
	}
	if res := runBerth(t, root, nil, "network", "inspect", "backend", "nothere"); res.code != 1 || res.stderr != "Error: No such network: nothere\n" || !strings.Contains(res.stdout, `"backend"`) {
		t.Errorf("network inspect with a missing network: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	if out := mustBerth(t, root, "network", "rm", "backend", "frontend"); out != "backend\nfrontend\n" {
		t.Errorf("network rm = %q", out)
	}
	if res := runBerth(t, root, nil, "network", "rm", "backend"); res.code != 1 || res.stderr != "Error: No such network: backend\n" {
		t.Errorf("network rm of a missing network: exit %d, %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "network", "rm", "bridge"); res.code != 1 {
		t.Errorf("network rm bridge: exit %d, %q; want 1", res.code, res.stderr)
	}
	if got := strings.Fields(mustBerth(t, root, "network", "ls", "--format", "{{.Name}}")); !slices.Equal(got, []string{"bridge"}) {
		t.Errorf("networks after rm = %q, want only bridge", got)
	}
	if res := runBerth(t, root, nil, "network", "bogus"); res.code != 1 {
		t.Errorf("network bogus: exit %d", res.code)
	}
}

// httpServer is the shell command of a container serving "hello from
// NAME" on port 80 with busybox httpd.
func httpServer(name string) []string {
	return []string{"sh", "-c", "mkdir /www && echo hello from " + name + " > /www/index.html && exec httpd -f -p 80 -h /www"}
}

// fetch gets url from the host with net/http, retrying while the server
// in the container starts.
func fetch(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("status %s, %v", resp.Status, err)
			continue
		}
		return string(body)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}

// freePort returns a TCP port nothing listens on at 127.0.0.1 now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRunPublish publishes a container's port on a random and on a fixed
// host port, fetches its page from the host, and reads the bindings back
// through port, ps and inspect.
func TestRunPublish(t *testing.T) {
	root := containerSetup(t)
	runDetached(t, root, append([]string{"--name", "web", "-p", "127.0.0.1::80"}, append([]string{"busybox"}, httpServer("web")...)...)...)

	out := mustBerth(t, root, "port", "web")
	m := regexp.MustCompile(`^80/tcp -> 127\.0\.0\.1:(\d+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("port web = %q, want 80/tcp -> 127.0.0.1:PORT", out)
	}
	hostPort := m[1]
	if got := mustBerth(t, root, "port", "web", "80/tcp"); got != "127.0.0.1:"+hostPort+"\n" {
		t.Errorf("port web 80/tcp = %q, want 127.0.0.1:%s", got, hostPort)
	}
	if got := fetch(t, "http://127.0.0.1:"+hostPort+"/"); got != "hello from web\n" {
		t.Errorf("GET through the published port = %q", got)
	}
	if res := runBerth(t, root, nil, "port", "web", "81"); res.code != 1 || res.stderr != "Error: No public port '81/tcp' published for web\n" {
		t.Errorf("port web 81: exit %d, %q", res.code, res.stderr)
	}
	if r := psRowOf(psRows(t, root), "web"); r == nil || !slices.Contains(r, "127.0.0.1:"+hostPort+"->80/tcp") {
		t.Errorf("ps row of web = %q, want a PORTS column 127.0.0.1:%s->80/tcp", r, hostPort)
	}
	if got := mustBerth(t, root, "inspect", "-f", `{{json (index .NetworkSettings.Ports "80/tcp")}} {{.NetworkSettings.Networks.bridge.IPAddress}} {{.NetworkSettings.IPAddress}}`, "web"); !regexp.MustCompile(`^\[\{"HostIp":"127\.0\.0\.1","HostPort":"` + hostPort + `"\}\] (\d+\.\d+\.\d+\.\d+) (\d+\.\d+\.\d+\.\d+)\n$`).MatchString(got) {
		t.Errorf("inspect NetworkSettings = %q", got)
	}

	fixed := freePort(t)
	runDetached(t, root, append([]string{"--name", "fixed", "-p", fmt.Sprintf("127.0.0.1:%d:80", fixed)}, append([]string{"busybox"}, httpServer("fixed")...)...)...)
	if got := mustBerth(t, root, "port", "fixed", "80"); got != fmt.Sprintf("127.0.0.1:%d\n", fixed) {
		t.Errorf("port fixed 80 = %q, want 127.0.0.1:%d", got, fixed)
	}
	if got := fetch(t, fmt.Sprintf("http://127.0.0.1:%d/", fixed)); got != "hello from fixed\n" {
		t.Errorf("GET through the fixed port = %q", got)
	}
	// The port is taken now: a second container cannot have it.
	res := runBerth(t, root, nil, "run", "-d", "-p", fmt.Sprintf("127.0.0.1:%d:80", fixed), "busybox", "sleep", "5")
	if res.code != 125 {
		t.Errorf("run -p of a taken port: exit %d, stderr %q; want 125", res.code, res.stderr)
	}

	// -P publishes what the image EXPOSEs.
	mustBerth(t, root, "run", "--name", "base", "busybox", "true")
	mustBerth(t, root, "commit", "-c", "EXPOSE 80", "base", "exposed")
	runDetached(t, root, append([]string{"--name", "all", "-P", "exposed"}, httpServer("all")...)...)
	out = mustBerth(t, root, "port", "all")
	m = regexp.MustCompile(`^80/tcp -> 0\.0\.0\.0:(\d+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("port all = %q, want 80/tcp -> 0.0.0.0:PORT", out)
	}
	if got := fetch(t, "http://127.0.0.1:"+m[1]+"/"); got != "hello from all\n" {
		t.Errorf("GET through the -P port = %q", got)
	}
	// With -p for an exposed port too, that port is published as -p says
	// only, as docker does.
	given := freePort(t)
	runDetached(t, root, append([]string{"--name", "both", "-P", "-p", fmt.Sprintf("127.0.0.1:%d:80", given), "exposed"}, httpServer("both")...)...)
	if out := mustBerth(t, root, "port", "both"); out != fmt.Sprintf("80/tcp -> 127.0.0.1:%d\n", given) {
		t.Errorf("port both = %q, want only 80/tcp -> 127.0.0.1:%d", out, given)
	}
}

// TestRunNetworkNames puts two containers on a user network, where one
// reaches the other by name and by alias; a container on another network
// cannot resolve them; connect and disconnect change that; container:NAME
// shares the server's namespace.
func TestRunNetworkNames(t *testing.T) {
	root := containerSetup(t)
	for _, n := range []string{"front", "elsewhere"} {
		mustBerth(t, root, "network", "create", n)
		// Run after the containers' removal: a user network's bridge goes
		// with the network.
		t.Cleanup(func() { runBerth(t, root, nil, "network", "rm", n) })
	}
	runDetached(t, root, append([]string{"--name", "web", "--network", "front", "--network-alias", "www"}, append([]string{"busybox"}, httpServer("web")...)...)...)

	for _, host := range []string{"web", "www"} {
		out := mustBerth(t, root, "run", "--rm", "--network", "front", "busybox", "sh", "-c",
			"for i in $(seq 50); do wget -q -O - http://"+host+"/ 2>/dev/null && exit 0; sleep 0.1; done; exit 1")
		if out != "hello from web\n" {
			t.Errorf("wget http://%s/ from the same network = %q", host, out)
		}
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--network", "elsewhere", "busybox", "nslookup", "web"); res.code == 0 {
		t.Errorf("nslookup web from another network succeeded:\n%s", res.stdout)
	}

	var aliases []string
	if err := json.Unmarshal([]byte(mustBerth(t, root, "inspect", "-f", "{{json .NetworkSettings.Networks.front.Aliases}}", "web")), &aliases); err != nil || !slices.Contains(aliases, "www") {
		t.Errorf("inspect web's aliases on front = %q, %v; want www among them", aliases, err)
	}
	out := mustBerth(t, root, "network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}", "front")
	if !regexp.MustCompile(`^web \d+\.\d+\.\d+\.\d+/\d+\n$`).MatchString(out) {
		t.Errorf("network inspect front's containers = %q", out)
	}
	if res := runBerth(t, root, nil, "network", "rm", "front"); res.code != 1 || !strings.Contains(res.stderr, "web") {
		t.Errorf("network rm of a network in use: exit %d, %q", res.code, res.stderr)
	}

	// A running client on "elsewhere" gets the name once connected, and
	// loses it once disconnected.
	runDetached(t, root, "--name", "client", "--network", "elsewhere", "busybox", "sleep", "60")
	mustBerth(t, root, "network", "connect", "--alias", "cli", "front", "client")
	if out := mustBerth(t, root, "exec", "client", "wget", "-q", "-O", "-", "http://web/"); out != "hello from web\n" {
		t.Errorf("wget from a connected container = %q", out)
	}
	if out := mustBerth(t, root, "exec", "web", "nslookup", "cli"); !strings.Contains(out, "Name:\tcli") {
		t.Errorf("nslookup of the connected container's alias:\n%s", out)
	}
	if res := runBerth(t, root, nil, "network", "connect", "front", "client"); res.code == 0 {
		t.Errorf("connecting twice succeeded")
	}
	mustBerth(t, root, "network", "disconnect", "front", "client")
	if res := runBerth(t, root, nil, "exec", "web", "nslookup", "client"); res.code == 0 {
		t.Errorf("nslookup client after disconnect succeeded:\n%s", res.stdout)
	}
	if res := runBerth(t, root, nil, "network", "disconnect", "front", "nothere"); res.code != 1 || !strings.Contains(res.stderr, "No such container: nothere") {
		t.Errorf("network disconnect of a missing container: exit %d, %q", res.code, res.stderr)
	}

	// container:web shares web's namespace: its server is on localhost.
	if out := mustBerth(t, root, "run", "--rm", "--network", "container:web", "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1/"); out != "hello from web\n" {
		t.Errorf("wget localhost in container:web = %q", out)
	}
	// none has loopback only; --add-host, --dns and --hostname reach its files.
	out = mustBerth(t, root, "run", "--rm", "--network", "none", "--hostname", "box", "--add-host", "db:10.9.8.7", "--add-host", "cache=10.9.8.6", "--dns", "10.9.8.53",
		"busybox", "sh", "-c", "ls /sys/class/net | tr '\\n' ' '; hostname; grep -E '^10' /etc/hosts; grep nameserver /etc/resolv.conf")
	if want := "lo box\n10.9.8.7\tdb\n10.9.8.6\tcache\nnameserver 10.9.8.53\n"; out != want {
		t.Errorf("run --network none with --hostname/--add-host/--dns printed:\n%q\nwant:\n%q", out, want)
	}
}

// TestRunDNSFlags: --dns, --dns-search, --dns-option and --domainname make
// the container's resolv.conf and domain name, and inspect shows them
// where docker does (empty lists as [], no extra hosts as null).
func TestRunDNSFlags(t *testing.T) {
	root := containerSetup(t)
	res := runBerth(t, root, nil, "run", "--rm", "--network", "none", "--dns", "192.0.2.1", "--dns-search", "a.example",
		"--dns-option", "ndots:3", "--domainname", "dom.example", "-h", "web", "busybox", "sh", "-c", "cat /etc/resolv.conf /proc/sys/kernel/domainname")
	if want := "nameserver 192.0.2.1\nsearch a.example\noptions ndots:3\ndom.example\n"; res.code != 0 || res.stdout != want {
		t.Errorf("run with DNS flags: exit %d, %q (stderr %q); want %q", res.code, res.stdout, res.stderr, want)
	}
	mustBerth(t, root, "create", "--name", "named", "--dns-search", "b.example", "--domainname", "d.example", "busybox", "true")
	mustBerth(t, root, "create", "--name", "plain", "busybox", "true")
	got := mustBerth(t, root, "inspect", "-f", "{{json .HostConfig.Dns}} {{json .HostConfig.DnsSearch}} {{json .HostConfig.DnsOptions}} {{json .HostConfig.ExtraHosts}} {{.Config.Domainname}}|", "named", "plain")
	if want := "[] [\"b.example\"] [] null d.example|\n[] [] [] null |\n"; got != want {
		t.Errorf("inspect DNS fields = %q, want %q", got, want)
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--dns-option", "a b", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "DNS option") {
		t.Errorf("run --dns-option 'a b': exit %d, stderr %q; want 125", res.code, res.stderr)
	}
}

// TestRunFixedAddress: --ip and --mac-address set the address and the
// Ethernet address on the first network; --ip on the default network
// exits 125, as in docker.
func TestRunFixedAddress(t *testing.T) {
	root := containerSetup(t)
	mustBerth(t, root, "network", "create", "--subnet", "10.231.12.0/24", "pinned")
	res := runBerth(t, root, nil, "run", "--rm", "--network", "pinned", "--ip", "10.231.12.77", "--mac-address", "02:00:0a:e7:0c:4d",
		"busybox", "sh", "-c", "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk '{print $4}'")
	if want := "02:00:0a:e7:0c:4d\n10.231.12.77/24\n"; res.code != 0 || res.stdout != want {
		t.Errorf("run --ip --mac-address: exit %d, %q (stderr %q); want %q", res.code, res.stdout, res.stderr, want)
	}
	if res := runBerth(t, root, nil, "run", "--rm", "--ip", "10.200.1.9", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "default network") {
		t.Errorf("run --ip on the default network: exit %d, stderr %q; want 125", res.code, res.stderr)
	}
	// inspect shows what was fixed, stopped or running, as docker does.
	mustBerth(t, root, "create", "--name", "fixed", "--network", "pinned", "--ip", "10.231.12.88", "--mac-address", "02:00:0a:e7:0c:58", "busybox", "sleep", "300")
	mustBerth(t, root, "create", "--name", "plain", "busybox", "true")
	const format = "{{json .NetworkSettings.Networks}} {{.Config.MacAddress}}|"
	want := `{"pinned":{"IPAMConfig":{"IPv4Address":"10.231.12.88"},"Aliases":null,"MacAddress":"02:00:0a:e7:0c:58","Gateway":"","IPAddress":"","IPPrefixLen":0}} 02:00:0a:e7:0c:58|` + "\n" +
		`{"bridge":{"IPAMConfig":null,"Aliases":null,"MacAddress":"","Gateway":"","IPAddress":"","IPPrefixLen":0}} |` + "\n"
	if got := mustBerth(t, root, "inspect", "-f", format, "fixed", "plain"); got != want {
		t.Errorf("inspect of created containers:\n%s\nwant\n%s", got, want)
	}
	mustBerth(t, root, "start", "fixed")
	if got := mustBerth(t, root, "inspect", "-f", "{{json .NetworkSettings.Networks.pinned.IPAMConfig}} {{.NetworkSettings.Networks.pinned.IPAddress}}", "fixed"); got != `{"IPv4Address":"10.231.12.88"} 10.231.12.88`+"\n" {
		t.Errorf("inspect of the started container: %q", got)
	}
	mustBerth(t, root, "rm", "-f", "fixed")
}

// TestInspectTypes: inspect finds networks and volumes too, after
// containers and images as docker looks, and --type network|volume picks
// one kind.
func TestInspectTypes(t *testing.T) {
	root := containerSetup(t)
	mustBerth(t, root, "network", "create", "inet")
	mustBerth(t, root, "volume", "create", "ivol")
	if got := mustBerth(t, root, "inspect", "-f", "{{.Name}} {{.Driver}}", "inet", "ivol"); got != "inet bridge\nivol local\n" {
		t.Errorf("inspect of a network and a volume: %q", got)
	}
	if got := mustBerth(t, root, "inspect", "--type", "network", "-f", "{{.Name}}", "bridge"); got != "bridge\n" {
		t.Errorf("inspect --type network bridge: %q", got)
	}
	// A container named as the network is found first, as docker looks.
	mustBerth(t, root, "create", "--name", "inet", "busybox", "true")
	if got := mustBerth(t, root, "inspect", "-f", "{{.Name}}", "inet"); got != "/inet\n" {
		t.Errorf("inspect of a name both a container and a network have: %q, want the container", got)
	}
	if res := runBerth(t, root, nil, "inspect", "--type", "volume", "inet"); res.code != 1 || res.stderr != "Error: No such volume: inet\n" {
		t.Errorf("inspect --type volume of a network's name: exit %d, %q", res.code, res.stderr)
	}
	if res := runBerth(t, root, nil, "inspect", "--type", "bogus", "inet"); res.code == 0 {
		t.Errorf("inspect --type bogus: exit 0")
	}
}
