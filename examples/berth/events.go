package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/berth-dev/berth"
)

// eventRow is what an events --format template sees: docker's fields,
// with its JSON names.
type eventRow struct {
	Status   string     `json:"status,omitempty"`
	ID       string     `json:"id,omitempty"`
	From     string     `json:"from,omitempty"`
	Type     string     `json:"Type"`
	Action   string     `json:"Action"`
	Actor    eventActor `json:"Actor"`
	Scope    string     `json:"scope"`
	Time     int64      `json:"time"`
	TimeNano int64      `json:"timeNano"`
}

type eventActor struct {
	ID         string
	Attributes map[string]string
}

// eventsCommand is docker events: the root's events as they happen, from
// --since, until --until or an interrupt, filtered as docker filters them
// (type, event, container, image, network, volume; several values of one
// key are alternatives, but every label must match, and different keys
// must all match).
func eventsCommand(fs *flagSet) runFunc {
	var since, until, format string
	var filterArgs []string
	fs.String(&since, "", "since", "string", "", "Show all events created since timestamp")
	fs.String(&until, "", "until", "string", "", "Stream events until this timestamp")
	fs.Strings(&filterArgs, "f", "filter", "Filter output based on conditions provided (type, event, container, image, network, volume, label)")
	fs.String(&format, "", "format", "string", "", "Format the output using the given Go template")
	name := fs.Name() // "berth events" or "berth system events"
	return func(ctx context.Context, c *cli, args []string) error {
		opts, err := timeOptions(timeFlag[berth.EventOption]{"since", since, berth.WithEventsSince}, timeFlag[berth.EventOption]{"until", until, berth.WithEventsUntil})
		if err != nil {
			return err
		}
		filters, err := parseFilters(name, filterArgs, "type", "event", "container", "image", "network", "volume", "label")
		if err != nil {
			return err
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
					Actor: eventActor{ID: ev.ID, Attributes: ev.Attributes}, Scope: "local", Time: ev.Time.Unix(), TimeNano: ev.Time.UnixNano(),
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
// an event of that type by a prefix of its ID or by its name, "image" the
// container's image or an image's ID or name, and "label" a label (key or
// key=value) a container's event carries.
func eventMatches(ev berth.Event, filters filterArgs) bool {
	for k, values := range filters {
		if k == "label" { // key, or key=value, among the attributes: all of them
			if !matchLabels(values, ev.Attributes) {
				return false
			}
			continue
		}
		ok := false
		for _, v := range values {
			switch k {
			case "type":
				ok = ok || ev.Type == v
			case "event":
				ok = ok || ev.Action == v
			case "container", "network", "volume":
				ok = ok || ev.Type == k && (strings.HasPrefix(ev.ID, v) || ev.Attributes["name"] == v)
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
