package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"
)

// newTable returns a tabwriter spaced like docker's tables: columns at
// least 10 wide, 3 spaces apart.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
}

// humanSize formats a byte count like docker's SIZE column: decimal units
// and 3 significant digits ("4.26MB", "123kB", "512B").
func humanSize(n int64) string { return decimalSize(n, 3) }

// decimalSize formats a byte count in decimal units with digits
// significant digits (docker's units.HumanSize has 4: "1.235MB").
func decimalSize(n int64, digits int) string {
	return scaledSize(float64(n), 1000, []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}, digits)
}

// scaledSize divides v by step while it reaches it and prints it with
// digits significant digits and the unit so reached.
func scaledSize(v, step float64, units []string, digits int) string {
	i := 0
	for v >= step && i < len(units)-1 {
		v /= step
		i++
	}
	return fmt.Sprintf("%.*g%s", digits, v, units[i])
}

// humanDuration formats an age like docker's CREATED column does before
// " ago": "Less than a second", "About a minute", "2 hours", "3 weeks".
func humanDuration(d time.Duration) string {
	seconds := int(d.Seconds())
	minutes := int(d.Minutes())
	hours := int(d.Hours() + 0.5) // docker rounds hours to the nearest
	switch {
	case seconds < 1:
		return "Less than a second"
	case seconds == 1:
		return "1 second"
	case seconds < 60:
		return fmt.Sprintf("%d seconds", seconds)
	case minutes == 1:
		return "About a minute"
	case minutes < 60:
		return fmt.Sprintf("%d minutes", minutes)
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// createdSince is the CREATED column: "2 hours ago", or "N/A" for an image
// with no creation time.
func createdSince(t, now time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// parseTemplate parses a --format template with docker's helper functions.
func parseTemplate(format string) (*template.Template, error) {
	return template.New("").Funcs(templateFuncs).Parse(format)
}

// templateFuncs are the functions docker's --format templates offer.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSpace(buf.String()), nil
	},
	"join":  strings.Join,
	"split": strings.Split,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"title": title,
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
	"truncate": func(s string, n int) string {
		if r := []rune(s); len(r) > n {
			return string(r[:n])
		}
		return s
	},
	"println": fmt.Sprintln,
}

// title upper-cases the first letter of every word.
func title(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		defer func() { prev = r }()
		if unicode.IsSpace(prev) {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}
