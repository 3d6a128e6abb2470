package berth

import (
	"context"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/initproc"
)

// MountType is the kind of a Mount, as docker run --mount type= names it.
type MountType string

// The mount types berth supports.
const (
	// MountBind binds a host file or directory (docker run -v /host:/ctr).
	MountBind MountType = "bind"
	// MountVolume mounts a volume of the root, named or anonymous (docker
	// run -v name:/ctr).
	MountVolume MountType = "volume"
	// MountTmpfs mounts a fresh tmpfs, gone with the container (docker run
	// --tmpfs).
	MountTmpfs MountType = "tmpfs"
)

// Mount is a filesystem mounted into a container (docker run --mount). Only
// the fields of its Type apply.
//
// Every mount is made inside the container's own mount namespace and never
// appears in the host's mount table. Target, and every directory on the
// way to it, is resolved inside the container's root: a symlink in the
// image, or one another container swaps in while the mount is made, can
// lead nowhere outside it.
type Mount struct {
	// Type is MountBind, MountVolume or MountTmpfs. Required.
	Type MountType
	// Source is the host path for a bind (absolute, and it must exist), the
	// volume's name for a volume (created on first use; empty makes an
	// anonymous volume, removed with the container under WithAutoRemove or
	// WithRemoveVolumes). Unused for tmpfs.
	Source string
	// Target is the absolute path in the container, created if missing.
	// Required.
	Target string
	// ReadOnly mounts read-only; for a bind it is recursive: every mount
	// under Source is read-only too (docker's readonly, bind-recursive
	// default).
	ReadOnly bool
	// Propagation is a bind's mount propagation in the container's
	// namespace: "rprivate" (the default), "private", "rshared", "shared",
	// "rslave" or "slave". Mounts never propagate to or from the host: the
	// container's namespace is made rprivate before anything is mounted.
	Propagation string
	// NoCopy, for a volume, skips copying the image's content at Target
	// into a volume that is empty (docker's volume-nocopy). Default: the
	// first mount of an empty volume gets that content, with its ownership,
	// modes and times, as docker does.
	NoCopy bool
	// TmpfsSize is a tmpfs's size limit in bytes; 0 means the kernel's
	// default, half of RAM.
	TmpfsSize int64
	// TmpfsMode is the mode of a tmpfs's root; 0 means 01777.
	TmpfsMode os.FileMode
	// TmpfsOptions are further mount options of a tmpfs, as docker run
	// --tmpfs takes them after the path: "exec", "suid" and "dev" lift
	// the noexec, nosuid and nodev every tmpfs is mounted with (as
	// docker's are); "noexec", "nosuid", "nodev" and the atime words
	// ("noatime", "relatime", ...) are mount flags;
	// "uid=N", "gid=N" and "nr_inodes=N" go to tmpfs. ReadOnly, not "ro",
	// makes it read-only.
	TmpfsOptions []string
}

// WithMounts adds bind mounts, volumes and tmpfs mounts to the container
// (docker run --mount, -v, --tmpfs), made in order after the image's
// anonymous volumes. Two mounts on one Target fail Run with ErrInvalid, as
// docker's "duplicate mount point".
func WithMounts(mounts ...Mount) RunOption {
	return runOptionFunc(func(c *runConfig) { c.mounts = append(c.mounts, mounts...) })
}

// WithVolumesFrom mounts the volumes and binds of other containers (running
// or not) at the same targets (docker run --volumes-from). Each is a name or
// ID, optionally followed by ":ro" or ":rw" to force every mount read-only
// or read-write; by default each keeps its mode. An anonymous volume shared
// this way belongs to the container that made it: removing this one never
// removes it.
func WithVolumesFrom(containers ...string) RunOption {
	return runOptionFunc(func(c *runConfig) { c.volumesFrom = append(c.volumesFrom, containers...) })
}

// mountRecord is one mount as a container's state file keeps it.
type mountRecord struct {
	Type        MountType   `json:"type"`
	Source      string      `json:"source,omitempty"` // host path, or volume name
	Target      string      `json:"target"`
	ReadOnly    bool        `json:"readOnly,omitempty"`
	Propagation string      `json:"propagation,omitempty"`
	NoCopy      bool        `json:"noCopy,omitempty"`
	TmpfsSize   int64       `json:"tmpfsSize,omitempty"`
	TmpfsMode   os.FileMode `json:"tmpfsMode,omitempty"`
	// TmpfsOptions are Mount.TmpfsOptions, checked.
	TmpfsOptions []string `json:"tmpfsOptions,omitempty"`
	// Anonymous marks a volume this container created for itself (the
	// image's VOLUME, or a Mount without Source): it goes with the
	// container under auto-remove.
	Anonymous bool `json:"anonymous,omitempty"`
}

// tmpfsFlagWords are the mount flags Mount.TmpfsOptions takes.
var tmpfsFlagWords = map[string]bool{
	"exec": true, "noexec": true, "suid": true, "nosuid": true, "dev": true, "nodev": true,
	"atime": true, "noatime": true, "diratime": true, "nodiratime": true, "relatime": true,
	"norelatime": true, "strictatime": true,
}

// tmpfsOption reports whether Mount.TmpfsOptions takes o: a flag word,
// an owner of the tmpfs's root (a 32-bit id), or a number of inodes
// (with k, m or g).
func tmpfsOption(o string) bool {
	if tmpfsFlagWords[o] {
		return true
	}
	k, v, _ := strings.Cut(o, "=")
	switch k {
	case "uid", "gid":
		_, err := strconv.ParseUint(v, 10, 32)
		return err == nil
	case "nr_inodes":
		return inodeCount.MatchString(v)
	}
	return false
}

// inodeCount is a tmpfs's nr_inodes: a number, with k, m or g.
var inodeCount = regexp.MustCompile(`^[0-9]{1,19}[kmgKMG]?$`)

var propagations = map[string]bool{"": true, "private": true, "rprivate": true, "shared": true, "rshared": true, "slave": true, "rslave": true}

// cleanTarget makes an in-container path absolute and clean; ".." cannot
// climb above "/". The child resolves the result inside the root anyway.
func cleanTarget(p string) string { return path.Clean("/" + p) }

// resolveMounts turns the run options and the image's VOLUMEs into the
// container's mounts, creating named volumes that are missing and the
// anonymous ones. It holds every volume's lock shared until the returned
// release is called (after the container's record is written), so that a
// volume's Remove either sees the container or happens first.
func (r *Runtime) resolveMounts(ctx context.Context, img *Image, o *runConfig) (_ []mountRecord, _ func(), retErr error) {
	var unlocks []func()
	var created []string
	release := func() {
		for _, u := range unlocks {
			u()
		}
		unlocks = nil
	}
	defer func() {
		if retErr != nil {
			release()
			for _, name := range created {
				r.removeVolumeDir(name)
			}
		}
	}()
	var out []mountRecord
	seen := map[string]bool{}
	add := func(m mountRecord) error {
		if seen[m.Target] {
			return fmt.Errorf("%w: duplicate mount point: %s", ErrInvalid, m.Target)
		}
		if o.init && (m.Target == "/dev" || m.Target == initproc.InitPath) {
			return fmt.Errorf("%w: WithInit: the mount at %s would hide the init (%s)", ErrInvalid, m.Target, initproc.InitPath)
		}
		seen[m.Target] = true
		out = append(out, m)
		return nil
	}
	var user []mountRecord
	for _, m := range o.mounts {
		rec, err := checkMount(m)
		if err != nil {
			return nil, nil, err
		}
		user = append(user, rec)
	}
	for _, spec := range o.volumesFrom {
		from, err := r.volumesFrom(ctx, spec)
		if err != nil {
			return nil, nil, err
		}
		user = append(user, from...)
	}
	userTargets := map[string]bool{}
	for _, m := range user {
		userTargets[m.Target] = true
	}
	// The image's VOLUMEs not covered by a user mount become anonymous
	// volumes, in a stable order (the config holds a map).
	var imageVols []string
	for v := range img.Config.Volumes {
		if o.noImageVolumes {
			break
		}
		if t := cleanTarget(v); !userTargets[t] && t != "/" {
			imageVols = append(imageVols, t)
		}
	}
	sort.Strings(imageVols)
	for _, t := range imageVols {
		if seen[t] {
			continue // "/data" and "/data/" in one config
		}
		if err := add(mountRecord{Type: MountVolume, Target: t, Anonymous: true}); err != nil {
			return nil, nil, err
		}
	}
	for _, m := range user {
		if err := add(m); err != nil {
			return nil, nil, err
		}
	}
	// Parents before children, as docker mounts them: a mount on /data
	// given after one on /data/inner would hide it (and be seeded from it).
	slices.SortStableFunc(out, func(a, b mountRecord) int {
		return strings.Count(a.Target, "/") - strings.Count(b.Target, "/")
	})
	for i := range out {
		m := &out[i]
		if m.Type != MountVolume {
			continue
		}
		if m.Source == "" {
			m.Source, m.Anonymous = newContainerID(), true
		}
		unlock, err := r.store.Lock(ctx, volumeLock(m.Source), false)
		if err != nil {
			return nil, nil, err
		}
		unlocks = append(unlocks, unlock)
		made, err := r.ensureVolume(m.Source, m.Anonymous)
		if err != nil {
			return nil, nil, err
		}
		if made {
			created = append(created, m.Source)
		}
	}
	return out, release, nil
}

// checkMount validates a Mount given to WithMounts.
func checkMount(m Mount) (mountRecord, error) {
	rec := mountRecord{Type: m.Type, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, Propagation: m.Propagation, NoCopy: m.NoCopy, TmpfsSize: m.TmpfsSize, TmpfsMode: m.TmpfsMode, TmpfsOptions: m.TmpfsOptions}
	if !path.IsAbs(m.Target) {
		return rec, fmt.Errorf("%w: mount target %q is not an absolute path", ErrInvalid, m.Target)
	}
	rec.Target = cleanTarget(m.Target)
	if rec.Target == "/" {
		return rec, fmt.Errorf("%w: mount target %q: cannot mount over the container's root", ErrInvalid, m.Target)
	}
	if m.Propagation != "" && m.Type != MountBind {
		return rec, fmt.Errorf("%w: mount on %s: propagation applies to bind mounts only", ErrInvalid, m.Target)
	}
	if !propagations[m.Propagation] {
		return rec, fmt.Errorf("%w: mount on %s: unknown propagation %q", ErrInvalid, m.Target, m.Propagation)
	}
	if (m.TmpfsSize != 0 || m.TmpfsMode != 0 || len(m.TmpfsOptions) > 0) && m.Type != MountTmpfs {
		return rec, fmt.Errorf("%w: mount on %s: tmpfs options on a %s mount", ErrInvalid, m.Target, m.Type)
	}
	switch m.Type {
	case MountBind:
		if !path.IsAbs(m.Source) {
			return rec, fmt.Errorf("%w: bind source %q is not an absolute path", ErrInvalid, m.Source)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return rec, fmt.Errorf("%w: bind source path does not exist: %s", ErrInvalid, m.Source)
		}
	case MountVolume:
		if m.Source != "" && !validVolumeName(m.Source) {
			return rec, fmt.Errorf("%w: volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", ErrInvalid, m.Source)
		}
	case MountTmpfs:
		if m.Source != "" {
			return rec, fmt.Errorf("%w: tmpfs mount on %s takes no source", ErrInvalid, m.Target)
		}
		if m.TmpfsSize < 0 || m.TmpfsMode&^(os.ModePerm|os.ModeSticky|os.ModeSetuid|os.ModeSetgid) != 0 {
			return rec, fmt.Errorf("%w: tmpfs on %s: bad size or mode", ErrInvalid, m.Target)
		}
		for _, o := range m.TmpfsOptions {
			if !tmpfsOption(o) {
				return rec, fmt.Errorf("%w: tmpfs on %s: unsupported option %q (want exec, suid, dev, their no- forms, an atime word, uid=N, gid=N or nr_inodes=N; size and mode are TmpfsSize and TmpfsMode, ro is ReadOnly)", ErrInvalid, m.Target, o)
			}
		}
	default:
		return rec, fmt.Errorf("%w: mount type %q (want bind, volume or tmpfs)", ErrInvalid, m.Type)
	}
	return rec, nil
}

// volumesFrom reads the mounts of the container spec names ("NAME[:ro|rw]").
func (r *Runtime) volumesFrom(ctx context.Context, spec string) ([]mountRecord, error) {
	name, mode, _ := strings.Cut(spec, ":")
	if mode != "" && mode != "ro" && mode != "rw" {
		return nil, fmt.Errorf("%w: --volumes-from %q: mode must be ro or rw", ErrInvalid, spec)
	}
	c, err := r.Container(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("volumes from %s: %w", name, err)
	}
	rec, err := r.readRecord(c.ID)
	if err != nil {
		return nil, fmt.Errorf("volumes from %s: %w", name, err)
	}
	var out []mountRecord
	for _, m := range rec.Config.Mounts {
		if m.Type == MountTmpfs {
			continue // docker shares volumes and binds, not tmpfs
		}
		m.Anonymous = false
		switch mode {
		case "ro":
			m.ReadOnly = true
		case "rw":
			m.ReadOnly = false
		}
		out = append(out, m)
	}
	return out, nil
}

// mountSpecs turns a container's mounts into the child stage's.
func (r *Runtime) mountSpecs(mounts []mountRecord) []initproc.Mount {
	var out []initproc.Mount
	for _, m := range mounts {
		opts := []string{"rbind"} // binds and volumes, as docker mounts them
		if m.Type == MountTmpfs {
			opts = []string{"nosuid", "nodev", "noexec"}
		}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		switch m.Type {
		case MountBind:
			if m.Propagation != "" {
				opts = append(opts, m.Propagation)
			}
			out = append(out, initproc.Mount{Type: "bind", Source: m.Source, Destination: m.Target, Options: opts})
		case MountVolume:
			out = append(out, initproc.Mount{
				Type: "bind", Source: r.volumeData(m.Source), Destination: m.Target, Options: opts,
				Seed: !m.NoCopy, SeedLock: r.volumeSeedLock(m.Source),
			})
		case MountTmpfs:
			data := []string{"mode=1777"}
			if m.TmpfsMode != 0 {
				data[0] = "mode=" + strconv.FormatUint(uint64(unixMode(m.TmpfsMode)), 8)
			}
			if m.TmpfsSize > 0 {
				data = append(data, "size="+strconv.FormatInt(m.TmpfsSize, 10))
			}
			for _, o := range m.TmpfsOptions {
				if tmpfsFlagWords[o] {
					opts = append(opts, o) // after the defaults, which "exec" and the others lift
				} else {
					data = append(data, o)
				}
			}
			out = append(out, initproc.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Target, Options: opts, Data: strings.Join(data, ",")})
		}
	}
	return out
}

// unixMode converts an os.FileMode's permission and special bits to the
// kernel's.
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// removeAnonymousVolumes deletes the anonymous volumes a container made,
// unless another container still uses one (through WithVolumesFrom).
func (r *Runtime) removeAnonymousVolumes(mounts []mountRecord) {
	for _, m := range mounts {
		if m.Type == MountVolume && m.Anonymous {
			// In use by another container, or failing: PruneVolumes gets
			// it later.
			r.removeVolume(context.Background(), m.Source, false)
		}
	}
}

// mountsOf converts records to the public form.
func mountsOf(recs []mountRecord) []Mount {
	var out []Mount
	for _, m := range recs {
		out = append(out, Mount{Type: m.Type, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, Propagation: m.Propagation, NoCopy: m.NoCopy, TmpfsSize: m.TmpfsSize, TmpfsMode: m.TmpfsMode, TmpfsOptions: m.TmpfsOptions})
	}
	return out
}
