package berth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/cgroup"
	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sys/unix"
)

// sweepContainers cleans what dead programs left: an attached container
// whose program died is removed with its cgroup (one started again since
// its first run, which the user kept, is marked exited instead); a
// detached one whose
// monitor died and whose process is gone is marked exited with an unknown
// status; cgroups of this root with no container are killed and deleted.
// Containers whose owner lives are not touched: its owner lock says so.
//
// A detached container whose restart policy had it running, or waiting
// out a back-off or restarting it, when its monitor died (the monitor
// killed, the host rebooted) is started again, as docker's daemon starts
// such containers when it starts: the policy decides on the exit code 255
// it is then marked with (on-failure restarts it), and its restart count
// starts again from 0. The sweep claims the restart in the record (see
// claimRestart), taking the owner lock of such an exited container too,
// and returns the claims, which restartClaimed carries out.
func (r *Runtime) sweepContainers() (claimed []pendingRestart) {
	entries, _ := os.ReadDir(r.containersDir())
	// Orphaned cgroups (a removal that could not delete one, a program
	// that died making one) are swept beside the caller's first work:
	// listing every hierarchy costs the CLI ~0.4-0.8 ms, and nothing the
	// caller sees depends on them. A container made meanwhile has its
	// directory before its cgroup, as one made by another program has.
	r.inBackground(func() { r.sweepCgroups(entries) })
	r.takeLeftSpares()
	for _, e := range entries {
		id := e.Name()
		// The record first: the owner lock of a container that is not
		// running must not be taken (another program may be starting it,
		// and takes it without waiting). The exceptions are a container
		// whose creator died before starting it (only a monitor could
		// still start it, and settleCreated leaves it to one that has),
		// and one whose restart its monitor left when it died
		// (claimUnwatched: no one else starts it).
		rec, err := r.readRecord(id)
		if errors.Is(err, errUnreadableRecord) {
			r.removeUnreadable(id)
			continue
		}
		if errors.Is(err, ErrNotFound) {
			// Run claims the name before it writes the record: a program
			// that died between left a directory and a name no one could
			// remove. Given a while, as a Run may wait for volumes there.
			if validContainerID(id) && store.ChangedBefore(r.containerDir(id), time.Now().Add(-unrecordedAge)) {
				r.removeWithoutRecord(id)
			}
			continue
		}
		if err == nil && rec.restartUnwatched() {
			if p, ok := r.claimUnwatched(id); ok {
				claimed = append(claimed, p)
			}
			continue
		}
		if err == nil && rec.creatorGone() {
			r.settleCreated(id, errCreatorGone)
			continue
		}
		if err == nil && rec.Config.AutoRemove && rec.State.Status == statusExited {
			r.sweepExited(rec)
			continue
		}
		if err != nil || !rec.State.Running {
			continue
		}
		sweepLocking(id)
		// Read again under the lock (lockOwner): the owner records the
		// exit and then lets go, so the record read above may predate an
		// exit recorded since. Judged on it, a container killed with 137
		// was marked exited with 255 as its monitor let go
		// (TestSweepAfterRecordedExit; berth wait after kill, 1 in 40 on a
		// loaded machine).
		rec, unlock, err := r.lockOwner(id)
		if err != nil {
			continue
		}
		func() {
			defer unlock()
			if !rec.State.Running {
				return
			}
			if rec.alive() && rec.Config.Detached {
				// Still running, unowned: Wait and Stop work through its
				// pid. No one checks its health any more.
				if h := rec.State.Health; h != nil && h.Status != HealthUnhealthy {
					r.updateRecord(context.Background(), id, func(cur *containerRecord) error {
						cur.State.unwatched()
						return nil
					})
				}
				return
			}
			r.deleteCgroup(id)
			if rec.removedWithOwner() {
				r.removeContainerFiles(id, rec.Name)
				return
			}
			cur, err := r.updateRecord(context.Background(), id, func(cur *containerRecord) error {
				r.containerEvent("die", cur, "exitCode", "255")
				cur.State.Status, cur.State.Running, cur.State.Pid = statusExited, false, 0
				cur.State.ExitCode = 255
				cur.State.Error = "the process that owned the container died; its exit status is unknown"
				cur.State.FinishedAt = time.Now().UTC()
				cur.State.unwatched()
				if cur.Config.Detached && cur.Config.Restart.restartAfter(255, cur.RestartCount, cur.StopRequested) {
					cur.claimRestart()
				}
				return nil
			})
			if err == nil && cur.State.Restarting {
				claimed = append(claimed, pendingRestart{id: id, starts: cur.Starts})
			}
		}()
	}
	return claimed
}

// pendingRestart is a restart by its policy that the sweep claimed:
// container id's, after its run number starts.
type pendingRestart struct {
	id     string
	starts int
}

// restartUnwatched reports a container whose restart policy was
// restarting it (waiting out the back-off, or starting it again) when
// its monitor died.
func (rec *containerRecord) restartUnwatched() bool {
	st := rec.State.Status
	return rec.State.Restarting && (st == statusExited || st == statusCreated) && !rec.creatorLives()
}

// claimRestart, in a record update of an exited container, makes this
// program the one to restart it by its policy, as its monitor was to:
// restarting (restartPending, so that a Stop or a Start calls it off as
// it would the monitor's), its restart count back to 0 as docker's
// daemon sets it when it starts.
func (cur *containerRecord) claimRestart() {
	cur.State.Restarting = true
	cur.RestartCount = 0
	cur.Creator, cur.CreatorStart = os.Getpid(), selfStart()
}

// claimUnwatched claims the restart of container id whose policy lost
// its monitor (restartUnwatched), under its owner lock and once only: of
// two programs sweeping at once, the second finds the first's claim. A
// monitor that died starting it may have left its cgroup.
func (r *Runtime) claimUnwatched(id string) (pendingRestart, bool) {
	rec, unlock, err := r.lockOwner(id)
	if err != nil {
		return pendingRestart{}, false
	}
	defer unlock()
	if !rec.restartUnwatched() {
		return pendingRestart{}, false
	}
	if rec.State.Status == statusCreated {
		r.deleteCgroup(id)
	}
	cur, err := r.updateRecord(context.Background(), id, func(cur *containerRecord) error {
		if !cur.restartUnwatched() {
			return errUnchanged
		}
		cur.State.Status = statusExited
		cur.claimRestart()
		return nil
	})
	if err != nil {
		return pendingRestart{}, false
	}
	return pendingRestart{id: id, starts: cur.Starts}, true
}

// restartClaimed carries out the restarts the sweep claimed. A monitor
// restarts them as its own (it sweeps once it serves the root: see
// monitorMain). A program has the root's monitor start them, in the
// background: Close waits for them. One the program could not carry out
// (it exited first) stays claimed by a program that is gone, which the
// next sweep claims again; one called off meanwhile (Stop, Start,
// Remove) is left as it is.
func (r *Runtime) restartClaimed(ps []pendingRestart) {
	if len(ps) == 0 {
		return
	}
	r.inBackground(func() {
		for _, p := range ps {
			r.restartFromProgram(p)
		}
	})
}

// restartFromProgram has the root's monitor start container p.id again,
// as its policy would have, readied here as the monitor readies a
// restart (prepareRestart). Another program holding the container's owner
// lock (a Commit) is waited for, for as long as the restart stays this
// program's to make. A start the monitor could not make is recorded,
// and the restart given up, as a failed restart by the monitor is.
func (r *Runtime) restartFromProgram(p pendingRestart) {
	for {
		rec, unlock, busy := r.prepareRestart(p.id, p.starts)
		if rec != nil {
			unlock() // the monitor takes it to start the container
			if err := r.startDetached(context.Background(), rec); err != nil {
				r.settleCreated(p.id, "restarting: "+err.Error())
			}
			return
		}
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
		cur, err := r.readRecord(p.id)
		if err != nil || !cur.State.Restarting || cur.Starts != p.starts || cur.Creator != os.Getpid() {
			return
		}
	}
}

// sweepLocking runs in the sweep between its read of container id's record
// and its try of the owner lock (a hook for tests).
var sweepLocking = func(id string) {}

// unrecordedAge is how old a container directory without a record must
// be for the sweep to remove it (a variable for tests).
var unrecordedAge = time.Minute

// sweepExited removes an auto-removed container whose exit is recorded but
// whose owner died before removing it (it lets other programs' Waits read
// the exit first): once neither its owner nor a waiter holds on.
func (r *Runtime) sweepExited(rec *containerRecord) {
	unlock, ok := r.store.TryLock("owner-"+rec.ID, true)
	if !ok {
		return
	}
	defer unlock()
	unlockWait, ok := r.store.TryLock("wait-"+rec.ID, true)
	if !ok {
		return
	}
	defer unlockWait()
	r.removeContainerFiles(rec.ID, rec.Name)
}

// sweepCgroups deletes the root's temporary cgroups left behind and the
// cgroups of containers that no longer have a directory; entries are
// those of containers/ as read before.
func (r *Runtime) sweepCgroups(entries []os.DirEntry) {
	prefix := "/berth/" + rootTag(r.root)
	cgroup.SweepTemporary(prefix)
	known := make(map[string]bool, len(entries))
	for _, e := range entries {
		known[e.Name()] = true
	}
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

// errCreatorGone is the error recorded for a container whose creator exited
// between writing its record and starting it.
const errCreatorGone = "the program that created the container exited before starting it"

// settleCreated ends a container that is still "created" although nothing
// will start it: its creator gave up (cause is why) or is gone. Like a
// failed start, it is recorded as exited with code 128 and cause as its
// error, or removed when it is auto-removed, or attached and never ran
// (as the sweep removes those of a dead owner); a cgroup a dead start left is killed and
// deleted. It does nothing, and reports false, when the container is no
// longer "created" or someone holds its owner lock: a monitor starting it.
// A monitor that takes the lock afterwards finds the container no longer
// created and does not start it. A restart by the container's policy
// whose starter died making it (cause errCreatorGone) stays for the next
// sweep to claim (claimUnwatched); one that failed is given up.
func (r *Runtime) settleCreated(id, cause string) bool {
	rec, unlock, err := r.lockOwner(id)
	if err != nil {
		return false
	}
	defer unlock()
	if rec.State.Status != statusCreated {
		return false
	}
	if rec.removedWithOwner() {
		r.removeContainerFiles(id, rec.Name)
		return true
	}
	r.deleteCgroup(id)
	// Under the record's lock too: a Connect meanwhile is kept.
	_, err = r.updateRecord(context.Background(), id, func(cur *containerRecord) error {
		cur.State.Status, cur.State.ExitCode, cur.State.Error = statusExited, 128, cause
		cur.State.FinishedAt = time.Now().UTC()
		// A restart by its policy whose starter died is the next sweep's
		// to claim (see claimUnwatched), unless it failed.
		cur.State.Restarting = cur.State.Restarting && cause == errCreatorGone
		return nil
	})
	return err == nil
}

// lockCreated takes the owner lock of a container about to be started,
// whose record says "created": a program that holds the lock a moment (one
// that read the record to see whether it could start or settle it) is
// waited for, at most within. It fails with errOwned once the record no
// longer says "created" (another program started or settled it).
func (r *Runtime) lockCreated(id string, within time.Duration) (func(), error) {
	deadline := time.Now().Add(within)
	for {
		if unlock, ok := r.store.TryLock("owner-"+id, true); ok {
			return unlock, nil
		}
		if time.Now().After(deadline) {
			return nil, errOwned
		}
		if cur, err := r.readRecord(id); err != nil || cur.State.Status != statusCreated {
			return nil, errOwned
		}
		time.Sleep(time.Millisecond)
	}
}

// errOwned is lockOwner's error when another holds the owner lock.
var errOwned = errors.New("owned by another program")

// lockOwner takes the owner lock of container id without waiting, then
// reads its record.
func (r *Runtime) lockOwner(id string) (*containerRecord, func(), error) {
	unlock, ok := r.store.TryLock("owner-"+id, true)
	if !ok {
		return nil, nil, errOwned
	}
	rec, err := r.readRecord(id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return rec, unlock, nil
}

// removeUnreadable removes container id, whose record does not parse:
// records are swapped into place whole but not fsynced, so only a host
// crash leaves one so (its data not written back), and no program can use
// the container. Its name is the names/ entry linked to its name file,
// whose content may be as old as the crash.
func (r *Runtime) removeUnreadable(id string) {
	unlock, ok := r.store.TryLock("owner-"+id, true)
	if !ok {
		return
	}
	defer unlock()
	r.removeWithoutRecord(id)
}

// removeWithoutRecord removes container id, whose record cannot be read,
// under its owner lock: its name is the names/ entry linked to its name
// file.
func (r *Runtime) removeWithoutRecord(id string) {
	var own unix.Stat_t
	if unix.Stat(filepath.Join(r.containerDir(id), nameFile), &own) == nil && own.Nlink > 1 {
		names, _ := os.ReadDir(filepath.Join(r.root, "names"))
		for _, e := range names {
			var st unix.Stat_t
			p := filepath.Join(r.root, "names", e.Name())
			if unix.Lstat(p, &st) == nil && st.Ino == own.Ino && st.Dev == own.Dev {
				os.Remove(p)
			}
		}
	}
	r.removeContainerFiles(id, "")
}
