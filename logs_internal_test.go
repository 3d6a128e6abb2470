package berth

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSeekTailPartial: seekTail counts lines, not records: a line logged
// in parts (P records, then an F) is one line, taken from its first part,
// and an unfinished last line (a P alone) counts as none.
func TestSeekTailPartial(t *testing.T) {
	const ts = "2026-11-30T01:49:35.123456789Z"
	records := []string{
		ts + " stdout P a-",
		ts + " stdout P b-",
		ts + " stdout F c",
		ts + " stderr F second",
		ts + " stdout F third",
		ts + " stdout P unfinished",
	}
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte(strings.Join(records, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		n, lines int
		from     int // the record the tail starts at
	}{
		{0, 0, 5}, {1, 1, 4}, {2, 2, 3}, {3, 3, 0}, {4, 3, 0},
	} {
		got, err := seekTail(f, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(f)
		want := strings.Join(records[tc.from:], "\n") + "\n"
		if got != tc.lines || string(rest) != want {
			t.Errorf("seekTail(%d) = %d lines, from %q; want %d, from record %d", tc.n, got, string(rest)[:min(len(rest), 50)], tc.lines, tc.from)
		}
	}
}
