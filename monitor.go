package berth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/initproc"
)

// Detached containers must outlive the program that starts them, and their
// exit status and output must still be recorded. One monitor process per
// root does that for all of them: it is a re-executed, sealed copy of the
// calling binary (like the container child stage), started on demand,
// parent of every detached container of its root, and gone once none runs
// (or waits out a restart back-off, see WithRestartPolicy).
// One shared process keeps the host cost per detached container to a few
// goroutines instead of a process each (docker and podman run a shim or
// conmon per container).
//
// Programs reach it on an abstract unix socket named after the root; the
// request is a container ID whose record the program has written; the reply
// is the pid or why the start failed. Only root may connect.

const monitorEnv = "_BERTH_MONITOR_ROOT"

// monitorIdle is how long a monitor with no container waits for new work
// before it exits (a variable for tests).
var monitorIdle = 2 * time.Second

func init() {
	if root, ok := os.LookupEnv(monitorEnv); ok {
		os.Unsetenv(monitorEnv)
		os.Exit(monitorMain(root))
	}
}

func monitorAddr(root string) string { return "@berth-monitor-" + rootTag(root) }

type monitorRequest struct {
	ID string `json:"id"`
}

type monitorReply struct {
	Pid      int    `json:"pid,omitempty"`
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`
}

// startDetached asks the root's monitor to start the container, starting
// the monitor first if none runs.
func (r *Runtime) startDetached(ctx context.Context, rec *containerRecord) error {
	deadline := time.Now().Add(10 * time.Second)
	spawned := false
	for {
		reply, err := r.askMonitor(ctx, rec.ID)
		if err == nil {
			if reply.Error != "" {
				if reply.ExitCode != 0 {
					return &startError{err: errors.New(reply.Error), code: reply.ExitCode}
				}
				return errors.New(reply.Error)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("reaching the berth monitor of %s: %w", r.root, ctx.Err())
		}
		if errors.Is(err, errSquatted) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reaching the berth monitor of %s: %w", r.root, err)
		}
		if !spawned {
			if err := r.spawnMonitor(); err != nil {
				return err
			}
			spawned = true
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *Runtime) askMonitor(ctx context.Context, id string) (*monitorReply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", monitorAddr(r.root))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// Any local user can bind an abstract name: the monitor is the
	// process listening there only if it runs as root.
	if err := peerRoot(conn.(*net.UnixConn)); err != nil {
		return nil, fmt.Errorf("the berth monitor's socket %s: %w", monitorAddr(r.root), err)
	}
	// A monitor that stops answering must not hold Run beyond its context.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(monitorRequest{ID: id}); err != nil {
		return nil, err
	}
	var reply monitorReply
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&reply); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A monitor that was exiting closed the connection unanswered.
		return nil, fmt.Errorf("monitor closed the connection: %w", err)
	}
	return &reply, nil
}

// spawnMonitor starts a monitor for the root. Several programs may race to
// do so; the monitor's lock lets exactly one serve.
func (r *Runtime) spawnMonitor() error {
	exe, err := initproc.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(r.root, "monitor.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := &initproc.Cmd{
		Path:        exe,
		Args:        []string{"berth-monitor"},
		Env:         []string{monitorEnv + "=" + r.root, "GOMAXPROCS=2"},
		Dir:         "/",
		Stdout:      logf,
		Stderr:      logf,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if tracing {
		cmd.Env = append(cmd.Env, "BERTH_TRACE=1") // its phases go to monitor.log
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the berth monitor: %w", err)
	}
	go cmd.Wait() // reap it if it exits while this program runs
	return nil
}

// monitorMain is the monitor process. It returns its exit code.
func monitorMain(root string) int {
	// Its containers are swept once it serves the root, below: the sweep
	// claims the restarts of containers whose monitor died, which only the
	// monitor that serves may carry out.
	rt, err := New(root, optionFunc(func(r *Runtime) { r.sweepLater = true }))
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth monitor:", err)
		return 1
	}
	// The monitor keeps no bridge for later: a detached container's bridge
	// goes as soon as its last container does.
	rt.noBridgeHold = true
	// Another monitor holds the lock while it serves this root, and for a
	// moment after it decided to exit, when a program that found it gone
	// may have started this one: wait that moment out.
	ctx, cancel := context.WithTimeout(context.Background(), monitorIdle)
	unlock, err := rt.store.Lock(ctx, "monitor", true)
	cancel()
	if err != nil {
		return 0 // another monitor serves this root
	}
	defer unlock()
	ln, err := net.Listen("unix", monitorAddr(root))
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth monitor:", err)
		return 1
	}
	m := &monitor{rt: rt, ln: ln, idle: make(chan struct{}, 1)}
	go m.accept()
	// The restarts its sweep claims are its policy's own.
	claimed := rt.sweepContainers()
	m.mu.Lock()
	m.active += len(claimed)
	m.mu.Unlock()
	for _, p := range claimed {
		go func() { m.supervise(m.waitAndRestart(p.id, p.starts, 0)) }()
	}
	m.serveUntilIdle()
	ln.Close()
	// Let in-flight starts finish before the process goes.
	m.wg.Wait()
	// The monitor never closes its Runtime (a program's Close would kill
	// what it owns): the root's parent cgroup goes here when the last of
	// the root's containers has, as at a program's Close. A container that
	// exits on its own, or that another program stopped before the monitor
	// had deleted its cgroup, left it otherwise.
	cgroup.RemoveIfEmpty("/berth/" + rootTag(rt.root))
	return 0
}

type monitor struct {
	rt      *Runtime
	ln      net.Listener
	mu      sync.Mutex
	active  int
	closing bool // set with active 0: connections accepted from then on are refused
	idle    chan struct{}
	wg      sync.WaitGroup
}

// serveUntilIdle returns once the monitor has had nothing to do for
// monitorIdle, and from then on accept refuses what it accepts: a start
// accepted after the decision would leave a container to a process that
// is exiting (its output pipes and exit status with it). A refused program
// finds no monitor and starts another.
func (m *monitor) serveUntilIdle() {
	for {
		select {
		case <-m.idle:
		case <-time.After(monitorIdle):
			m.mu.Lock()
			m.closing = m.active == 0
			m.mu.Unlock()
			if m.closing {
				return
			}
		}
	}
}

func (m *monitor) poke() {
	select {
	case m.idle <- struct{}{}:
	default:
	}
}

func (m *monitor) accept() {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		if m.closing {
			m.mu.Unlock()
			conn.Close()
			continue
		}
		m.active++
		m.wg.Add(1)
		m.mu.Unlock()
		go func() {
			defer m.wg.Done()
			m.serve(conn)
		}()
	}
}

func (m *monitor) serve(conn net.Conn) {
	defer conn.Close()
	started := false
	defer func() {
		if !started {
			m.release()
		}
	}()
	if uc, ok := conn.(*net.UnixConn); ok && peerRoot(uc) != nil {
		json.NewEncoder(conn).Encode(monitorReply{Error: "only root may start containers"})
		return
	}
	var req monitorRequest
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		return
	}
	reply, byPolicy := m.start(req.ID)
	started = reply.Error == ""
	if err := json.NewEncoder(conn).Encode(reply); err != nil && started && !byPolicy {
		// The program that asked is gone or gave up (its Run failed): a
		// container it was told nothing about must not run on. (One its
		// restart policy restarts runs on regardless.)
		c := &Container{ID: req.ID, rt: m.rt}
		c.Stop(context.Background(), 0)
	}
	// The next start's network namespace is made while this one's program
	// goes on (most ask for another soon).
	initproc.WarmNetNS()
}

func (m *monitor) release() {
	m.mu.Lock()
	m.active--
	m.mu.Unlock()
	m.poke()
}

// start launches container id, which a program readied, and reports
// whether its restart policy restarts it (see restartFromProgram).
func (m *monitor) start(id string) (_ monitorReply, byPolicy bool) {
	if !validContainerID(id) {
		return monitorReply{Error: "bad container id"}, false
	}
	// The lock first, the record then: the program that asked may have
	// given up since (settleCreated holds the lock to end the record).
	unlock, err := m.rt.lockCreated(id, time.Second)
	if err != nil {
		return monitorReply{Error: "container " + id + " is owned by another program"}, false
	}
	rec, err := m.rt.readRecord(id)
	if err != nil {
		unlock()
		return monitorReply{Error: err.Error()}, false
	}
	if rec.State.Status != statusCreated {
		unlock()
		return monitorReply{Error: fmt.Sprintf("container %s is %s, not created", rec.Name, rec.State.Status)}, false
	}
	byPolicy = rec.State.Restarting
	run, err := m.rt.launch(context.Background(), rec, stdio{}, unlock)
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			return monitorReply{Error: err.Error(), ExitCode: se.code}, byPolicy
		}
		return monitorReply{Error: err.Error()}, byPolicy
	}
	go m.supervise(run)
	return monitorReply{Pid: run.rec.State.Pid}, byPolicy
}
