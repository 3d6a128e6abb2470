package berth

import (
	"os"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/cgroup"
)

// sweepContainers cleans what dead programs left: an attached container
// whose program died is removed with its cgroup; a detached one whose
// monitor died and whose process is gone is marked exited with an unknown
// status; cgroups of this root with no container are killed and deleted.
// Containers whose owner lives are not touched: the owner's flock says so.
func (r *Runtime) sweepContainers() {
	prefix := "/berth/" + rootTag(r.root)
	temporary := make(chan struct{})
	go func() {
		defer close(temporary)
		cgroup.SweepTemporary(prefix)
	}()
	entries, _ := os.ReadDir(r.containersDir())
	known := map[string]bool{}
	for _, e := range entries {
		id := e.Name()
		known[id] = true
		// The record first: the owner lock of a container that is not
		// running must not be taken (another program may be starting it,
		// and takes it without waiting) nor its file made again (a
		// removal may just have deleted it).
		rec, err := r.readRecord(id)
		if err != nil || !rec.State.Running {
			continue
		}
		unlock, ok := r.store.TryLock("owner-"+id, true)
		if !ok {
			continue
		}
		func() {
			defer unlock()
			if rec.alive() && rec.Config.Detached {
				return // still running, unowned: Wait and Stop work through its pid
			}
			if cg, err := cgroup.Load(r.cgroupPath(id)); err == nil {
				cg.Kill()
				cg.Delete()
			}
			if !rec.Config.Detached || rec.Config.AutoRemove {
				r.removeContainerFiles(id, rec.Name)
				return
			}
			rec.State.Status, rec.State.Running, rec.State.Pid = statusExited, false, 0
			rec.State.ExitCode = 255
			rec.State.Error = "the process that owned the container died; its exit status is unknown"
			rec.State.FinishedAt = time.Now().UTC()
			r.writeRecord(rec)
		}()
	}
	<-temporary
	cgs, _ := cgroup.List(prefix)
	for _, p := range cgs {
		id := p[strings.LastIndex(p, "/")+1:]
		if known[id] {
			continue
		}
		// A container created since the listing above has its directory
		// before its cgroup: its cgroup is not an orphan, and may hold a
		// thread of the program starting it.
		if _, err := os.Lstat(r.containerDir(id)); err == nil {
			continue
		}
		if cg, err := cgroup.Load(p); err == nil {
			cg.Kill()
			cg.Delete()
		}
	}
}
