package berth

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/bridge"
	"github.com/berth-dev/berth/internal/initproc"
	"github.com/berth-dev/berth/internal/nat"
)

// WithBridgeLinger keeps a network's bridge up for d after Close when no
// container uses it any more, so that the next program on the root (the
// next CLI command, say) finds it made instead of creating it again:
// creating a bridge and deleting it (the kernel waits for RCU grace
// periods) cost tens of milliseconds per program. A small re-executed
// process of the calling binary holds the bridge meanwhile and deletes it
// then, unless another program took it over. Default: 0, Close deletes
// unused bridges before it returns. Meant for short-lived programs; the
// example CLI uses it.
func WithBridgeLinger(d time.Duration) Option {
	return optionFunc(func(r *Runtime) { r.bridgeLinger = d })
}

type optionFunc func(*Runtime)

func (f optionFunc) applyRuntime(r *Runtime) { f(r) }

// lingerEnv starts the lingering process: "<root>\n<network ID>\n<d>", the
// bridge's shared lock on fd 3.
const lingerEnv = "_BERTH_BRIDGE_LINGER"

func init() {
	if v, ok := os.LookupEnv(lingerEnv); ok {
		os.Unsetenv(lingerEnv)
		lingerMain(v)
		os.Exit(0)
	}
}

// lingerBridge hands the hold on a bridge to a process that keeps it for
// the linger time. The caller's copy of hold is closed.
//
// One lingering process per bridge is enough, and each costs a process
// start (a full start of the calling binary, which a CLI run in a loop
// paid for on every command): a program that finds one alive only moves
// the time its lingering ends, the mtime of the lock file
// locks/linger-<network ID> that the lingering process holds.
func (r *Runtime) lingerBridge(networkID string, hold *os.File) error {
	stamp := filepath.Join(r.root, "locks", "linger-"+networkID)
	now := time.Now()
	if err := os.Chtimes(stamp, now, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	lock, ok := r.store.TryLockFile("linger-"+networkID, true)
	if !ok {
		hold.Close() // the lingering process holds the bridge on
		return nil
	}
	defer lock.Close()
	exe, err := initproc.Executable()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := &initproc.Cmd{
		Path:        exe,
		Args:        []string{"berth-linger"},
		Env:         []string{lingerEnv + "=" + r.root + "\n" + networkID + "\n" + r.bridgeLinger.String(), "GOMAXPROCS=1"},
		Dir:         "/",
		Stdin:       devnull,
		Stdout:      devnull,
		Stderr:      devnull,
		ExtraFiles:  []*os.File{hold, lock},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	hold.Close()
	go cmd.Wait() // reap it should this program outlive it
	return nil
}

// lingerMain keeps the bridge's lock (fd 3) until the linger time has
// passed since the last program using the bridge closed (the mtime of its
// own lock, fd 4), then lets go and deletes the bridge if nobody took it
// meanwhile.
func lingerMain(v string) {
	parts := strings.Split(v, "\n")
	if len(parts) != 3 {
		return
	}
	root, networkID := parts[0], parts[1]
	d, err := time.ParseDuration(parts[2])
	if err != nil || filepath.Base(networkID) != networkID {
		return
	}
	for {
		var st syscall.Stat_t
		if syscall.Fstat(4, &st) != nil {
			break
		}
		wait := time.Until(time.Unix(st.Mtim.Unix()).Add(d))
		if wait <= 0 {
			break
		}
		time.Sleep(wait)
	}
	syscall.Close(4) // from here on, the next program starts its own
	syscall.Close(3)
	if _, err := os.Stat(filepath.Join(root, "locks")); err != nil {
		// The root was removed meanwhile: nobody can use the bridge any
		// more, and nothing may be written where the root was.
		bridge.Delete(bridgeName(root, networkID))
		nat.Delete(natTable(root))
		dropForwardIfUnused()
		return
	}
	r, err := New(root) // its sweep deletes the bridge when unused
	if err != nil {
		return
	}
	r.maybeDownBridge(context.Background(), networkID)
	r.Close()
}
