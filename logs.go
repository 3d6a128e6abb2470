package berth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Container logs are kept in containers/<id>/log in the CRI format
// containerd and Kubernetes use: one record per line,
//
//	2026-11-27T11:46:20.123456789Z stdout F hello
//
// where F marks a full line and P a part of a longer one. Timestamps make
// `logs --since` and `-t` possible without a daemon holding them.
const logName = "log"

// logFile appends records for several streams of one container. Each
// chunk read from the container becomes one write(2), so the log is
// current for readers in other programs without a flush schedule.
type logFile struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

func openLog(dir string) (*logFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, logName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &logFile{f: f}, nil
}

// logTimeFormat is RFC 3339 with nine digits of fraction always, as docker
// logs -t prints it (time.RFC3339Nano drops trailing zeros, so the
// timestamps did not line up).
const logTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// write records p, split into lines, as stream output received now.
func (l *logFile) write(stream string, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := time.Now().UTC().AppendFormat(nil, logTimeFormat)
	b := l.buf[:0]
	for len(p) > 0 {
		line, rest, full := bytes.Cut(p, []byte{'\n'})
		tag := " F "
		if !full {
			tag = " P "
		}
		b = append(b, ts...)
		b = append(b, " "+stream+tag...)
		b = append(b, line...)
		b = append(b, '\n')
		p = rest
	}
	l.f.Write(b)
	if cap(b) <= 256<<10 {
		l.buf = b
	}
}

func (l *logFile) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// streamWriter is what a container's stdout or stderr is copied into:
// the log and, for attached containers, the caller's writer. A failing
// caller writer is dropped so the container never blocks on it.
type streamWriter struct {
	log    *logFile
	stream string
	user   io.Writer
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.log.write(s.stream, p)
	if s.user != nil {
		if _, err := s.user.Write(p); err != nil {
			s.user = nil
		}
	}
	return len(p), nil
}

// LogOption configures Logs.
type LogOption interface{ applyLog(*logConfig) }

type logConfig struct {
	follow     bool
	since      time.Time
	timestamps bool
	tail       int
}

type logOptionFunc func(*logConfig)

func (f logOptionFunc) applyLog(c *logConfig) { f(c) }

// WithFollow keeps Logs streaming new output until the container exits or
// ctx ends (docker logs -f). Default: return at the end of what is logged.
func WithFollow() LogOption { return logOptionFunc(func(c *logConfig) { c.follow = true }) }

// WithSince skips output logged before t (docker logs --since).
func WithSince(t time.Time) LogOption { return logOptionFunc(func(c *logConfig) { c.since = t }) }

// WithTimestamps prefixes each line with its RFC 3339 timestamp (docker
// logs -t).
func WithTimestamps() LogOption { return logOptionFunc(func(c *logConfig) { c.timestamps = true }) }

// WithTail limits output to the last n lines logged so far (docker logs
// --tail): 0 gives none of them (with WithFollow, only what comes next),
// a negative n all. Default: all.
func WithTail(n int) LogOption { return logOptionFunc(func(c *logConfig) { c.tail = n }) }

// Logs copies the container's logged output to stdout and stderr (either
// may be nil to skip that stream), as docker logs does. It works for any
// container in the root, running or exited, started by any program; one
// Create made and never started has logged nothing. A container started
// again (Start) has the output of all its runs, oldest first.
func (c *Container) Logs(ctx context.Context, stdout, stderr io.Writer, opts ...LogOption) error {
	cfg := logConfig{tail: -1}
	for _, o := range opts {
		o.applyLog(&cfg)
	}
	f, err := os.Open(filepath.Join(c.rt.containerDir(c.ID), logName))
	if err != nil {
		rec, rerr := c.rt.readRecord(c.ID)
		if rerr != nil {
			return rerr
		}
		if rec.neverStarted() && errors.Is(err, fs.ErrNotExist) {
			return nil // nothing logged yet
		}
		return fmt.Errorf("container %s has no log: %w", c.Name, err)
	}
	defer f.Close()
	switch {
	case cfg.tail == 0:
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
	case cfg.tail > 0:
		if err := seekTail(f, cfg.tail); err != nil {
			return err
		}
	}
	br := bufio.NewReaderSize(f, 64<<10)
	var pending []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			pending = append(pending, line...)
			continue
		}
		if err == io.EOF {
			pending = append(pending, line...)
			if !cfg.follow {
				return nil
			}
			if st, serr := c.State(ctx); serr != nil || !st.Running {
				// One more pass: the owner flushes before it records the exit.
				rest, _ := io.ReadAll(br)
				pending = append(pending, rest...)
				for len(pending) > 0 {
					l, r, ok := bytes.Cut(pending, []byte{'\n'})
					if !ok {
						break
					}
					if err := emitLogLine(l, stdout, stderr, &cfg); err != nil {
						return err
					}
					pending = r
				}
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			line = append(pending, line...)
			pending = nil
		}
		if err := emitLogLine(line[:len(line)-1], stdout, stderr, &cfg); err != nil {
			return err
		}
	}
}

// WaitLog waits until a line of the container's output, stdout or stderr,
// contains text (testcontainers' wait.ForLog; lines logged before the call
// count), for a container that says when it is ready ("ready to accept
// connections"). It fails with an error wrapping ErrNotRunning when the
// container exits without logging it (not while its restart policy
// restarts it: its next runs may), and with ctx's error when ctx ends
// first. It reads the log as Logs does, so it works for containers any
// program started.
func (c *Container) WaitLog(ctx context.Context, text string) error {
	for {
		err := c.Logs(ctx, &logMatcher{text: []byte(text)}, &logMatcher{text: []byte(text)}, WithFollow())
		switch {
		case errors.Is(err, errLogMatched):
			return nil
		case err != nil:
			return err
		}
		// Logs follows one run, as docker logs -f does: through a restart
		// by the container's policy, the next run is followed (its log
		// read again from the start, once).
		for {
			st, err := c.State(ctx)
			if err == nil && st.Running {
				break
			}
			if err != nil || !st.Restarting {
				return fmt.Errorf("container %s exited without logging %q: %w", c.Name, text, ErrNotRunning)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// errLogMatched stops Logs for WaitLog once the text is seen.
var errLogMatched = errors.New("log matched")

// logMatcher is one stream's writer for WaitLog: it keeps the current
// line (its last 64 KiB) and fails with errLogMatched once it holds text.
type logMatcher struct {
	text, line []byte
}

func (m *logMatcher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		chunk, rest, eol := bytes.Cut(p, []byte{'\n'})
		m.line = append(m.line, chunk...)
		if bytes.Contains(m.line, m.text) {
			return n, errLogMatched
		}
		if keep := len(m.text) - 1; len(m.line) > 64<<10+keep {
			m.line = append(m.line[:0], m.line[len(m.line)-keep:]...)
		}
		if eol {
			m.line = m.line[:0]
		}
		p = rest
	}
	return n, nil
}

// emitLogLine writes one CRI record's content to its stream.
func emitLogLine(rec []byte, stdout, stderr io.Writer, cfg *logConfig) error {
	ts, rest, ok1 := bytes.Cut(rec, []byte{' '})
	stream, rest, ok2 := bytes.Cut(rest, []byte{' '})
	tag, content, ok3 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || !ok3 {
		return nil // a record cut short by a crash
	}
	if !cfg.since.IsZero() {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil && t.Before(cfg.since) {
			return nil
		}
	}
	w := stdout
	if string(stream) == "stderr" {
		w = stderr
	}
	if w == nil {
		return nil
	}
	var out []byte
	if cfg.timestamps {
		out = append(append(out, ts...), ' ')
	}
	out = append(out, content...)
	if string(tag) == "F" {
		out = append(out, '\n')
	}
	_, err := w.Write(out)
	return err
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	seen := 0
	for off := size; off > 0; {
		start := max(0, off-chunk)
		m, err := f.ReadAt(buf[:off-start], start)
		if err != nil && err != io.EOF {
			return err
		}
		for i := m - 1; i >= 0; i-- {
			if buf[i] == '\n' && start+int64(i) != size-1 {
				seen++
				if seen == n {
					_, err := f.Seek(start+int64(i)+1, io.SeekStart)
					return err
				}
			}
		}
		off = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}
