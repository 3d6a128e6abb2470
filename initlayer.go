package berth

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

// initLayer returns the init layer of the image whose layers are chainIDs
// (bottom first), making it if it is not there yet, or "" when it cannot
// be had; a container then makes its mount points in its own upper
// directory, as before there were init layers.
//
// The layer lives in the topmost layer's snapshot directory, as init/ next
// to fs/: it depends on nothing but the layers below it, every image with
// that top layer shares it, and it goes when the snapshot goes. It is made
// in the snapshots' temp space and renamed into place, so a program killed
// halfway leaves no half layer (its temp directory is swept by the next
// New), and of two programs making it at once the second rename fails and
// that program uses the first's.
func (r *Runtime) initLayer(ctx context.Context, chainIDs []string) string {
	if len(chainIDs) == 0 {
		return ""
	}
	if init := r.existingInitLayer(chainIDs); init != "" {
		return init
	}
	top, err := r.snaps.Dir(chainIDs[len(chainIDs)-1])
	if err != nil {
		return ""
	}
	final := filepath.Join(top, "init")
	// Shared: an image removal (which takes the lock exclusively) waits.
	unlock, err := r.store.Lock(ctx, "snap-"+filepath.Base(top), false)
	if err != nil {
		return ""
	}
	defer unlock()
	tmp, release, err := r.snaps.TempDir()
	if err != nil {
		return ""
	}
	defer release()
	var lower []string
	for i := len(chainIDs) - 1; i >= 0; i-- {
		fs, err := r.snaps.FS(chainIDs[i])
		if err != nil {
			return ""
		}
		lower = append(lower, fs)
	}
	upper, work, mnt := filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "mnt")
	for _, d := range []string{upper, work, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return ""
		}
	}
	// The container's / takes the mode of the topmost layer's root: an
	// image's root is 0755 (see the upper directory's in create).
	if err := os.Chmod(upper, 0o755); err != nil {
		return ""
	}
	if err := initproc.MakeInitLayer(lower, upper, work, mnt); err != nil {
		return ""
	}
	// Never over another program's layer, which containers may be using.
	err = unix.Renameat2(unix.AT_FDCWD, upper, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return ""
	}
	return final
}

// existingInitLayer returns the image's init layer if one was made, else "".
func (r *Runtime) existingInitLayer(chainIDs []string) string {
	if len(chainIDs) == 0 {
		return ""
	}
	top, err := r.snaps.Dir(chainIDs[len(chainIDs)-1])
	if err != nil {
		return ""
	}
	init := filepath.Join(top, "init")
	if _, err := os.Lstat(init); err != nil {
		return ""
	}
	return init
}

// stackInitLayer puts the image's init layer on top of s's lower layers,
// making it if need be, unless it cannot be had or an image so deep that
// one more layer's path would not fit the mount's options: s then mounts
// as before init layers, and the container makes its own mount points.
func (r *Runtime) stackInitLayer(ctx context.Context, chainIDs []string, s *initproc.Spec) {
	init := r.initLayer(ctx, chainIDs)
	if init == "" {
		return
	}
	with := *s
	with.Lower = append([]string{init}, s.Lower...)
	if initproc.OverlayFits(&with) {
		s.Lower = with.Lower
	}
}
