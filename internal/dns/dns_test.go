package dns

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ask sends one question to the server over a real UDP socket on loopback
// and returns the parsed reply.
func ask(t *testing.T, srv *Server, name string, typ dnsmessage.Type) dnsmessage.Message {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(conn)
	defer conn.Close()
	c, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 4242, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer for %s: %v", name, err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	if m.ID != 4242 || !m.Response {
		t.Fatalf("reply header %+v", m.Header)
	}
	return m
}

func TestServer(t *testing.T) {
	web := netip.MustParseAddr("10.200.7.2")
	srv := &Server{
		Local: func(name string) []netip.Addr {
			if name == "web" || name == "www" {
				return []netip.Addr{web}
			}
			return nil
		},
		Reverse: func(ip netip.Addr) (string, bool) { return "web.stack", ip == web },
		Private: func(ip netip.Addr) bool { return netip.MustParsePrefix("10.200.7.0/24").Contains(ip) },
	}
	for _, tc := range []struct {
		name  string
		typ   dnsmessage.Type
		rcode dnsmessage.RCode
		want  string // the one answer's data, "" for none
	}{
		{"web.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.200.7.2"},
		{"WWW.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.200.7.2"},
		{"web.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, ""},
		{"nosuchcontainer.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"localhost.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "127.0.0.1"}, // the host's /etc/hosts
		{"2.7.200.10.in-addr.arpa.", dnsmessage.TypePTR, dnsmessage.RCodeSuccess, "web.stack."},
		{"3.7.200.10.in-addr.arpa.", dnsmessage.TypePTR, dnsmessage.RCodeNameError, ""},
		{"11.0.0.127.in-addr.arpa.", dnsmessage.TypePTR, dnsmessage.RCodeNameError, ""},
	} {
		t.Run(tc.name+tc.typ.String(), func(t *testing.T) {
			m := ask(t, srv, tc.name, tc.typ)
			if m.RCode != tc.rcode {
				t.Fatalf("rcode %v, want %v", m.RCode, tc.rcode)
			}
			var got string
			if len(m.Answers) > 1 {
				t.Fatalf("%d answers: %+v", len(m.Answers), m.Answers)
			}
			if len(m.Answers) == 1 {
				switch body := m.Answers[0].Body.(type) {
				case *dnsmessage.AResource:
					got = netip.AddrFrom4(body.A).String()
				case *dnsmessage.PTRResource:
					got = body.PTR.String()
				default:
					t.Fatalf("answer %T", body)
				}
			}
			if got != tc.want {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
		})
	}
}

// TestServerForwards checks that with upstream servers given (--dns),
// other names go to them unchanged and their reply comes back; the
// upstream here is a fake name server on loopback.
func TestServerForwards(t *testing.T) {
	up, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go (&Server{Local: func(string) []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.9")} }}).ServeUDP(up)
	srv := &Server{Upstream: []string{up.LocalAddr().String()}, Local: func(string) []netip.Addr { return nil }}
	m := ask(t, srv, "example.test.", dnsmessage.TypeA)
	if m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
		t.Fatalf("forwarded reply %+v", m)
	}
	if a := m.Answers[0].Body.(*dnsmessage.AResource).A; netip.AddrFrom4(a).String() != "192.0.2.9" {
		t.Errorf("forwarded answer %v", a)
	}
}

// TestServerBoundsInFlight: questions whose upstream never answers hold at
// most MaxInFlight goroutines, however many arrive; the rest are dropped.
func TestServerBoundsInFlight(t *testing.T) {
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	go (&Server{Upstream: []string{silent.LocalAddr().String()}}).ServeUDP(conn)
	defer conn.Close()
	c, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 1000 {
		q := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: uint16(i), RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(fmt.Sprintf("n%d.example.test.", i)), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
		}
		b, _ := q.Pack()
		c.Write(b)
	}
	// The server reads what was sent: wait until it has taken as many as
	// it may, then a moment more for any it should not have taken.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine()-before < MaxInFlight && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if grown := runtime.NumGoroutine() - before; grown > MaxInFlight+1 {
		t.Errorf("%d goroutines more after 1000 unanswered questions; want at most %d", grown, MaxInFlight+1)
	} else if grown < MaxInFlight/2 {
		t.Errorf("only %d goroutines more: the questions did not reach the server, the test proves nothing", grown)
	}
}
