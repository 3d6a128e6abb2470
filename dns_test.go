package berth_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth"
)

// TestDNSSettings: WithDNSSearch and WithDNSOptions make the container's
// /etc/resolv.conf on a network (its own name server, ndots as given) and
// without one (the servers given, no search domains for "."); WithDomainname
// names the container's UTS namespace (in both starts) and its /etc/hosts
// line, and the host's domain name stays as it was. Settings that would
// add lines to resolv.conf, a domain name with the host's UTS namespace,
// and DNS settings with another container's network are refused.
func TestDNSSettings(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	hostDomain, err := os.ReadFile("/proc/sys/kernel/domainname")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CreateNetwork(ctx, "dnsnet"); err != nil {
		t.Fatal(err)
	}
	for _, start := range starts {
		t.Run(start.name, func(t *testing.T) {
			got := containerOut(t, rt, `cat /etc/resolv.conf; cat /proc/sys/kernel/domainname; grep web /etc/hosts`,
				append(start.opts, berth.WithNetwork("dnsnet"), berth.WithHostname("web"), berth.WithDomainname("dom.example"),
					berth.WithDNSSearch("a.example", "b.example"), berth.WithDNSOptions("ndots:2", "timeout:1"))...)
			if !strings.HasPrefix(got, "nameserver 127.0.0.11\nsearch a.example b.example\noptions ndots:2 timeout:1\ndom.example\n") ||
				!strings.HasSuffix(got, "\tweb.dom.example web\n") {
				t.Errorf("on a network with search domains, options and a domain name:\n%s", got)
			}
			got = containerOut(t, rt, `cat /etc/resolv.conf; cat /proc/sys/kernel/domainname`,
				append(start.opts, berth.WithNetworkMode("none"), berth.WithDNS("192.0.2.1"), berth.WithDNSSearch("."), berth.WithDNSOptions("rotate"))...)
			if got != "nameserver 192.0.2.1\noptions rotate\n(none)\n" {
				t.Errorf("without a network, a server, no search domains and an option:\n%s", got)
			}
		})
	}
	if after, _ := os.ReadFile("/proc/sys/kernel/domainname"); string(after) != string(hostDomain) {
		t.Errorf("the host's domain name changed: %q -> %q", hostDomain, after)
	}
	c, err := rt.Run(ctx, "busybox", sh("sleep 300"), berth.WithDomainname("d.example"), berth.WithDNSOptions("ndots:3"), berth.WithAutoRemove())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx, 0)
	if info, err := c.Inspect(ctx); err != nil || info.Domainname != "d.example" || strings.Join(info.DNSOptions, ",") != "ndots:3" {
		t.Errorf("Inspect: %v; want domain name d.example and options [ndots:3]", err)
	}

	for _, bad := range []struct {
		name string
		opts []berth.RunOption
	}{
		{"a search domain with a line of its own", []berth.RunOption{berth.WithDNSSearch("a.example\nnameserver 203.0.113.1")}},
		{"an option of two words", []berth.RunOption{berth.WithDNSOptions("ndots:1 rotate")}},
		{"a domain name with the host's UTS namespace", []berth.RunOption{berth.WithUTSMode("host"), berth.WithDomainname("d.example")}},
		{"a domain name of 65 bytes", []berth.RunOption{berth.WithDomainname(strings.Repeat("d", 65))}},
		{"a domain name with a new line", []berth.RunOption{berth.WithDomainname("d\n1.2.3.4 evil")}},
		{"DNS servers with another container's network", []berth.RunOption{berth.WithNetworkMode("container:" + c.ID), berth.WithDNS("192.0.2.1")}},
		{"search domains with another container's network", []berth.RunOption{berth.WithNetworkMode("container:" + c.ID), berth.WithDNSSearch("a.example")}},
	} {
		if _, _, err := runOut(t, rt, "busybox", sh("true"), append(bad.opts, berth.WithAutoRemove())...); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", bad.name, err)
		}
	}
}
