package main

import (
	"strings"
	"testing"
)

// TestPruneCommands: container, network, image and system prune remove
// what docker's do and print its sections; without -f they ask first and
// remove nothing unless told yes; the management names run the top-level
// commands.
func TestPruneCommands(t *testing.T) {
	root := containerSetup(t)
	stopped := strings.TrimSpace(mustBerth(t, root, "create", "--name", "stopped", "busybox", "true"))
	runDetached(t, root, "--name", "up", "busybox", "sleep", "300")
	mustBerth(t, root, "network", "create", "spare")

	if res := runBerth(t, root, []byte("n\n"), "container", "prune"); res.code != 0 || !strings.Contains(res.stdout, "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N]") {
		t.Errorf("container prune answered no: exit %d, %q", res.code, res.stdout)
	}
	if got := mustBerth(t, root, "container", "ls", "-a", "-q", "--no-trunc"); !strings.Contains(got, stopped) {
		t.Errorf("container prune answered no removed %s: ls -a %q", stopped, got)
	}
	res := runBerth(t, root, []byte("y\n"), "container", "prune")
	if want := "Deleted Containers:\n" + stopped + "\n\nTotal reclaimed space: "; res.code != 0 || !strings.Contains(res.stdout, want) {
		t.Errorf("container prune: exit %d, %q; want %q", res.code, res.stdout, want)
	}
	if got := mustBerth(t, root, "ps", "-a", "--format", "{{.Names}}"); got != "up\n" {
		t.Errorf("containers after container prune: %q, want up alone", got)
	}
	if got := mustBerth(t, root, "network", "prune", "-f"); got != "Deleted Networks:\nspare\n\n" {
		t.Errorf("network prune -f: %q", got)
	}

	mustBerth(t, root, "run", "--name", "changed", "busybox", "sh", "-c", "echo x > /f")
	id := strings.TrimSpace(mustBerth(t, root, "commit", "changed"))
	mustBerth(t, root, "rm", "changed")
	if got := mustBerth(t, root, "image", "prune", "-f"); !strings.Contains(got, "Deleted Images:\ndeleted: "+id+"\n") {
		t.Errorf("image prune -f of the untagged commit %s: %q", id, got)
	}
	got := mustBerth(t, root, "system", "prune", "-f", "-a")
	if strings.Contains(got, "Deleted Images") || !strings.HasSuffix(got, "Total reclaimed space: 0B\n") {
		t.Errorf("system prune -a with busybox in use by a running container: %q", got)
	}
	if got := mustBerth(t, root, "image", "ls", "--format", "{{.Repository}}"); got != "busybox\n" {
		t.Errorf("images after system prune -a: %q", got)
	}
	mustBerth(t, root, "rm", "-f", "up")
	if got := mustBerth(t, root, "system", "prune", "-f", "-a"); !strings.Contains(got, "Deleted Images:\ndeleted: sha256:") {
		t.Errorf("system prune -a with nothing using busybox: %q", got)
	}
	if got := mustBerth(t, root, "images", "-q"); got != "" {
		t.Errorf("images after system prune -a: %q", got)
	}
	if got := mustBerth(t, root, "builder", "prune", "-f"); !strings.HasPrefix(got, "Total:\t") {
		t.Errorf("builder prune -f: %q", got)
	}
}
