package berth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sys/unix"
)

// containerRecord is a container's state file, containers/<id>/state.json.
// The program or monitor that owns a running container holds its owner
// lock (store's owner-<id>, a byte of locks/objects); a free lock on a
// "running" record means its owner died, which is how New recognises
// leftovers.
type containerRecord struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Created time.Time       `json:"created"`
	Config  containerConfig `json:"config"`
	State   ContainerState  `json:"state"`
	// PidStart is the start time (clock ticks since boot) of State.Pid,
	// from /proc/PID/stat: a pid matches the container only if its start
	// time does, so a recycled pid is never signalled.
	PidStart uint64 `json:"pidStart,omitempty"`
	// Creator and CreatorStart name the program that wrote the record (its
	// pid and start time, as for PidStart). A container still "created"
	// once its creator is gone was never started and never will be: see
	// settleCreated.
	Creator      int    `json:"creator,omitempty"`
	CreatorStart uint64 `json:"creatorStart,omitempty"`
	// Starts counts the launches that got the container's process running:
	// 1 after Run, one more per Start.
	Starts int `json:"starts,omitempty"`
	// Made is set on a container Create made: the user keeps it, and its
	// owner's death leaves it exited, never removed, from its first run on.
	Made bool `json:"made,omitempty"`
	// RestartCount counts the restarts by the container's restart policy
	// since its user last started it (docker's RestartCount).
	RestartCount int `json:"restartCount,omitempty"`
	// StopRequested is set when its user ended the container (see
	// endByUser): its restart policy leaves it exited. A Start clears it.
	StopRequested bool `json:"stopRequested,omitempty"`
}

// removedWithOwner reports whether the death of the program that owns the
// container (or was starting it) removes it rather than leaving it
// exited: an auto-removed one, and an attached one on its first run from
// Run. One the user kept (made by Create, or started again after an exit)
// is left exited.
func (rec *containerRecord) removedWithOwner() bool {
	if rec.Config.AutoRemove {
		return true
	}
	if rec.Config.Detached || rec.Made {
		return false
	}
	if rec.State.Status == statusCreated {
		return rec.Starts == 0 // Run's first start; later, a start again
	}
	return rec.Starts <= 1
}

const (
	statusCreated = "created"
	statusRunning = "running"
	statusPaused  = "paused"
	// statusRestarting is never recorded: the record says "exited" or
	// "created", with State.Restarting (see shownState).
	statusRestarting = "restarting"
	statusExited     = "exited"
	statusDead       = "dead"
)

func (r *Runtime) containersDir() string { return filepath.Join(r.root, "containers") }

func (r *Runtime) containerDir(id string) string { return filepath.Join(r.root, "containers", id) }

// rootTag names this root in host-wide namespaces (cgroups, the monitor's
// socket), so that roots never touch each other's containers.
func rootTag(root string) string {
	sum := sha256.Sum256([]byte(root))
	return hex.EncodeToString(sum[:6])
}

func (r *Runtime) cgroupPath(id string) string { return "/berth/" + rootTag(r.root) + "/" + id }

func newContainerID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validContainerID reports whether id has the form newContainerID gives:
// 64 lowercase hexadecimal digits.
func validContainerID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, c := range []byte(id) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readRecord reads a container's state file.
func (r *Runtime) readRecord(id string) (*containerRecord, error) {
	b, err := os.ReadFile(filepath.Join(r.containerDir(id), recordName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w", shortID(id), ErrNotFound)
		}
		return nil, err
	}
	var rec containerRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("container %s: %w: %w", shortID(id), errUnreadableRecord, err)
	}
	return &rec, nil
}

// errUnreadableRecord is readRecord's error for a state file that does not
// parse.
var errUnreadableRecord = errors.New("state file unreadable")

// recordName is a container's state file in its directory; recordSpares
// are the files beside it that hold older records to write the next one
// into (writeSwapped). A spare directory keeps both.
const recordName = "state.json"

var recordSpares = []string{"state.next", "state.old"}

// writeRecord writes a container's state file without making or freeing
// an inode where it can (writeSwapped). Records are not fsynced: a
// container does not survive a host crash, and the exchange that puts
// one in place is atomic against readers and killed writers; a record a
// host crash left unreadable has its container removed by the next sweep
// (removeUnreadable). Before, each write made a file and freed the one it
// replaced: three of each per detached start.
func (r *Runtime) writeRecord(rec *containerRecord) error {
	dir := r.containerDir(rec.ID)
	return writeJSONSwapped(filepath.Join(dir, recordName), keptIn(dir, recordSpares), rec)
}

// updateRecord applies fn to the state file under the container's lock.
func (r *Runtime) updateRecord(ctx context.Context, id string, fn func(*containerRecord) error) (*containerRecord, error) {
	unlock, err := r.store.Lock(ctx, "ctr-"+id, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, err := r.readRecord(id)
	if err != nil {
		return nil, err
	}
	if err := fn(rec); err != nil {
		return nil, err
	}
	return rec, r.writeRecord(rec)
}

// nameFile is the file in a container's directory that names/<name> is a
// hard link to while the container holds the name.
const nameFile = "name"

// claimName reserves a container name, failing with ErrExists when taken.
// The container's directory must exist. names/<name> holds the
// container's ID; it is a hard link to the directory's name file, written
// first, so that a start from a spare directory, which keeps that file,
// makes no inode for it (spare.go), and the link fails when the name is
// taken.
func (r *Runtime) claimName(name, id string) error {
	if !validContainerName(name) {
		return fmt.Errorf("%w: container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", ErrInvalid, name)
	}
	dir := filepath.Join(r.root, "names")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kept := filepath.Join(r.containerDir(id), nameFile)
	fd, err := unix.Open(kept, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "open", Path: kept, Err: err}
	}
	err = fillFile(fd, []byte(id))
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("writing %s: %w", kept, err)
	}
	link := filepath.Join(dir, name)
	err = os.Link(kept, link)
	if errors.Is(err, fs.ErrExist) {
		owner, _ := os.ReadFile(link)
		if r.containerGone(string(owner)) {
			// A removed container's: its removal lost a race with a
			// Rename, or its program died between the two. Taken over
			// under a lock, the owner read again: two programs taking it
			// at once would each remove the other's link.
			if unlock, lerr := r.store.Lock(context.Background(), "names", true); lerr == nil {
				if now, _ := os.ReadFile(link); string(now) == string(owner) {
					os.Remove(link)
				}
				err = os.Link(kept, link)
				unlock()
			}
		}
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("container name %q is already in use by container %s: %w", name, shortID(string(owner)), ErrExists)
		}
	}
	return err
}

func (r *Runtime) releaseName(name, id string) {
	if name != "" && r.nameHeldBy(name, id) {
		os.Remove(filepath.Join(r.root, "names", name))
	}
}

// heldName is the name container id holds: name, or the one its record
// has now (a Rename since the caller read name changed it); "" for none.
func (r *Runtime) heldName(name, id string) string {
	if name != "" && r.nameHeldBy(name, id) {
		return name
	}
	if rec, err := r.readRecord(id); err == nil && rec.Name != name && r.nameHeldBy(rec.Name, id) {
		return rec.Name
	}
	return ""
}

// containerGone reports that container id has no directory, in place or
// being removed (removeDir's tmp/ names): a container's directory exists
// before it claims a name, and its removal releases the name after moving
// the directory to tmp/.
func (r *Runtime) containerGone(id string) bool {
	if !validContainerID(id) {
		return false
	}
	for _, p := range []string{r.containerDir(id), filepath.Join(r.root, "tmp", "rm-"+id), filepath.Join(r.root, "tmp", store.LeftPrefix+id)} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	return true
}

// nameHeldBy reports whether container id holds the name.
func (r *Runtime) nameHeldBy(name, id string) bool {
	owner, err := os.ReadFile(filepath.Join(r.root, "names", name))
	return err == nil && string(owner) == id
}

func validContainerName(name string) bool {
	name = strings.TrimPrefix(name, "/")
	if name == "" || len(name) > 253 {
		return false
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '_' && c != '.' && c != '-')) {
			return false
		}
	}
	return true
}

var nameLeft = []string{"brave", "calm", "eager", "fond", "keen", "bold", "quiet", "swift", "tidy", "wise", "jolly", "lucid", "merry", "nimble", "proud", "sunny"}
var nameRight = []string{"albatross", "beacon", "cutter", "dinghy", "ferry", "galley", "harbor", "jetty", "keel", "lighthouse", "mooring", "pilot", "quay", "rudder", "schooner", "wharf"}

func generatedName(id string) string {
	b, _ := hex.DecodeString(id[:4])
	return nameLeft[b[0]%16] + "_" + nameRight[b[1]%16] + "_" + id[4:8]
}

// procStartTime returns a process's start time in clock ticks since boot,
// or 0 if it does not exist.
func procStartTime(pid int) uint64 {
	start, _, _, _ := procStat(pid)
	return start
}

// procStat reads a process's start time (0 if it does not exist), state
// and flags from /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, flags uint64, ppid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, 0
	}
	// The command name may contain spaces and parentheses: fields count
	// from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0, 0, 0, 0
	}
	start, _ = strconv.ParseUint(fields[19], 10, 64)
	flags, _ = strconv.ParseUint(fields[6], 10, 64)
	ppid, _ = strconv.Atoi(fields[1])
	return start, fields[0][0], flags, ppid
}

// selfStart is this process's start time, for the records it creates.
var selfStart = sync.OnceValue(func() uint64 { return procStartTime(os.Getpid()) })

// creatorGone reports whether the container is still "created" although
// the program that created it has exited. Records from a berth that did
// not name their creator are never taken for abandoned. Pids are compared
// in this process's pid namespace: the programs sharing a root are taken to
// share one (in another, a live creator would look gone), as the records'
// container pids are.
func (rec *containerRecord) creatorGone() bool {
	return rec.State.Status == statusCreated && rec.Creator > 0 && rec.CreatorStart != 0 && !rec.creatorLives()
}

// shownState is the container's state as users see it: "restarting"
// while its policy restarts it (the record says "exited", then "created"
// while the monitor starts it again).
func (rec *containerRecord) shownState() ContainerState {
	st := rec.State
	if st.Restarting {
		st.Status = statusRestarting
	}
	return st
}

// creatorLives reports whether the program the record names as its
// creator (or starter) still runs.
func (rec *containerRecord) creatorLives() bool {
	return rec.Creator > 0 && procRuns(rec.Creator, rec.CreatorStart)
}

// neverStarted reports a container Create made that no start has been
// asked of yet.
func (rec *containerRecord) neverStarted() bool {
	return rec.State.Status == statusCreated && rec.Made && rec.Creator == 0
}

// starting reports whether the container is being started: "created",
// with a starter (Run or Start) that lives. One Create made has none.
func (rec *containerRecord) starting() bool {
	return rec.State.Status == statusCreated && rec.Creator > 0 && !rec.creatorGone()
}

// processGone reports a record that says running while its process has
// ended: with its owner lock free, the owner died before recording the
// exit, and the container is dead.
func (rec *containerRecord) processGone() bool { return rec.State.Running && !rec.alive() }

// alive reports whether the record's process still runs.
func (rec *containerRecord) alive() bool {
	return rec.State.Pid > 0 && procRuns(rec.State.Pid, rec.PidStart)
}

// buildStep reports a build's RUN container (withBuildKitGroups marks
// them): the build's, never listed, pruned or counted as the user's.
func (rec *containerRecord) buildStep() bool { return rec.Config.BuildKitGroups }

// prunable reports a container PruneContainers removes: created, exited or
// dead, and not a build's.
func (rec *containerRecord) prunable() bool {
	s := rec.shownState().Status
	return (s == statusCreated || s == statusExited || s == statusDead) && !rec.buildStep()
}

// pinFirstProcess opens a pidfd of the run's first process, which pins it:
// ok is false (and nothing is open) when the process is gone, or its pid
// now names another process. The caller closes the fd.
func (rec *containerRecord) pinFirstProcess() (fd int, ok bool) {
	fd, err := unix.PidfdOpen(rec.State.Pid, 0)
	if err != nil {
		return -1, false
	}
	if procStartTime(rec.State.Pid) != rec.PidStart {
		unix.Close(fd)
		return -1, false
	}
	return fd, true
}

// procRuns reports whether process pid, started at start (clock ticks
// since boot: a recycled pid does not match), still runs. A zombie does
// not: it ended, and waits only to be reaped, which for one whose parent
// died is the host's init's work, and takes it a while on some hosts.
func procRuns(pid int, start uint64) bool {
	if start == 0 {
		return false // nothing to compare with: no /proc read
	}
	now, state, _, _ := procStat(pid)
	return now == start && state != 'Z' && state != 'X'
}
