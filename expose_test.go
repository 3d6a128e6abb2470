package berth_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/berth-dev/berth"
)

// TestExpose: WithExpose adds ports (and ranges) to the image's EXPOSE,
// Inspect lists them sorted as "port/proto", WithPublishAll publishes
// them all on free host ports, and a bad port is ErrInvalid.
func TestExpose(t *testing.T) {
	rt := busyboxRuntime(t)
	ctx := context.Background()
	c, err := rt.Run(ctx, "busybox", sh("sleep 60"), berth.WithDetach(), berth.WithExpose("81", "90-91/udp"), berth.WithPublishAll())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(ctx, berth.WithForce()) })
	info, err := c.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"81/tcp", "90/udp", "91/udp"}; !slices.Equal(info.ExposedPorts, want) {
		t.Errorf("ExposedPorts = %q, want %q", info.ExposedPorts, want)
	}
	var published []string
	for _, p := range info.State.Ports {
		if p.HostPort == 0 {
			t.Errorf("port %d/%s published on host port 0", p.ContainerPort, p.Protocol)
		}
		published = append(published, fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol))
	}
	slices.Sort(published)
	if want := []string{"81/tcp", "90/udp", "91/udp"}; !slices.Equal(published, want) {
		t.Errorf("published container ports %q, want %q", published, want)
	}
	for _, bad := range []string{"x", "0", "90-80", "80/icmp"} {
		if _, err := rt.Run(ctx, "busybox", sh("true"), berth.WithExpose(bad)); !errors.Is(err, berth.ErrInvalid) {
			t.Errorf("WithExpose(%q): %v, want ErrInvalid", bad, err)
		}
	}
}
