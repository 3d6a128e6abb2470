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
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
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
// current for readers in other programs without a flush schedule. With
// a size limit (WithLogRotation) a write that takes the log to it
// rotates it: log becomes log.1, log.1 log.2, and so on, the oldest
// beyond maxFiles deleted, and a new log is started.
type logFile struct {
	mu       sync.Mutex
	f        *os.File
	buf      []byte
	dir      string
	size     int64 // of f
	maxSize  int64 // 0: no rotation
	maxFiles int
}

// openLog opens the log of the container in dir for a start, or makes
// one that keeps nothing (noLog: WithoutLog), with no file (the emptied
// one a spare directory kept is deleted), for readers to find none and
// say why.
func openLog(dir string, maxSize int64, maxFiles int, noLog bool) (*logFile, error) {
	l := &logFile{dir: dir, maxSize: maxSize, maxFiles: max(maxFiles, 1)}
	if noLog {
		if err := os.Remove(logPath(dir, 0)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return l, nil
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// open opens (or makes) the log to append to.
func (l *logFile) open() error {
	f, err := os.OpenFile(filepath.Join(l.dir, logName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	l.f, l.size = f, 0
	if l.maxSize > 0 {
		if fi, err := f.Stat(); err == nil {
			l.size = fi.Size() // a container started again appends
		}
	}
	return nil
}

// rotate moves the full log aside (see logFile) and starts a new one,
// holding the directory's lock (lockLogs) so that no reader finds the
// files half renamed. A reader holding an older file reads it to its end
// and goes on with the newer ones (logSource); one that falls more than
// maxFiles behind loses what was deleted, as docker's readers do.
func (l *logFile) rotate() error {
	unlock, err := lockLogs(l.dir, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	l.f.Close()
	if l.maxFiles == 1 {
		err = os.Remove(logPath(l.dir, 0))
	} else {
		for i := l.maxFiles - 1; i >= 1 && err == nil; i-- {
			err = os.Rename(logPath(l.dir, i-1), logPath(l.dir, i)) // over the oldest, which goes
			if errors.Is(err, fs.ErrNotExist) {
				err = nil // not that many yet
			}
		}
	}
	if oerr := l.open(); err == nil {
		err = oerr
	}
	return err
}

// logPath is the container's log in dir (i 0) or its i-th rotated file.
func logPath(dir string, i int) string {
	if i == 0 {
		return filepath.Join(dir, logName)
	}
	return filepath.Join(dir, logName+"."+strconv.Itoa(i))
}

// lockLogs takes the flock of the container directory dir, which a
// rotation holds exclusively (how) and readers shared while they open
// the files, and returns its release.
func lockLogs(dir string, how int) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	if err := flockRetry(fd, how); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "flock", Path: dir, Err: err}
	}
	return func() { unix.Close(fd) }, nil
}

// logTimeFormat is RFC 3339 with nine digits of fraction always, as docker
// logs -t prints it (time.RFC3339Nano drops trailing zeros, so the
// timestamps did not line up).
const logTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// write records p, split into lines, as stream output received now.
func (l *logFile) write(stream string, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return // lost with a failed rotation
	}
	ts := time.Now().UTC().AppendFormat(nil, logTimeFormat)
	b := l.buf[:0]
	for len(p) > 0 {
		line, rest, full := bytes.Cut(p, []byte{'\n'})
		tag := " F "
		if !full {
			tag = " P "
		}
		start := len(b)
		b = append(b, ts...)
		b = append(b, " "+stream+tag...)
		b = append(b, line...)
		b = append(b, '\n')
		p = rest
		// A record that would take the log past its size goes into the
		// next one (unless it is the log's first: one record larger than
		// the size fills a log alone).
		if l.maxSize > 0 && l.size+int64(len(b)) > l.maxSize && l.size+int64(start) > 0 {
			l.flush(b[:start])
			if !l.rotateOrKeep() {
				return
			}
			b = append(b[:0], b[start:]...)
		}
	}
	l.flush(b)
	if cap(b) <= 256<<10 {
		l.buf = b
	}
}

// flush appends b, whole records, to the log.
func (l *logFile) flush(b []byte) {
	n, _ := l.f.Write(b)
	l.size += int64(n)
}

// rotateOrKeep rotates the log, and reports whether one is open to write
// to: one that fails to rotate logs on unbounded, if it can (rotating on
// every record otherwise).
func (l *logFile) rotateOrKeep() bool {
	if err := l.rotate(); err != nil {
		if l.f != nil {
			l.f.Close()
		}
		l.maxSize, l.f = 0, nil
		l.open()
	}
	return l.f != nil
}

func (l *logFile) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
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
	until      time.Time
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

// WithUntil stops at output logged after t (docker logs --until); with
// WithFollow, Logs also returns once t has passed.
func WithUntil(t time.Time) LogOption { return logOptionFunc(func(c *logConfig) { c.until = t }) }

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
	src, err := openLogs(c.rt.containerDir(c.ID))
	if err != nil {
		rec, rerr := c.rt.readRecord(c.ID)
		if rerr != nil {
			return rerr
		}
		if rec.Config.NoLog {
			return fmt.Errorf("container %s keeps no log (WithoutLog): configured logging driver does not support reading", c.Name)
		}
		if rec.neverStarted() && errors.Is(err, fs.ErrNotExist) {
			return nil // nothing logged yet
		}
		return fmt.Errorf("container %s has no log: %w", c.Name, err)
	}
	defer src.close()
	if cfg.follow {
		// Before the first read: nothing written after it goes unseen.
		src.watch, _ = watchPath(src.dir, logChangeEvents) // nil: polled
	}
	if err := src.seekTail(cfg.tail); err != nil {
		return err
	}
	err = copyLogs(ctx, c, src, stdout, stderr, &cfg)
	if errors.Is(err, errLogUntil) {
		return nil
	}
	return err
}

// errLogUntil ends Logs at a record logged after WithUntil's time.
var errLogUntil = errors.New("logged after the until time")

// copyLogs is Logs' copy from src, which it ends with errLogUntil at
// WithUntil's time.
func copyLogs(ctx context.Context, c *Container, src *logSource, stdout, stderr io.Writer, cfg *logConfig) error {
	br := bufio.NewReaderSize(src, 64<<10)
	var pending []byte
	// The container's state is looked at, at the end of the log, once a
	// poll's while at most: woken by every write of a chatty container, a
	// follower would otherwise read the record at each.
	var looked time.Time
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
			if src.catchUp() {
				continue // rotated: the rest of this file, then the newer ones
			}
			if since := time.Since(looked); since < logPoll {
				if err := src.awaitChange(ctx, cfg.until, logPoll-since); err != nil {
					return err
				}
				continue
			}
			looked = time.Now()
			if st, serr := c.State(ctx); serr != nil || !st.Running {
				// One more pass: the owner flushes before it records the exit.
				src.catchUp()
				rest, _ := io.ReadAll(br)
				pending = append(pending, rest...)
				for len(pending) > 0 {
					l, r, ok := bytes.Cut(pending, []byte{'\n'})
					if !ok {
						break
					}
					if err := emitLogLine(l, stdout, stderr, cfg); err != nil {
						return err
					}
					pending = r
				}
				return nil
			}
			if !cfg.until.IsZero() && time.Now().After(cfg.until) {
				return errLogUntil
			}
			if err := src.awaitChange(ctx, cfg.until, logPollWatched); err != nil {
				return err
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
		if cfg.follow && ctx.Err() != nil { // a follower that never reaches the end
			return ctx.Err()
		}
		if err := emitLogLine(line[:len(line)-1], stdout, stderr, cfg); err != nil {
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
	ts, stream, tag, content, ok := splitRecord(rec)
	if !ok {
		return nil // a record cut short by a crash
	}
	if !cfg.since.IsZero() || !cfg.until.IsZero() {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
			switch {
			case !cfg.until.IsZero() && t.After(cfg.until):
				return errLogUntil
			case t.Before(cfg.since):
				return nil
			}
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

// logSource reads a container's log files, oldest first, as one stream:
// the rotated ones (log.N ... log.1) and log, the one written to, as far
// as it knows (catchUp learns of rotations since).
type logSource struct {
	dir   string
	files []*os.File
	cur   int

	watch *fsWatch // the directory's changes, for a follower (nil: polled)
}

// logPoll is how often a follower looks again without a change in the
// container's directory: for what makes none (an owner that died without
// recording the exit), or where it cannot be watched.
const (
	logPoll         = 20 * time.Millisecond
	logPollWatched  = time.Second
	logChangeEvents = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_Q_OVERFLOW
)

// awaitChange waits, after the source was read to its end, until the
// container's directory changes (the log is written or rotated, the
// record rewritten at the exit), ctx ends, until passes, or a poll's
// while goes by.
func (s *logSource) awaitChange(ctx context.Context, until time.Time, maxWait time.Duration) error {
	wait := logPoll
	var changed chan struct{}
	if s.watch != nil {
		wait, changed = min(logPollWatched, maxWait), s.watch.C
	}
	if !until.IsZero() {
		wait = min(wait, max(time.Until(until), 0)+time.Millisecond)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.C:
	}
	return nil
}

// openLogs opens the container's log files as one set, under the
// directory's lock (see rotate).
func openLogs(dir string) (*logSource, error) {
	unlock, err := lockLogs(dir, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	last, err := os.Open(logPath(dir, 0))
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := 1; ; i++ {
		f, err := os.Open(logPath(dir, i))
		if err != nil {
			break
		}
		files = append(files, f)
	}
	slices.Reverse(files)
	return &logSource{dir: dir, files: append(files, last)}, nil
}

func (s *logSource) Read(p []byte) (int, error) {
	for {
		n, err := s.files[s.cur].Read(p)
		if n > 0 || err != io.EOF || s.cur == len(s.files)-1 {
			return n, err
		}
		s.files[s.cur].Close()
		s.files[s.cur] = nil
		s.cur++
	}
}

// catchUp adds the files written since the last one known was rotated
// (found among log.1, log.2, ... by its inode; all of them if it is gone
// already) and reports whether there were any. Read takes them once the
// last known one is read to its end. The files are opened under the
// directory's lock (see rotate).
func (s *logSource) catchUp() bool {
	last := s.files[len(s.files)-1]
	// The common case, no rotation, without the lock: log is still the
	// last file known (a rotation under way shows as a missing log).
	if fi, err := os.Stat(logPath(s.dir, 0)); err == nil {
		if li, err := last.Stat(); err == nil && os.SameFile(fi, li) {
			return false
		}
	}
	unlock, err := lockLogs(s.dir, unix.LOCK_SH)
	if err != nil {
		return false
	}
	defer unlock()
	cur, err := os.Open(logPath(s.dir, 0))
	if err != nil {
		return false
	}
	if sameFile(cur, last) {
		cur.Close()
		return false
	}
	var newer []*os.File // log.1, log.2, ...: newest first
	for i := 1; ; i++ {
		f, err := os.Open(logPath(s.dir, i))
		if err != nil {
			break
		}
		if sameFile(f, last) {
			f.Close()
			break
		}
		newer = append(newer, f)
	}
	slices.Reverse(newer)
	s.files = append(append(s.files, newer...), cur)
	return true
}

// sameFile reports whether a and b are one file.
func sameFile(a, b *os.File) bool {
	ia, errA := a.Stat()
	ib, errB := b.Stat()
	return errA == nil && errB == nil && os.SameFile(ia, ib)
}

// seekTail places the source at the start of the last n lines (n < 0:
// all of them; 0: none), over as many files as they take.
func (s *logSource) seekTail(n int) error {
	last := len(s.files) - 1
	switch {
	case n < 0:
		return nil
	case n == 0:
		s.cur = last
		s.skip()
		_, err := s.files[last].Seek(0, io.SeekEnd)
		return err
	}
	for i := last; i >= 0; i-- {
		found, err := seekTail(s.files[i], n)
		if err != nil {
			return err
		}
		s.cur = i
		if n -= found; n <= 0 {
			break
		}
	}
	s.skip()
	return nil
}

// skip closes the files before the current one, which a tail leaves
// unread: held, a rotated file's blocks would stay allocated.
func (s *logSource) skip() {
	for i := range s.cur {
		if s.files[i] != nil {
			s.files[i].Close()
			s.files[i] = nil
		}
	}
}

func (s *logSource) close() {
	for _, f := range s.files {
		if f != nil {
			f.Close()
		}
	}
	if s.watch != nil {
		s.watch.Close()
	}
}

// seekTail positions f at the start of its last n lines, or at its
// start when it has fewer, and returns how many lines that is. A line is
// what ends with a full record ("F"): a line the container wrote in
// parts is one, from its first part on.
func seekTail(f *os.File, n int) (int, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	lines := 0
	next := size // the start of the record after the one at hand
	// record takes the record starting at s (its predecessor ends at
	// s-1): a full one counts a line, and the one before the last n
	// lines has the tail start after it.
	record := func(s int64, inBuf []byte) (done bool, err error) {
		head := inBuf
		if len(head) < 64 {
			head = make([]byte, 64)
			k, err := f.ReadAt(head, s)
			if err != nil && err != io.EOF {
				return false, err
			}
			head = head[:k]
		}
		if recordTag(head) == 'F' {
			if lines == n {
				_, err := f.Seek(next, io.SeekStart)
				return true, err
			}
			lines++
		}
		next = s
		return false, nil
	}
	for off := size; off > 0; {
		start := max(0, off-chunk)
		m, err := f.ReadAt(buf[:off-start], start)
		if err != nil && err != io.EOF {
			return 0, err
		}
		for i := m - 1; i >= 0; i-- {
			if buf[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			if done, err := record(start+int64(i)+1, buf[i+1:m]); done || err != nil {
				return lines, err
			}
		}
		off = start
	}
	if size > 0 {
		if done, err := record(0, nil); done || err != nil {
			return lines, err
		}
	}
	_, err = f.Seek(0, io.SeekStart)
	return lines, err
}

// recordTag is the tag of the record head begins (F or P), or 0.
func recordTag(head []byte) byte {
	if _, _, tag, _, ok := splitRecord(head); ok && len(tag) > 0 {
		return tag[0]
	}
	return 0
}

// splitRecord splits a CRI log record, "TIMESTAMP STREAM TAG CONTENT";
// ok is false for one cut short.
func splitRecord(rec []byte) (ts, stream, tag, content []byte, ok bool) {
	ts, rest, ok1 := bytes.Cut(rec, []byte{' '})
	stream, rest, ok2 := bytes.Cut(rest, []byte{' '})
	tag, content, ok3 := bytes.Cut(rest, []byte{' '})
	return ts, stream, tag, content, ok1 && ok2 && ok3
}
