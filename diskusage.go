package berth

import (
	"context"
	"fmt"
	"path/filepath"
)

// DiskUsage is what a root's objects take on disk (docker system df).
// Sizes are bytes; Reclaimable is what the matching prune would free.
type DiskUsage struct {
	// Images counts the images listed (Images), ImagesActive those a
	// container uses. ImagesSize is their layers' unpacked size, a layer
	// shared by several counted once; ImagesReclaimable the part no
	// container's image has (PruneImages with WithPruneAllImages).
	Images, ImagesActive          int
	ImagesSize, ImagesReclaimable int64
	// Containers counts every container, ContainersRunning the running
	// ones; ContainersSize is their writable layers' size,
	// ContainersReclaimable the stopped ones' (PruneContainers).
	Containers, ContainersRunning         int
	ContainersSize, ContainersReclaimable int64
	// Volumes counts the volumes, VolumesActive those a container
	// mounts; VolumesReclaimable is the unused ones' size.
	Volumes, VolumesActive          int
	VolumesSize, VolumesReclaimable int64
	// BuildCache counts the build steps kept for later builds;
	// BuildCacheSize is what only they keep (layers no listed image has)
	// and the RUN --mount=type=cache directories, all reclaimable
	// (PruneBuildCache).
	BuildCache     int
	BuildCacheSize int64
}

// writableSize is the bytes of container id's writable layer.
func (r *Runtime) writableSize(id string) int64 {
	return dirSize(filepath.Join(r.containerDir(id), "upper"))
}

// Size returns the bytes of the files the container added or changed, its
// writable layer (docker's SizeRw, ps -s), a file with several names
// counted once. It walks the layer, so it takes time in proportion to the
// files there; ctx ends it.
func (c *Container) Size(ctx context.Context) (int64, error) {
	if err := c.rt.checkOpen(); err != nil {
		return 0, err
	}
	if _, err := c.rt.readRecord(c.ID); err != nil { // it exists: no lock, no settling
		return 0, err
	}
	n, err := walkSize(ctx, filepath.Join(c.rt.containerDir(c.ID), "upper"), true)
	if err != nil {
		return 0, fmt.Errorf("sizing %s: %w", c.Name, err)
	}
	return n, nil
}

// DiskUsage measures what the root's images, containers, volumes and
// build cache take (docker system df). It walks the containers' writable
// layers and the volumes, so it takes time in proportion to their files.
func (r *Runtime) DiskUsage(ctx context.Context) (DiskUsage, error) {
	var du DiskUsage
	if err := r.checkOpen(); err != nil {
		return du, err
	}
	recs := r.containerRecords()
	usedImages, usedVolumes := map[string]bool{}, map[string]bool{}
	for _, rec := range recs {
		for _, m := range rec.Config.Mounts {
			if m.Type == MountVolume {
				usedVolumes[m.Source] = true // by any container, a build's step too
			}
		}
		if rec.buildStep() {
			continue
		}
		usedImages[rec.Config.ImageDigest] = true
		du.Containers++
		size := r.writableSize(rec.ID)
		du.ContainersSize += size
		if rec.alive() {
			du.ContainersRunning++
		}
		if rec.prunable() {
			du.ContainersReclaimable += size
		}
	}

	imgs, err := r.Images(ctx)
	if err != nil {
		return du, err
	}
	listed, active := map[string]int64{}, map[string]bool{} // chain ID → size
	for _, img := range imgs {
		du.Images++
		if usedImages[img.Digest] {
			du.ImagesActive++
		}
		for _, l := range img.Layers {
			listed[l.ChainID] = l.size()
			if usedImages[img.Digest] {
				active[l.ChainID] = true
			}
		}
	}
	for chain, size := range listed {
		du.ImagesSize += size
		if !active[chain] {
			du.ImagesReclaimable += size
		}
	}

	roots, err := r.store.Roots()
	if err != nil {
		return du, err
	}
	cached := map[string]int64{}
	for _, d := range roots {
		img, err := r.imageFromStore(d, nil)
		if err != nil {
			continue // collected meanwhile
		}
		du.BuildCache++
		for _, l := range img.Layers {
			if _, ok := listed[l.ChainID]; !ok {
				cached[l.ChainID] = l.size()
			}
		}
	}
	for _, size := range cached {
		du.BuildCacheSize += size
	}
	du.BuildCacheSize += dirSize(filepath.Join(r.root, "cache", "mounts"))

	vols, err := r.Volumes(ctx)
	if err != nil {
		return du, err
	}
	for _, v := range vols {
		du.Volumes++
		size := dirSize(v.Mountpoint)
		du.VolumesSize += size
		if usedVolumes[v.Name] {
			du.VolumesActive++
		} else {
			du.VolumesReclaimable += size
		}
	}
	return du, nil
}
