package main

import (
	"testing"
	"time"
)

func TestHumanSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0B"},
		{512, "512B"},
		{1000, "1kB"},
		{4_262_000, "4.26MB"},
		{1_240_000, "1.24MB"},
		{72_800_000, "72.8MB"},
		{1_500_000_000, "1.5GB"},
	}
	for _, tt := range tests {
		if got := humanSize(tt.n); got != tt.want {
			t.Errorf("humanSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestCreatedSince(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "Less than a second ago"},
		{30 * time.Second, "30 seconds ago"},
		{90 * time.Second, "About a minute ago"},
		{10 * time.Minute, "10 minutes ago"},
		{70 * time.Minute, "About an hour ago"},
		{2 * time.Hour, "2 hours ago"},
		{5 * 24 * time.Hour, "5 days ago"},
		{3 * 7 * 24 * time.Hour, "3 weeks ago"},
		{100 * 24 * time.Hour, "3 months ago"},
		{3 * 365 * 24 * time.Hour, "3 years ago"},
	}
	for _, tt := range tests {
		if got := createdSince(now.Add(-tt.ago), now); got != tt.want {
			t.Errorf("createdSince(%v ago) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := createdSince(time.Time{}, now); got != "N/A" {
		t.Errorf("createdSince(zero) = %q, want N/A", got)
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in, full, familiar, path string
	}{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest", "library/busybox"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "library/busybox"},
		{"user/app", "docker.io/user/app:latest", "user/app:latest", "user/app"},
		{"localhost:5000/app:v1", "localhost:5000/app:v1", "localhost:5000/app:v1", "app"},
		{"127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest", "127.0.0.1:5000/a/b:latest", "a/b"},
		{"ghcr.io/o/r@sha256:abc", "ghcr.io/o/r@sha256:abc", "ghcr.io/o/r@sha256:abc", "o/r"},
	}
	for _, tt := range tests {
		r := parseReference(tt.in)
		if r.String() != tt.full || r.familiar() != tt.familiar || r.path != tt.path {
			t.Errorf("parseReference(%q) = %q, %q, %q; want %q, %q, %q", tt.in, r.String(), r.familiar(), r.path, tt.full, tt.familiar, tt.path)
		}
	}
}

func TestArgCount(t *testing.T) {
	tests := []struct {
		a    argCount
		n    int
		want string
	}{
		{exactly(1), 0, `"berth x" requires exactly 1 argument.`},
		{exactly(2), 3, `"berth x" requires exactly 2 arguments.`},
		{exactly(0), 1, `"berth x" accepts no arguments.`},
		{atLeast(1), 0, `"berth x" requires at least 1 argument.`},
		{atMost(1), 2, `"berth x" requires at most 1 argument.`},
		{between(1, 2), 0, `"berth x" requires at least 1 argument and at most 2 arguments.`},
		{between(1, 2), 2, ""},
	}
	for _, tt := range tests {
		err := tt.a.check("x", tt.n)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%+v.check(%d) = %q, want %q", tt.a, tt.n, got, tt.want)
		}
	}
}
