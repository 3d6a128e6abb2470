package berth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Event is something that happened to an object of a root (docker
// events), in any program using the root.
type Event struct {
	// Time is when it happened.
	Time time.Time `json:"time"`
	// Type is "container", "image", "network" or "volume".
	Type string `json:"type"`
	// Action is what happened: for a container "create", "start", "die",
	// "stop", "pause", "unpause", "rename" and "destroy"; for an image
	// "pull", "tag", "untag" and "delete"; for a network "create",
	// "connect", "disconnect" and "destroy"; for a volume "create" and
	// "destroy".
	Action string `json:"action"`
	// ID is the object's ID: a volume's name; for an image its ID, but the
	// reference pulled for a pull, as docker's.
	ID string `json:"id"`
	// Attributes says more, as docker's do: a container's labels, "name"
	// and "image" (only its name on destroy), "exitCode" on die, "oldName"
	// ("/" and the old name) on rename; a network's "name" and, on
	// connect and disconnect, the "container"'s ID; an image's "name" on
	// pull, tag and untag. A network's connect and disconnect are
	// Network.Connect's and Disconnect's only, not those of every start
	// and stop as in docker.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// EventOption configures Events.
type EventOption interface{ applyEvents(*eventsConfig) }

type eventsConfig struct{ since, until time.Time }

type eventsOptionFunc func(*eventsConfig)

func (f eventsOptionFunc) applyEvents(c *eventsConfig) { f(c) }

// WithEventsSince has Events give the events kept since t first (docker
// events --since). Default: only events from the call on, or, with
// WithEventsUntil, all those kept.
func WithEventsSince(t time.Time) EventOption {
	return eventsOptionFunc(func(c *eventsConfig) { c.since = t })
}

// WithEventsUntil ends Events at t (docker events --until): a t in the
// past gives the events kept up to it (from WithEventsSince's time, or all
// kept) and returns. Default: until ctx ends.
func WithEventsUntil(t time.Time) EventOption {
	return eventsOptionFunc(func(c *eventsConfig) { c.until = t })
}

// The root's events are JSON lines appended to events.log, each with one
// write(2) to a file opened O_APPEND, so that programs do not interleave
// them. At eventsMaxSize the file is renamed to events.log.1 (replacing the
// one before) by the writer that sees it full, under the "events" lock: at
// least the last eventsMaxSize bytes of events are kept.
const eventsFile = "events.log"

var eventsMaxSize int64 = 1 << 20 // a variable for the tests

// emit records an event; failing to is not the operation's failure.
func (r *Runtime) emit(typ, action, id string, attrs map[string]string) {
	b, err := json.Marshal(Event{Time: time.Now().UTC(), Type: typ, Action: action, ID: id, Attributes: attrs})
	if err != nil {
		return
	}
	path := filepath.Join(r.root, eventsFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	n, err := f.Write(append(b, '\n'))
	var size int64
	if st, serr := f.Stat(); err == nil && serr == nil {
		size = st.Size()
	}
	f.Close()
	if n > 0 && size >= eventsMaxSize {
		if unlock, ok := r.store.TryLock("events", true); ok {
			if st, err := os.Stat(path); err == nil && st.Size() >= eventsMaxSize {
				os.Rename(path, path+".1")
			}
			unlock()
		}
	}
}

// containerEvent records an event of the container in rec.
// Its attributes are docker's: the container's labels, its name and image
// (over labels of those names), then extra's key-value pairs.
func (r *Runtime) containerEvent(action string, rec *containerRecord, extra ...string) {
	attrs := make(map[string]string, len(rec.Config.Labels)+2+len(extra)/2)
	for k, v := range rec.Config.Labels {
		attrs[k] = v
	}
	attrs["name"], attrs["image"] = rec.Name, rec.Config.Image
	for i := 0; i+1 < len(extra); i += 2 {
		attrs[extra[i]] = extra[i+1]
	}
	r.emit("container", action, rec.ID, attrs)
}

// Events calls fn with each event of the root, in the order they were
// recorded, as they happen (docker events), until ctx ends (it then
// returns nil), WithEventsUntil's time passes, or fn returns an error,
// which it returns. The root keeps its last megabyte or so of events for
// WithEventsSince.
func (r *Runtime) Events(ctx context.Context, fn func(Event) error, opts ...EventOption) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	var cfg eventsConfig
	for _, o := range opts {
		o.applyEvents(&cfg)
	}
	path := filepath.Join(r.root, eventsFile)
	emitted := func(line []byte) error {
		var ev Event
		if json.Unmarshal(line, &ev) != nil || ev.Time.Before(cfg.since) {
			return nil // a line cut short by a crash, or too old
		}
		if !cfg.until.IsZero() && ev.Time.After(cfg.until) {
			return errEventsUntil
		}
		return fn(ev)
	}
	err := r.followEvents(ctx, path, !cfg.since.IsZero() || !cfg.until.IsZero(), cfg.until, emitted)
	if errors.Is(err, errEventsUntil) || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

var errEventsUntil = errors.New("events until reached")

// followEvents reads the events file (from its start, and the rotated one
// before it, with fromStart; else from its end) and then what is appended,
// across rotations, passing each line to fn.
func (r *Runtime) followEvents(ctx context.Context, path string, fromStart bool, until time.Time, fn func([]byte) error) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	if fromStart {
		// The rotated file first, unless it is the one just opened (a
		// rotation came between).
		if err := readEventLines(path+".1", fn, f); err != nil {
			return err
		}
	} else if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	br := bufio.NewReader(f)
	var pending []byte
	// drain passes the whole lines f has now to fn; a line without its
	// newline yet waits in pending.
	drain := func() error {
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				pending = append(pending, line...)
				if err == io.EOF {
					return nil
				}
				return err
			}
			if err := fn(append(pending, line[:len(line)-1]...)); err != nil {
				return err
			}
			pending = nil
		}
	}
	for {
		if err := drain(); err != nil {
			return err
		}
		if !until.IsZero() && time.Now().After(until) {
			return errEventsUntil
		}
		if rotatedAway(f, path) {
			next, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
			if err != nil {
				return err
			}
			// What a writer that opened the old file before the rename
			// appended since, then the file rotated out in between when
			// there were two rotations since the last look.
			err = drain()
			if err == nil {
				err = readEventLines(path+".1", fn, f, next)
			}
			if err != nil {
				next.Close()
				return err
			}
			f.Close()
			f, pending = next, nil
			br.Reset(f)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rotatedAway reports whether path names another file than f (or none)
// now and f was read to its end: what was appended to it before the
// rename is read first.
func rotatedAway(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	if pos, err := f.Seek(0, io.SeekCurrent); err != nil || pos < fi.Size() {
		return false
	}
	pi, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist) || err == nil && !os.SameFile(fi, pi)
}

// readEventLines passes each whole line of the file at path to fn, unless
// it is one of the files open as skip; a missing file has none.
func readEventLines(path string, fn func([]byte) error, skip ...*os.File) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	for _, o := range skip {
		if sameFile(f, o) {
			return nil
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}
