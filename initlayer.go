package berth

import (
	"context"

	"github.com/berth-dev/berth/internal/initproc"
)

// stackInitLayer puts the init layer of the image whose layers are
// chainIDs (bottom first) and s.Lower (topmost first) on top of s's lower
// layers, making it if need be (snapshot.Init, initproc.MakeInitLayer):
// the mount points every container of the image needs, made once. Where
// it cannot be had, or in an image so deep that one more layer's path
// would not fit the mount's options, s mounts as before init layers and
// the container makes its own mount points.
func (r *Runtime) stackInitLayer(ctx context.Context, chainIDs []string, s *initproc.Spec) {
	if len(chainIDs) == 0 {
		return
	}
	init, err := r.snaps.Init(ctx, chainIDs[len(chainIDs)-1], func(upper, work, mnt string) error {
		return initproc.MakeInitLayer(s.Lower, upper, work, mnt)
	})
	if err != nil {
		return
	}
	with := *s
	with.Lower = append([]string{init}, s.Lower...)
	if initproc.OverlayFits(&with) {
		s.Lower = with.Lower
	}
}
