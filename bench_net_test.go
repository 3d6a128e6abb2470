package berth_test

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

// BenchmarkRunTrueNoNetwork is BenchmarkRunTrue with --network none: the
// cost of the container alone, without its veth, name server and rules.
func BenchmarkRunTrueNoNetwork(b *testing.B) {
	benchRun(b, berth.WithNetworkMode("none"))
}

// BenchmarkRunPublish runs `true` on the default bridge network with one
// published port, through the Go API. Issue 6's target for the whole
// `berth run --rm -p` process is ≤ 25 ms (docker run --rm 251 ms, podman
// 322 ms on the reference machine).
func BenchmarkRunPublish(b *testing.B) {
	benchRun(b, berth.WithPublish("127.0.0.1::80"))
}

func benchRun(b *testing.B, opts ...berth.RunOption) {
	berthtest.Skip(b)
	rt := berthtest.NewRuntime(b)
	berthtest.Busybox(b, rt, "busybox")
	ctx := context.Background()
	opts = append(opts, berth.WithAutoRemove())
	run := func() {
		c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"true"}}, opts...)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	benchLoop(b, run)
}

// BenchmarkPublishedThroughput reads from a server in a container through
// a port published on 127.0.0.1 and reports MB/s. With BERTH_BENCH_PEER
// set to host:port, it reads from that address instead (scripts/bench
// points it at the same server run by docker).
func BenchmarkPublishedThroughput(b *testing.B) {
	addr := os.Getenv("BERTH_BENCH_PEER")
	if addr == "" {
		berthtest.Skip(b)
		rt := berthtest.NewRuntime(b)
		berthtest.Busybox(b, rt, "busybox")
		ctx := context.Background()
		c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"nc", "-ll", "-p", "5000", "-e", "dd", "if=/dev/zero", "bs=256k"}},
			berth.WithPublish("127.0.0.1::5000"))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Remove(ctx, berth.WithForce())
		if err := c.WaitListening(ctx, "tcp", 5000); err != nil {
			b.Fatal(err)
		}
		ports, err := c.Ports(ctx)
		if err != nil {
			b.Fatal(err)
		}
		addr = net.JoinHostPort("127.0.0.1", itoa(int(ports[0].HostPort)))
	}
	const size = 512 << 20
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, io.LimitReader(conn, size), buf)
		conn.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
