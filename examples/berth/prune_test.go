package main

import (
	"regexp"
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

// TestSystemDf: system df prints docker's four rows, percentages where
// there is a size.
func TestSystemDf(t *testing.T) {
	root := containerSetup(t)
	mustBerth(t, root, "run", "--name", "wrote", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /f")
	got := mustBerth(t, root, "system", "df")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	want := []string{
		`^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE$`,
		`^Images\s+1\s+1\s+[0-9.]+MB\s+0B \(0%\)$`,
		`^Containers\s+1\s+0\s+100kB\s+100kB \(100%\)$`,
		`^Local Volumes\s+0\s+0\s+0B\s+0B$`,
		`^Build Cache\s+0\s+0\s+0B\s+0B$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("system df:\n%s", got)
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("system df line %q, want %s", lines[i], re)
		}
	}
}
