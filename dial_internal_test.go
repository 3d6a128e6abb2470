package berth

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

// TestDialInNamespaceStaysInside: every address a Dial resolved to is
// dialed from inside the namespace. A listener on the host's loopback, on
// both families, is not reached from a namespace where nothing listens
// (net.Dialer given a name with an IPv4 and an IPv6 address dials them on
// other goroutines, whose threads are in the host's namespace).
func TestDialInNamespaceStaysInside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	ns := make(chan *os.File)
	// On a thread of its own, which ends with it (never the main thread,
	// whose namespace /proc/self/net shows for the whole program).
	go initproc.OnOwnThread(func() {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ns <- nil
			return
		}
		f, _ := os.Open("/proc/thread-self/ns/net")
		ns <- f
	})
	f := <-ns
	if f == nil {
		t.Fatal("cannot make a network namespace")
	}
	defer f.Close()
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	port := l4.Addr().(*net.TCPAddr).Port
	if l6, err := net.Listen("tcp6", "[::1]:"+strconv.Itoa(port)); err == nil {
		defer l6.Close()
		go acceptOne(l6, t)
	}
	go acceptOne(l4, t)
	ips := []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := dialInNamespace(ctx, int(f.Fd()), "tcp", ips, strconv.Itoa(port))
	if err == nil {
		conn.Close()
		t.Fatal("a dial in an empty namespace connected: it left the namespace")
	}
	time.Sleep(100 * time.Millisecond) // an escaped connect would be accepted by now
}

// acceptOne fails the test if the listener accepts a connection.
func acceptOne(l net.Listener, t *testing.T) {
	if c, err := l.Accept(); err == nil {
		c.Close()
		t.Errorf("the host's listener on %s was reached", l.Addr())
	}
}
