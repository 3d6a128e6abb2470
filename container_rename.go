package berth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Rename gives the container a new name (docker rename), running or not:
// Container and Containers find it by the new name from then on, the old
// one is free at once, and on the container's networks the others resolve
// the new name instead of the old. Its hostname stays. It fails with
// ErrExists when another container has the name and with ErrInvalid when
// the name is not one (see WithName) or is the container's own. The
// handle's Name field keeps the name it was made with (Inspect reports the
// new one): fields of a Container are not changed under its users.
func (c *Container) Rename(ctx context.Context, name string) error {
	r := c.rt
	if err := r.checkOpen(); err != nil {
		return err
	}
	name = strings.TrimPrefix(name, "/")
	// A start writes the whole record it read, and a start from a spare
	// links names to its name file: neither may run meanwhile.
	cur, unlock, err := r.lockNotStarting(ctx, c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if cur.Name == name {
		return fmt.Errorf("%w: container %s already has the name %q", ErrInvalid, shortID(c.ID), name)
	}
	if err := r.claimName(name, c.ID); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no such container: %s: %w", c.ID, ErrNotFound) // removed meanwhile
		}
		return err
	}
	var old string
	rec, err := r.updateRecord(ctx, c.ID, func(rec *containerRecord) error {
		old, rec.Name = rec.Name, name
		for i := range rec.State.Networks {
			rec.State.Networks[i].Container = name
		}
		return nil
	})
	if err != nil {
		r.releaseName(name, c.ID)
		return err
	}
	r.releaseName(old, c.ID)
	r.containerEvent("rename", rec, "oldName", "/"+old) // docker's form
	if !rec.alive() {
		return nil
	}
	// The name servers of its networks answer from the endpoint files.
	for _, e := range rec.State.Networks {
		var ep endpointRecord
		if readJSON(r.endpointPath(e.NetworkID, c.ID), &ep) != nil || ep.ContainerID != c.ID {
			continue // it stopped meanwhile: the next start writes them anew
		}
		ep.Name = name
		if err := r.writeEndpoint(&ep); err != nil {
			return err
		}
	}
	return nil
}
