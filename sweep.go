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
		// The lock first: a container whose owner lives (every running
		// one but those a dead program left) is skipped without decoding
		// its record, which costs ten times more.
		unlock, ok := r.store.TryLock("owner-"+id, true)
		if !ok {
			continue
		}
		func() {
			defer unlock()
			rec, err := r.readRecord(id)
			if err != nil || !rec.State.Running {
				return
			}
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
		if cg, err := cgroup.Load(p); err == nil {
			cg.Kill()
			cg.Delete()
		}
	}
}
