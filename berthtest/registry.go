package berthtest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// RegistryBinary is the CNCF Distribution registry from Debian's
// docker-registry package.
const RegistryBinary = "docker-registry"

// Registry is a real image registry (CNCF Distribution) serving plain HTTP
// on 127.0.0.1, with its storage in a temp dir, for one test.
type Registry struct {
	// Host is "127.0.0.1:PORT", to put in image references.
	Host string
	// Dir is the registry's directory: its config.yml, and its storage
	// under data/.
	Dir string
	cmd *exec.Cmd
	log *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartRegistry starts a Distribution registry on a free port of
// 127.0.0.1 and stops it when the test ends. It skips the test when the
// docker-registry package is not installed.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	return startRegistry(t, "")
}

// StartTokenRegistry starts a registry as StartRegistry does that lets in
// only requests with a bearer token, which clients are sent to get from
// realm (Distribution's "silly" access controller: it takes any token, so
// the token service at realm decides who may log in).
func StartTokenRegistry(t testing.TB, realm string) *Registry {
	t.Helper()
	return startRegistry(t, fmt.Sprintf("auth:\n  silly:\n    realm: %s\n    service: berth-test\n", realm))
}

// startRegistry starts the registry with extra appended to its config.
func startRegistry(t testing.TB, extra string) *Registry {
	t.Helper()
	bin, err := exec.LookPath(RegistryBinary)
	if err != nil {
		t.Skipf("needs %s from Debian's docker-registry package: %v", RegistryBinary, err)
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), addr, extra)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Registry{Host: addr, Dir: dir, log: &lockedBuffer{}}
	r.cmd = exec.Command(bin, "serve", cfgPath)
	r.cmd.Stdout = r.log
	r.cmd.Stderr = r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting registry: %v", err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || extra != "" && resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s did not come up: %v\n%s", addr, err, r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns what the registry printed so far (its access log included).
func (r *Registry) Log() string { return r.log.String() }
