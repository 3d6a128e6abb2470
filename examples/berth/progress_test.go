package main

import (
	"bytes"
	"testing"

	"github.com/berth-dev/berth"
)

func TestPullProgressLines(t *testing.T) {
	var buf bytes.Buffer
	p := &pullProgress{w: &lineWriter{w: &buf, last: map[string]string{}}}
	a, b := "sha256:aaaaaaaaaaaa1111", "sha256:bbbbbbbbbbbb2222"
	for _, ev := range []berth.Progress{
		{Layer: a, Current: 0, Total: 10},
		{Layer: b, Current: 10, Total: 10, Done: true, Cached: true},
		{Layer: a, Current: 5, Total: 10},
		{Layer: a, Current: 8, Total: 10},
		{Layer: a, Current: 10, Total: 10, Done: true},
	} {
		p.report(ev)
	}
	want := "aaaaaaaaaaaa: Pulling fs layer\nbbbbbbbbbbbb: Already exists\naaaaaaaaaaaa: Downloading\naaaaaaaaaaaa: Pull complete\n"
	if got := buf.String(); got != want {
		t.Errorf("plain pull progress:\n%s\nwant:\n%s", got, want)
	}
}

func TestBarWriterRedrawsInPlace(t *testing.T) {
	var buf bytes.Buffer
	w := &barWriter{w: &buf, line: map[string]int{}}
	w.update("a", "Pulling fs layer", "")
	w.update("b", "Already exists", "")
	w.update("a", "Pull complete", "")
	// "a" is two lines above the cursor: up 2, clear, write, down 2.
	want := "a: Pulling fs layer\nb: Already exists\n\x1b[2A\r\x1b[2Ka: Pull complete\r\x1b[2B"
	if got := buf.String(); got != want {
		t.Errorf("bar output = %q, want %q", got, want)
	}
}

func TestProgressBar(t *testing.T) {
	tests := []struct {
		cur, total int64
		want       string
	}{
		{0, 100, "[>" + spaces(49) + "]       0B/100B"},
		{50, 100, "[=========================>" + spaces(24) + "]      50B/100B"},
		{100, 100, "[==================================================]     100B/100B"},
	}
	for _, tt := range tests {
		if got := progressBar(tt.cur, tt.total); got != tt.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", tt.cur, tt.total, got, tt.want)
		}
	}
}

func spaces(n int) string { return string(bytes.Repeat([]byte{' '}, n)) }
