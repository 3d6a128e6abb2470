package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/berth-dev/berth"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// statusWriter shows one status line per transferred item (a layer), as
// docker does: "<id>: Pull complete".
type statusWriter interface {
	// update sets the status of item id; detail is a progress bar a
	// terminal shows and a log leaves out.
	update(id, status, detail string)
}

// newStatusWriter returns progress bars redrawn in place when w is a
// terminal, and plain lines otherwise.
func newStatusWriter(w io.Writer) statusWriter {
	if isTerminal(w) {
		return &barWriter{w: w, line: map[string]int{}}
	}
	return &lineWriter{w: w, last: map[string]string{}}
}

// lineWriter prints a line each time an item's status changes, for logs.
type lineWriter struct {
	mu   sync.Mutex
	w    io.Writer
	last map[string]string
}

func (l *lineWriter) update(id, status, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last[id] == status {
		return
	}
	l.last[id] = status
	fmt.Fprintf(l.w, "%s: %s\n", id, status)
}

// barWriter keeps one line per item on a terminal and rewrites it in
// place with ANSI cursor movement. The cursor always rests at the start
// of the line below the last item.
type barWriter struct {
	mu   sync.Mutex
	w    io.Writer
	line map[string]int // item → line index, in order of appearance
}

func (b *barWriter) update(id, status, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	text := id + ": " + status
	if detail != "" {
		text += " " + detail
	}
	i, ok := b.line[id]
	if !ok {
		b.line[id] = len(b.line)
		fmt.Fprintf(b.w, "%s\n", text)
		return
	}
	up := len(b.line) - i
	// Up to the item's line, clear it, write, and back down.
	fmt.Fprintf(b.w, "\x1b[%dA\r\x1b[2K%s\r\x1b[%dB", up, text, up)
}

// progressBar draws docker's "[=====>     ]  1.2MB/4.3MB".
func progressBar(current, total int64) string {
	const width = 50
	if total <= 0 {
		return humanSize(current)
	}
	filled := int(float64(width) * float64(current) / float64(total))
	filled = min(max(filled, 0), width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	return fmt.Sprintf("[%s] %8s/%s", bar, humanSize(current), humanSize(total))
}

// pullProgress turns berth's layer reports into docker's pull statuses.
type pullProgress struct{ w statusWriter }

func (p *pullProgress) report(ev berth.Progress) {
	id := shortDigest(ev.Layer)
	switch {
	case ev.Cached:
		p.w.update(id, "Already exists", "")
	case ev.Done:
		p.w.update(id, "Pull complete", "")
	case ev.Current == 0:
		p.w.update(id, "Pulling fs layer", "")
	default:
		p.w.update(id, "Downloading", progressBar(ev.Current, ev.Total))
	}
}

// shortDigest is the 12 hex digits docker shows for a digest.
func shortDigest(d string) string {
	_, hex, found := strings.Cut(d, ":")
	if !found {
		hex = d
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}
