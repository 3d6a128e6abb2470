package berth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The prune family removes what a root no longer uses, as docker's prune
// commands do; each skips what is in use when it gets to it (a container
// started meanwhile, a network a container joined) instead of failing.

// PruneContainers removes the root's containers that are not running
// (docker container prune): created, exited and dead ones. Running, paused
// and restarting ones stay, as does one another program starts meanwhile;
// volumes stay too. It returns the IDs removed and the bytes their
// writable layers held.
func (r *Runtime) PruneContainers(ctx context.Context) (removed []string, reclaimed int64, err error) {
	if err := r.checkOpen(); err != nil {
		return nil, 0, err
	}
	for _, rec := range r.containerRecords() {
		if !rec.prunable() {
			continue
		}
		size := r.writableSize(rec.ID)
		if err := r.containerHandle(rec.ID, rec.Name).Remove(ctx); errors.Is(err, ErrInUse) {
			continue
		} else if err != nil {
			return removed, reclaimed, err
		}
		removed = append(removed, rec.ID)
		reclaimed += size
	}
	return removed, reclaimed, nil
}

// ImagePruneOption changes what PruneImages removes.
type ImagePruneOption interface{ applyImagePrune(*imagePruneConfig) }

type imagePruneConfig struct{ all bool }

type imagePruneOptionFunc func(*imagePruneConfig)

func (f imagePruneOptionFunc) applyImagePrune(c *imagePruneConfig) { f(c) }

// WithPruneAllImages makes PruneImages remove every image no container
// uses, tagged or not (docker image prune --all). Default: dangling images
// only, those no tag names (docker's <none>, also one pulled by digest).
func WithPruneAllImages() ImagePruneOption {
	return imagePruneOptionFunc(func(c *imagePruneConfig) { c.all = true })
}

// PruneImages removes the images no tag names and no container (running
// or not) uses (docker image prune), every image no container uses
// WithPruneAllImages, and then the content nothing else keeps. Images of
// build steps are the build cache's, not listed and not removed here (see
// PruneBuildCache). It waits for the builds running in any program on the
// root, so a build's progress callback must not call it. It returns the
// IDs of the images removed and the bytes of content freed.
func (r *Runtime) PruneImages(ctx context.Context, opts ...ImagePruneOption) (removed []string, reclaimed int64, err error) {
	if err := r.checkOpen(); err != nil {
		return nil, 0, err
	}
	var cfg imagePruneConfig
	for _, o := range opts {
		o.applyImagePrune(&cfg)
	}
	// A build between two steps holds the image it builds on only in
	// memory.
	unlockBuilds, err := r.store.Lock(ctx, buildsLock, true)
	if err != nil {
		return nil, 0, err
	}
	defer unlockBuilds()
	// Read outside the refs lock: a container made meanwhile keeps its
	// image's content anyway (the collection below).
	used := map[string]bool{}
	for _, rec := range r.containerRecords() {
		used[rec.Config.ImageDigest] = true
	}
	var gone []string // manifest digests
	err = r.store.UpdateRefs(ctx, func(refs map[string]string) error {
		gone = gone[:0]
		names := map[string][]string{} // manifest digest → its references
		for k, d := range refs {
			names[d] = append(names[d], k)
		}
		for d, keys := range names {
			// Docker's rule: an image no tag names is dangling, even one
			// a digest reference names (pulled by digest).
			tagged := slices.ContainsFunc(keys, func(k string) bool { return !strings.HasPrefix(k, danglingPrefix) && !strings.Contains(k, "@") })
			built := slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, intermediatePrefix) })
			if used[d] || built || tagged && !cfg.all {
				// A container's, a build step's (an older root's
				// references: the build cache's), or tagged.
				continue
			}
			for _, k := range keys {
				delete(refs, k)
			}
			gone = append(gone, d)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	for _, d := range gone {
		id := d
		if cd, err := r.configDigest(d); err == nil { // its content stays until the collection below
			id = cd
		}
		removed = append(removed, id)
	}
	slices.Sort(removed)
	for _, id := range removed {
		r.emit("image", "delete", id, nil)
	}
	rep, err := r.Prune(ctx)
	return removed, rep.SpaceReclaimed, err
}

// PruneNetworks removes the networks no container joins or is configured
// to join (docker network prune); the default network stays. It returns
// the names removed.
func (r *Runtime) PruneNetworks(ctx context.Context) ([]string, error) {
	nets, err := r.Networks(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range nets {
		if n.Name == DefaultNetwork {
			continue
		}
		if err := n.Remove(ctx); errors.Is(err, ErrInUse) {
			continue
		} else if err != nil {
			return removed, err
		}
		removed = append(removed, n.Name)
	}
	return removed, nil
}

// PruneBuildCache empties the build cache (docker builder prune --all):
// the images of build steps kept for later builds, the RUN
// --mount=type=cache directories and the digests of context files read
// before, and then deletes the content nothing else keeps. It waits for
// the builds running in any program on the root. It returns the bytes
// freed. A build's progress callback must not call it: it would wait for
// that build.
func (r *Runtime) PruneBuildCache(ctx context.Context) (int64, error) {
	if err := r.checkOpen(); err != nil {
		return 0, err
	}
	unlockBuilds, err := r.store.Lock(ctx, buildsLock, true)
	if err != nil {
		return 0, err
	}
	defer unlockBuilds()
	unlock, err := r.store.Lock(ctx, "gc", true)
	if err != nil {
		return 0, err
	}
	defer unlock()
	var freed int64
	for _, dir := range []string{"build", "mounts", "file-digests"} {
		dir = filepath.Join(r.root, "cache", dir)
		freed += dirSize(dir)
		if err := os.RemoveAll(dir); err != nil {
			return 0, err
		}
	}
	roots, err := r.store.Roots()
	if err != nil {
		return 0, err
	}
	err = r.store.UpdateRefs(ctx, func(refs map[string]string) error {
		for k := range refs {
			if strings.HasPrefix(k, intermediatePrefix) { // an older root's build steps
				delete(refs, k)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, d := range roots {
		if err := r.store.RemoveRoot(d); err != nil {
			return 0, err
		}
	}
	rep, err := r.collect(ctx)
	return freed + rep.SpaceReclaimed, err
}

// buildsLock is held shared by every Build for its length, and exclusively
// by PruneBuildCache and PruneImages: a build between two steps holds no
// other lock, and the image it builds on (a cache entry it just read, a
// base image) must not go.
const buildsLock = "builds"
