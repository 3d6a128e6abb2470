package dockerfile

import (
	"strings"
	"testing"
)

func TestIgnore(t *testing.T) {
	ig, err := ParseIgnore(strings.NewReader("# comment\n*.log\n/build\n**/tmp\n!keep.log\nsecret?\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"a.log", true},
		{"keep.log", false},
		{"dir/a.log", false},
		{"build", true},
		{"build/x/y", true},
		{"a/b/tmp/z", true},
		{"tmp", true},
		{"secret1", true},
		{"secret12", false},
		{"src/main.go", false},
	} {
		if got := ig.Excluded(tt.path); got != tt.want {
			t.Errorf("Excluded(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
	var none *Ignore
	if none.Excluded("x") {
		t.Error("nil Ignore excludes")
	}
}
