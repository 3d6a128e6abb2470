// Package dockerfile holds the parts of a Dockerfile build that are formats
// of their own: the .dockerignore pattern language.
package dockerfile

import (
	"bufio"
	"io"
	"path"
	"regexp"
	"strings"
)

// Ignore is a parsed .dockerignore file. The zero value (and nil) ignores
// nothing.
type Ignore struct {
	rules []rule
	neg   bool // some rule re-includes paths
}

type rule struct {
	re  *regexp.Regexp
	neg bool
}

// ParseIgnore reads .dockerignore content with docker's rules: one pattern a
// line, '#' comments, blank lines skipped, a leading '!' re-includes what
// earlier patterns excluded, patterns are cleaned and relative to the
// context root ("/a" is "a"), '*' and '?' match within one path element,
// '**' matches any number of elements, and a pattern that matches a
// directory excludes everything below it. The last matching pattern wins.
func ParseIgnore(r io.Reader) (*Ignore, error) {
	ig := &Ignore{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := false
		if strings.HasPrefix(line, "!") {
			neg, line = true, strings.TrimSpace(line[1:])
		}
		p := strings.TrimPrefix(path.Clean("/"+line), "/")
		if p == "" {
			p = "."
		}
		re, err := regexp.Compile(patternRegexp(p))
		if err != nil {
			return nil, err
		}
		ig.rules = append(ig.rules, rule{re: re, neg: neg})
		ig.neg = ig.neg || neg
	}
	return ig, sc.Err()
}

// patternRegexp translates one pattern into an anchored regexp.
func patternRegexp(p string) string {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '*' && strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case c == '*' && strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := p[i+1 : i+end]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += end
		case c == '\\' && i+1 < len(p):
			i++
			b.WriteString(regexp.QuoteMeta(string(p[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return b.String()
}

// Excluded reports whether the slash-separated path rel, relative to the
// context root, is excluded: the last pattern matching rel or one of its
// parent directories decides.
func (ig *Ignore) Excluded(rel string) bool {
	if ig == nil || len(ig.rules) == 0 {
		return false
	}
	rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
	excluded := false
	for _, r := range ig.rules {
		if matchSelfOrParent(r.re, rel) {
			excluded = !r.neg
		}
	}
	return excluded
}

// MayReinclude reports whether some pattern re-includes paths, so that an
// excluded directory must still be walked for exceptions.
func (ig *Ignore) MayReinclude() bool { return ig != nil && ig.neg }

func matchSelfOrParent(re *regexp.Regexp, rel string) bool {
	for p := rel; p != "" && p != "."; p = path.Dir(p) {
		if re.MatchString(p) {
			return true
		}
		if !strings.Contains(p, "/") {
			break
		}
	}
	return false
}

// NewIgnore compiles patterns (COPY --exclude's) with the rules of
// ParseIgnore.
func NewIgnore(patterns []string) (*Ignore, error) {
	return ParseIgnore(strings.NewReader(strings.Join(patterns, "\n")))
}
