// Package dns is the name server berth puts in each container on a bridge
// network, listening at 127.0.0.11:53 inside the container's namespace as
// docker's embedded DNS does. It answers the names of the containers on
// the container's networks itself and passes every other question to the
// host's resolver (or to the servers a container was given with --dns).
package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Addr is where the server listens inside a container.
var Addr = netip.MustParseAddrPort("127.0.0.11:53")

// TTL of answers about containers: short, because containers come and go.
const localTTL = 10

// Server answers questions that arrive on one container's socket.
type Server struct {
	// Local returns the addresses of name (lower-case, no trailing dot) when
	// it is a container or alias on one of the container's networks.
	Local func(name string) []netip.Addr
	// Upstream lists servers ("10.0.0.1:53") every other question goes to
	// unchanged. Empty means the host's resolver: A and AAAA questions go
	// through Go's resolver (the host's /etc/hosts, then its name servers),
	// others to the name servers of the host's /etc/resolv.conf.
	Upstream []string
	// HostServers are the host's name servers, for questions Go's resolver
	// cannot ask.
	HostServers []string
	// Reverse names a local address (a container's) for PTR questions;
	// Private reports addresses that are berth's or loopback, whose reverse
	// names are answered here (NXDOMAIN when unknown) and never sent out.
	Reverse func(ip netip.Addr) (string, bool)
	Private func(ip netip.Addr) bool
}

// MaxInFlight bounds the questions a server answers at once. One sent to
// the host's resolver can take seconds, each holds a goroutine (and a
// socket and buffer while forwarded), and the server runs in the program
// that owns the container (a root's monitor, for every detached one): a
// process in the container flooding it with names that go unanswered must
// not make that program grow without bound. Past the bound, questions are
// dropped, as a busy resolver drops them; the client asks again.
const MaxInFlight = 64

// ServeUDP answers queries on conn until it is closed.
func (s *Server) ServeUDP(conn net.PacketConn) {
	buf := make([]byte, 4096)
	slots := make(chan struct{}, MaxInFlight)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			defer func() { <-slots }()
			if resp := s.answer(q); resp != nil {
				conn.WriteTo(resp, from)
			}
		}()
	}
}

// answer builds the reply to the query msg, or nil to drop it.
func (s *Server) answer(msg []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return reply(h, nil, dnsmessage.RCodeFormatError, nil)
	}
	name := strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")
	if s.Local != nil {
		if addrs := s.Local(name); addrs != nil {
			return reply(h, &q, dnsmessage.RCodeSuccess, records(q, addrs, localTTL))
		}
	}
	if q.Type == dnsmessage.TypePTR {
		if ip, ok := reverseAddr(name); ok && (ip.IsLoopback() || (s.Private != nil && s.Private(ip))) {
			if s.Reverse != nil {
				if host, ok := s.Reverse(ip); ok {
					ptr, err := dnsmessage.NewName(host + ".")
					if err == nil {
						rr := dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET, TTL: localTTL}, Body: &dnsmessage.PTRResource{PTR: ptr}}
						return reply(h, &q, dnsmessage.RCodeSuccess, []dnsmessage.Resource{rr})
					}
				}
			}
			return reply(h, &q, dnsmessage.RCodeNameError, nil)
		}
	}
	// A single-label name that is no container is looked up only in the
	// host's /etc/hosts: like a search-less resolver, berth does not send
	// bare names to the host's name servers.
	if !strings.Contains(name, ".") && len(s.Upstream) == 0 {
		if q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA {
			if addrs := hostsFileLookup(name); len(addrs) > 0 {
				return reply(h, &q, dnsmessage.RCodeSuccess, records(q, addrs, 60))
			}
		}
		return reply(h, &q, dnsmessage.RCodeNameError, nil)
	}
	servers := s.Upstream
	if len(servers) == 0 {
		if q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA {
			return s.hostLookup(h, q, name)
		}
		servers = s.HostServers
	}
	if resp := forward(msg, servers); resp != nil {
		return resp
	}
	return reply(h, &q, dnsmessage.RCodeServerFailure, nil)
}

// hostLookup resolves an address question as a program on the host would.
func (s *Server) hostLookup(h dnsmessage.Header, q dnsmessage.Question, name string) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	network := "ip4"
	if q.Type == dnsmessage.TypeAAAA {
		network = "ip6"
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, network, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return reply(h, &q, dnsmessage.RCodeNameError, nil)
		}
		return reply(h, &q, dnsmessage.RCodeServerFailure, nil)
	}
	return reply(h, &q, dnsmessage.RCodeSuccess, records(q, addrs, 60))
}

func records(q dnsmessage.Question, addrs []netip.Addr, ttl uint32) []dnsmessage.Resource {
	var out []dnsmessage.Resource
	for _, a := range addrs {
		a = a.Unmap()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: ttl}
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			rh.Type = dnsmessage.TypeA
			out = append(out, dnsmessage.Resource{Header: rh, Body: &dnsmessage.AResource{A: a.As4()}})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			rh.Type = dnsmessage.TypeAAAA
			out = append(out, dnsmessage.Resource{Header: rh, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
		}
	}
	return out
}

func reply(h dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode, answers []dnsmessage.Resource) []byte {
	m := dnsmessage.Message{
		Header:  dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode},
		Answers: answers,
	}
	if q != nil {
		m.Questions = []dnsmessage.Question{*q}
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

// forward sends msg to each server in turn and returns the first reply.
func forward(msg []byte, servers []string) []byte {
	for _, srv := range servers {
		c, err := net.DialTimeout("udp", srv, 2*time.Second)
		if err != nil {
			continue
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(msg); err == nil {
			buf := make([]byte, 65535)
			if n, err := c.Read(buf); err == nil {
				c.Close()
				return buf[:n]
			}
		}
		c.Close()
	}
	return nil
}

// Servers returns the name servers of a resolv.conf, as host:53, loopback
// ones included (this server runs on the host).
func Servers(resolvConf []byte) []string {
	var out []string
	for _, line := range strings.Split(string(resolvConf), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, netip.AddrPortFrom(ip, 53).String())
			}
		}
	}
	return out
}

// reverseAddr parses an in-addr.arpa name.
func reverseAddr(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return netip.Addr{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(parts[3] + "." + parts[2] + "." + parts[1] + "." + parts[0])
	return ip, err == nil
}

// hostsFile is read for bare names; a variable for nothing but clarity.
const hostsFile = "/etc/hosts"

// hostsFileLookup finds name in the host's /etc/hosts.
func hostsFileLookup(name string) []netip.Addr {
	b, err := os.ReadFile(hostsFile)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, h := range f[1:] {
			if strings.EqualFold(h, name) {
				out = append(out, ip)
				break
			}
		}
	}
	return out
}
