package berth

import (
	"os"
	"path/filepath"
	"testing"
)

// TestResolvConf: a container's /etc/resolv.conf from a host's with a
// comment, search domains, two options lines and a loopback name server.
// The rebuilt files are what docker 20.10 wrote on this machine kind for
// such a host file (its default bridge for "none", a user network for
// "bridge"), but for one difference kept on purpose: docker keeps the
// host's loopback server 127.0.0.53 when --dns-search or --dns-option is
// given, which a container cannot reach. Given nothing, the host's file
// is kept (without its loopback servers, unless with the host's network),
// as docker's FilterResolvDNS keeps it.
func TestResolvConf(t *testing.T) {
	const hostFile = "# a comment\nnameserver 10.255.255.53\noptions rotate\nnameserver 127.0.0.53\nsearch host.example corp.example\noptions timeout:2 attempts:3\n"
	host := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(host, []byte(hostFile), 0o644); err != nil {
		t.Fatal(err)
	}
	old := hostResolvConf
	hostResolvConf = host
	t.Cleanup(func() { hostResolvConf = old })

	for _, c := range []struct {
		name, mode string
		cfg        containerConfig
		want       string
	}{
		{"defaults", "none", containerConfig{},
			"# a comment\nnameserver 10.255.255.53\noptions rotate\nsearch host.example corp.example\noptions timeout:2 attempts:3\n"},
		{"defaults", "bridge", containerConfig{},
			"nameserver 127.0.0.11\nsearch host.example corp.example\noptions timeout:2 attempts:3 ndots:0\n"},
		{"defaults", "host", containerConfig{}, hostFile},
		{"dns", "host", containerConfig{DNSSearch: []string{"a.example"}},
			"nameserver 10.255.255.53\nnameserver 127.0.0.53\nsearch a.example\noptions timeout:2 attempts:3\n"},
		{"dns", "none", containerConfig{DNS: []string{"1.1.1.1"}},
			"nameserver 1.1.1.1\nsearch host.example corp.example\noptions timeout:2 attempts:3\n"},
		{"dns", "bridge", containerConfig{DNS: []string{"1.1.1.1"}},
			"nameserver 127.0.0.11\nsearch host.example corp.example\noptions timeout:2 attempts:3 ndots:0\n"},
		{"search", "none", containerConfig{DNSSearch: []string{"a.example"}},
			"nameserver 10.255.255.53\nsearch a.example\noptions timeout:2 attempts:3\n"},
		{"search", "bridge", containerConfig{DNSSearch: []string{"a.example"}},
			"nameserver 127.0.0.11\nsearch a.example\noptions timeout:2 attempts:3 ndots:0\n"},
		{"no search", "none", containerConfig{DNSSearch: []string{"."}},
			"nameserver 10.255.255.53\noptions timeout:2 attempts:3\n"},
		{"no search", "bridge", containerConfig{DNSSearch: []string{"."}},
			"nameserver 127.0.0.11\noptions timeout:2 attempts:3 ndots:0\n"},
		{"ndots", "none", containerConfig{DNSOptions: []string{"ndots:2"}},
			"nameserver 10.255.255.53\nsearch host.example corp.example\noptions ndots:2\n"},
		{"ndots", "bridge", containerConfig{DNSOptions: []string{"ndots:2"}},
			"nameserver 127.0.0.11\nsearch host.example corp.example\noptions ndots:2\n"},
		{"option", "bridge", containerConfig{DNSOptions: []string{"rotate"}},
			"nameserver 127.0.0.11\nsearch host.example corp.example\noptions rotate ndots:0\n"},
	} {
		if got := string(resolvConf(&c.cfg, c.mode)); got != c.want {
			t.Errorf("%s, network %s:\n%s\nwant\n%s", c.name, c.mode, got, c.want)
		}
	}

	for _, bad := range []struct{ search, options []string }{
		{search: []string{"a.example\nnameserver 6.6.6.6"}},
		{search: []string{"a example"}},
		{search: []string{".", "a.example"}},
		{search: []string{"..a"}},
		{search: []string{""}},
		{options: []string{"ndots:1 rotate"}},
		{options: []string{"ndots:1\nnameserver 6.6.6.6"}},
		{options: []string{""}},
	} {
		if err := checkResolverSettings(bad.search, bad.options); err == nil {
			t.Errorf("search %q, options %q: accepted", bad.search, bad.options)
		}
	}
	if err := checkResolverSettings([]string{"a.example.", "b-c.example", "_srv.d"}, []string{"ndots:2", "edns0"}); err != nil {
		t.Errorf("good search domains and options: %v", err)
	}
}
