package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth"
)

// eventRow is what an events --format template sees: docker's fields.
type eventRow struct {
	Type, Action, Status, ID, From string
	Actor                          eventActor
	Time, TimeNano                 int64
}

type eventActor struct {
	ID         string
	Attributes map[string]string
}

// eventsCommand is docker events: the root's events as they happen, from
// --since, until --until or an interrupt, filtered as docker filters them
// (type, event, container, image, network, volume; several values of one
// key are alternatives, different keys must all match).
func eventsCommand(fs *flagSet) runFunc {
	var since, until, format string
	var filterArgs []string
	fs.String(&since, "", "since", "string", "", "Show all events created since timestamp")
	fs.String(&until, "", "until", "string", "", "Stream events until this timestamp")
	fs.Strings(&filterArgs, "f", "filter", "Filter output based on conditions provided (type, event, container, image, network, volume)")
	fs.String(&format, "", "format", "string", "", "Format the output using the given Go template")
	return func(ctx context.Context, c *cli, args []string) error {
		var opts []berth.EventOption
		now := time.Now()
		for _, t := range []struct {
			flag, value string
			opt         func(time.Time) berth.EventOption
		}{{"since", since, berth.WithEventsSince}, {"until", until, berth.WithEventsUntil}} {
			if t.value == "" {
				continue
			}
			at, err := parseTimestamp(t.value, now)
			if err != nil {
				return fmt.Errorf("invalid value for %q: %w", t.flag, err)
			}
			opts = append(opts, t.opt(at))
		}
		filters := map[string][]string{}
		for _, f := range filterArgs {
			k, v, ok := strings.Cut(f, "=")
			if !ok || !slices.Contains([]string{"type", "event", "container", "image", "network", "volume"}, k) {
				return fmt.Errorf("invalid filter %q", f)
			}
			filters[k] = append(filters[k], v)
		}
		var print func(berth.Event) error
		if format != "" {
			tmpl, err := parseTemplate(format + "\n")
			if err != nil {
				return &statusError{code: exitFailure, msg: "Template parsing error: " + err.Error()}
			}
			print = func(ev berth.Event) error {
				return tmpl.Execute(c.stdout, eventRow{
					Type: ev.Type, Action: ev.Action, Status: ev.Action, ID: ev.ID, From: ev.Attributes["image"],
					Actor: eventActor{ID: ev.ID, Attributes: ev.Attributes}, Time: ev.Time.Unix(), TimeNano: ev.Time.UnixNano(),
				})
			}
		} else {
			print = func(ev berth.Event) error {
				var attrs []string
				for k, v := range ev.Attributes {
					attrs = append(attrs, k+"="+v)
				}
				slices.Sort(attrs)
				line := ev.Time.Local().Format("2006-01-02T15:04:05.000000000Z07:00") + " " + ev.Type + " " + ev.Action + " " + ev.ID
				if len(attrs) > 0 {
					line += " (" + strings.Join(attrs, ", ") + ")"
				}
				_, err := fmt.Fprintln(c.stdout, line)
				return err
			}
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		return rt.Events(ctx, func(ev berth.Event) error {
			if !eventMatches(ev, filters) {
				return nil
			}
			return print(ev)
		}, opts...)
	}
}

// eventMatches applies docker's events filters: an object filter matches
// an event of that type by ID or name, and the container's image for
// "image".
func eventMatches(ev berth.Event, filters map[string][]string) bool {
	for k, values := range filters {
		ok := false
		for _, v := range values {
			switch k {
			case "type":
				ok = ok || ev.Type == v
			case "event":
				ok = ok || ev.Action == v
			case "container", "network", "volume":
				ok = ok || ev.Type == k && (ev.ID == v || strings.HasPrefix(ev.ID, v) && len(v) >= 12 || ev.Attributes["name"] == v)
			case "image":
				ok = ok || ev.Attributes["image"] == v || ev.Type == "image" && (ev.ID == v || ev.Attributes["name"] == v)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
