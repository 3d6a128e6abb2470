package berth

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/bridge"
	"github.com/berth-dev/berth/internal/initproc"
	"github.com/berth-dev/berth/internal/nat"
	"golang.org/x/sys/unix"
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
// the linger time. The caller's copy of hold is closed. The files of
// handed (netfilter sockets, see nat.HandOff) go to that process too, which
// keeps them open as long as it lingers; when it returns nil, lingerBridge
// has closed the caller's copies of them.
//
// One lingering process per bridge is enough, and each costs a process
// start (a full start of the calling binary, which a CLI run in a loop
// paid for on every command): a program that finds one alive only moves
// the time its lingering ends, the mtime of the lock file
// locks/linger-<network ID> that the lingering process holds.
func (r *Runtime) lingerBridge(networkID string, hold *os.File, handed []*os.File) error {
	stamp := filepath.Join(r.root, "locks", "linger-"+networkID)
	now := time.Now()
	if err := os.Chtimes(stamp, now, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	lock, ok := r.store.TryLockFile("linger-"+networkID, true)
	if !ok {
		hold.Close() // the lingering process holds the bridge on
		giveLinger(lingerAddr(r.root, networkID), handed)
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
		ExtraFiles:  append([]*os.File{hold, lock}, handed...), // handed from fd 5 on
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	hold.Close()
	for _, f := range handed {
		f.Close()
	}
	go cmd.Wait() // reap it should this program outlive it
	return nil
}

// lingerAddr is the abstract unix socket on which the process lingering
// with a network's bridge takes files to keep.
func lingerAddr(root, networkID string) string {
	return "@berth-linger-" + rootTag(root) + "-" + networkID
}

// giveLinger sends files to the lingering process listening at addr, if
// one does and it runs as root, and closes the caller's copies: once sent,
// the files are the receiver's (in flight, the kernel holds them). A file
// that could not be sent is closed here all the same.
func giveLinger(addr string, files []*os.File) {
	if len(files) == 0 {
		return
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return
	}
	defer c.Close()
	if peerRoot(c) != nil {
		return // not ours: netfilter sockets open to root must not leak
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	c.WriteMsgUnix([]byte{0}, unix.UnixRights(fds...), nil)
}

// keepGiven has the lingering process take the files programs send it
// (giveLinger) and keep each open for keptFor: long past any grace period,
// and a loop of commands, each giving two, makes it hold a few dozen.
// stop closes the listener (what was taken stays open): the lingering
// process calls it before it lets the next one start, which listens then.
func keepGiven(root, networkID string) (stop func()) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: lingerAddr(root, networkID), Net: "unix"})
	if err != nil {
		return func() {} // another lingers: programs give to it
	}
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(time.Second)) // a peer that sends nothing holds no one up
			if peerRoot(c) == nil {
				oob := make([]byte, unix.CmsgSpace(8*4))
				if _, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 1), oob); err == nil {
					msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
					for _, m := range msgs {
						fds, _ := unix.ParseUnixRights(&m)
						for _, fd := range fds {
							time.AfterFunc(keptFor, func() { unix.Close(fd) })
						}
					}
				}
			}
			c.Close()
		}
	}()
	return func() { ln.Close() }
}

// keptFor is how long a lingering process keeps a file given to it.
const keptFor = time.Second

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
	stopTaking := keepGiven(root, networkID)
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
	stopTaking()     // before the next lingering process can be started
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
