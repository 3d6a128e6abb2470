package berth_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth"
)

// TestEvents: a container's life, a detached one's (its start and exit
// recorded by the monitor, another process), a network's, a volume's and
// a tag's are events in the order they happened, with docker's
// attributes; a reader with an until time in the past gets the same and
// returns.
func TestEvents(t *testing.T) {
	rt := busyboxRuntime(t)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan berth.Event, 100)
	done := make(chan error, 1)
	go func() {
		done <- rt.Events(ctx, func(ev berth.Event) error { events <- ev; return nil }, berth.WithEventsSince(start))
	}()

	c := mustRun(t, rt, "busybox", sh("exit 3"), berth.WithName("ev1"))
	var ee *berth.ExitError
	if err := c.Wait(ctx); !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, "ev2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := rt.Run(ctx, "busybox", sh("true"), berth.WithName("evd"), berth.WithDetach())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := rt.CreateNetwork(ctx, "evnet")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := rt.CreateVolume(ctx, "evvol")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	img, err := rt.Image(ctx, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Tag(ctx, img, "evtag:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemoveImage(ctx, "evtag:1"); err != nil {
		t.Fatal(err)
	}

	want := []string{
		"container create " + c.ID + " name=ev1",
		"container start " + c.ID + " name=ev1",
		"container die " + c.ID + " exitCode=3 name=ev1",
		"container rename " + c.ID + " name=ev2 oldName=/ev1",
		"container destroy " + c.ID + " name=ev2",
		"container create " + d.ID + " name=evd",
		"container start " + d.ID + " name=evd",
		"container die " + d.ID + " exitCode=0 name=evd",
		"network create " + n.ID + " name=evnet",
		"network destroy " + n.ID + " name=evnet",
		"volume create evvol",
		"volume destroy evvol",
		"image tag " + img.ID + " name=evtag:1",
		"image untag " + img.ID + " name=evtag:1",
	}
	line := func(ev berth.Event) string {
		s := ev.Type + " " + ev.Action + " " + ev.ID
		var keys []string
		for k := range ev.Attributes {
			if k != "image" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			s += " " + k + "=" + ev.Attributes[k]
		}
		return s
	}
	var got []string
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.Type == "network" && ev.Attributes["name"] == berth.DefaultNetwork {
				continue // made by the first Run in this root
			}
			if ev.Time.Before(start) || ev.Type == "container" && ev.Action != "destroy" && ev.Attributes["image"] != "busybox" {
				t.Errorf("event %+v: its time or image is wrong", ev)
			}
			got = append(got, line(ev))
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Events after its context ended: %v", err)
	}

	var replayed []string
	err = rt.Events(context.Background(), func(ev berth.Event) error {
		if ev.Type != "network" || ev.Attributes["name"] != berth.DefaultNetwork {
			replayed = append(replayed, line(ev))
		}
		return nil
	},
		berth.WithEventsSince(start), berth.WithEventsUntil(time.Now()))
	if err != nil || !slices.Equal(replayed, want) {
		t.Errorf("replayed until now: %v\n%s", err, strings.Join(replayed, "\n"))
	}
	// An until time alone replays what is kept up to it, as docker's.
	replayed = replayed[:0]
	err = rt.Events(context.Background(), func(ev berth.Event) error {
		if ev.Type == "volume" {
			replayed = append(replayed, line(ev))
		}
		return nil
	}, berth.WithEventsUntil(time.Now()))
	if err != nil || !slices.Equal(replayed, []string{"volume create evvol", "volume destroy evvol"}) {
		t.Errorf("replayed with an until time alone: %v, %q", err, replayed)
	}
}
