package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestInfo checks docker info's counts and fields, in its text and
// through --format with docker's field names, against what the test made
// and what the kernel reports by other means.
func TestInfo(t *testing.T) {
	root := containerSetup(t)
	mustBerth(t, root, "tag", "busybox", "other:1")
	runDetached(t, root, "--name", "up", "busybox", "sleep", "300")
	runDetached(t, root, "--name", "held", "busybox", "sleep", "300")
	mustBerth(t, root, "pause", "held")
	mustBerth(t, root, "run", "--name", "done", "busybox", "true")

	var info struct {
		Containers, ContainersRunning, ContainersPaused, ContainersStopped, Images, NCPU int
		CgroupVersion, KernelVersion, DockerRootDir, Driver, OSType                      string
		MemTotal                                                                         int64
	}
	out := mustBerth(t, root, "system", "info", "--format", "{{json .}}")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --format '{{json .}}': %v\n%s", err, out)
	}
	if info.Containers != 3 || info.ContainersRunning != 1 || info.ContainersPaused != 1 || info.ContainersStopped != 1 {
		t.Errorf("containers %d: running %d, paused %d, stopped %d; want 3: 1, 1, 1", info.Containers, info.ContainersRunning, info.ContainersPaused, info.ContainersStopped)
	}
	if info.Images != 1 {
		t.Errorf("images: %d, want 1 (two tags of one image)", info.Images)
	}
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if info.KernelVersion != strings.TrimSpace(string(release)) {
		t.Errorf("kernel version %q, want %q", info.KernelVersion, strings.TrimSpace(string(release)))
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	want := "1" // the last mount on /sys/fs/cgroup is the one seen
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == "/sys/fs/cgroup" {
			want = map[bool]string{true: "2", false: "1"}[f[2] == "cgroup2"]
		}
	}
	if info.CgroupVersion != want {
		t.Errorf("cgroup version %q, want %q from the mount table", info.CgroupVersion, want)
	}
	if info.DockerRootDir != root || info.OSType != "linux" || info.NCPU < 1 || info.MemTotal <= 0 || info.Driver != "overlayfs" {
		t.Errorf("info: %+v", info)
	}

	text := mustBerth(t, root, "info")
	for _, line := range []string{" Containers: 3\n  Running: 1\n  Paused: 1\n  Stopped: 1\n Images: 1\n", " Cgroup Version: " + want + "\n", " Kernel Version: " + info.KernelVersion + "\n", "  seccomp\n   Profile: default\n"} {
		if !strings.Contains(text, line) {
			t.Errorf("info lacks %q:\n%s", line, text)
		}
	}
	if got := mustBerth(t, root, "info", "-f", "{{.ContainersRunning}}/{{.Containers}} {{.Swarm.LocalNodeState}}"); got != "1/3 inactive\n" {
		t.Errorf("info -f: %q", got)
	}
	if res := runBerth(t, root, nil, "info", "-f", "{{"); res.code != 64 || !strings.HasPrefix(res.stderr, "template parsing error: ") {
		t.Errorf("info -f '{{': exit %d, %q; want docker's 64 and words", res.code, res.stderr)
	}
}
