package berth

import (
	"encoding/json"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestMonitorRefusesAfterIdle: a program's start request that the monitor
// accepts after it decided to exit (idle) is refused, not served: served,
// the container would be left to a process about to exit, its output
// pipes and exit status going with it. The refused program starts a new
// monitor.
func TestMonitorRefusesAfterIdle(t *testing.T) {
	defer func(d time.Duration) { monitorIdle = d }(monitorIdle)
	monitorIdle = 20 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "monitor.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	m := &monitor{ln: ln, idle: make(chan struct{}, 1)}
	// The request waits in the listener's backlog while the monitor
	// decides; accept takes it up only after (the goroutine's wake-up).
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(monitorRequest{ID: "0"}); err != nil {
		t.Fatal(err)
	}
	m.serveUntilIdle()
	go m.accept()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var reply monitorReply
	if err := json.NewDecoder(conn).Decode(&reply); err == nil {
		t.Errorf("a request accepted after the monitor went idle was served: %+v", reply)
	}
	ln.Close()
	m.wg.Wait()
	if m.active != 0 {
		t.Errorf("active = %d after the monitor went idle", m.active)
	}
}
