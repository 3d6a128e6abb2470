package caps

import (
	"testing"
)

func TestDefaultSet(t *testing.T) {
	got, err := ParseSet(Default())
	if err != nil {
		t.Fatal(err)
	}
	if got != DefaultSet {
		t.Errorf("ParseSet(Default()) = %s, want %s", got, DefaultSet)
	}
	if n := len(got.Caps()); n != 14 {
		t.Errorf("default set has %d capabilities, want 14", n)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Cap
		ok   bool
	}{
		{"CAP_CHOWN", 0, true},
		{"chown", 0, true},
		{"cap_sys_admin", 21, true},
		{"NET_RAW", 13, true},
		{"CAP_CHECKPOINT_RESTORE", 40, true},
		{"CAP_NOPE", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("Parse(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && got != tt.want {
				t.Errorf("Parse(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for c := Cap(0); c <= MaxKnown; c++ {
		got, err := Parse(c.String())
		if err != nil || got != c {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.String(), got, err, c)
		}
	}
	if s := All().Names(); len(s) != int(MaxKnown)+1 {
		t.Errorf("All() has %d names, want %d", len(s), MaxKnown+1)
	}
}

func TestLast(t *testing.T) {
	if l := Last(); l < 37 || l > 63 {
		t.Errorf("Last() = %d, implausible for a kernel this project supports", l)
	}
}
