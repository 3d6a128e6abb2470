package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// filterArgs are a listing's --filter values by key, as docker's
// filters.Args holds them.
type filterArgs map[string][]string

// parseFilters reads --filter arguments as docker does: KEY=VALUE, the key
// lower-cased, key and value trimmed. An argument without "=" is refused
// as docker's flag parser refuses it (exit 125, with the help hint of
// cmd, "berth images"), then a key not among keys as docker's daemon
// refuses it. A row then passes when, for every key given, it matches one
// of that key's values (label= excepted: see matchLabels).
func parseFilters(cmd string, args []string, keys ...string) (filterArgs, error) {
	f := filterArgs{}
	for _, a := range args {
		if a == "" {
			continue // docker ignores an empty filter
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, &statusError{code: exitBerth, msg: fmt.Sprintf("invalid argument %q for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee '%s --help'.", a, cmd)}
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !slices.Contains(f[k], v) { // docker's filters are sets
			f[k] = append(f[k], v)
		}
	}
	for _, k := range sortedKeys(f) {
		if !slices.Contains(keys, k) {
			return nil, fmt.Errorf("Invalid filter '%s'", k)
		}
	}
	return f, nil
}

// danglingFilter reads a dangling= filter's values, d, as docker's daemon
// does: "true" if one of them is among yes, else "false" if one is among
// no, else an error; "" without any.
func danglingFilter(d, yes, no []string) (string, error) {
	switch {
	case len(d) == 0:
		return "", nil
	case slices.ContainsFunc(d, func(v string) bool { return slices.Contains(yes, v) }):
		return "true", nil
	case slices.ContainsFunc(d, func(v string) bool { return slices.Contains(no, v) }):
		return "false", nil
	}
	return "", fmt.Errorf("Invalid filter 'dangling=[%s]'", strings.Join(d, " "))
}

// matchLabels is docker's label filter (filters.Args.MatchKVList): labels
// has every KEY of values, with its VALUE where one is given
// ("KEY=VALUE"). Unlike other keys, several label values must all match.
func matchLabels(values []string, labels map[string]string) bool {
	for _, v := range values {
		k, want, hasValue := strings.Cut(v, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != want {
			return false
		}
	}
	return true
}

// matchPattern is docker's name= and id= filter (filters.Args.Match): s
// equals one of values or one of them, an unanchored regular expression,
// matches in s; one that does not compile matches nothing.
func matchPattern(values []string, s string) bool {
	for _, v := range values {
		if v == s {
			return true
		}
		if ok, err := regexp.MatchString(v, s); err == nil && ok {
			return true
		}
	}
	return false
}

// labelColumn is a listing's LABELS column: k=v pairs by key, joined by
// commas.
func labelColumn(labels map[string]string) string {
	var pairs []string
	for _, k := range sortedKeys(labels) {
		pairs = append(pairs, k+"="+labels[k])
	}
	return strings.Join(pairs, ",")
}

// tableFormat is a listing's --format as docker reads it: "table" alone is
// the default table (or -q's IDs), as no format is.
func tableFormat(format string) string {
	if strings.TrimSpace(format) == "table" {
		return ""
	}
	return format
}
