package initproc

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// ExecDirectSupported reports whether spec can be started directly (see
// Direct), which is what DirectSupported says of a container.
func ExecDirectSupported(spec *ExecSpec) bool {
	return spec.NoNewPrivileges && len(spec.Rlimits) == 0 && helperFD() >= 0
}

// PrepareExec prepares a direct start of spec in the running container
// whose namespaces ns holds: a locked thread joins every one of them, the
// mount namespace included, resolves the user, the command and the
// working directory as the container sees them, and takes a terminal from
// the container's devpts for spec.TTY (Master). ns may be closed once
// PrepareExec returns. The caller places the thread (Tid) in the
// container's v1 cgroups, then calls Start with the process's stdio (for
// a TTY, Start uses the terminal) or Abort. Unless spec.Detached the
// process is killed when the calling program dies.
func PrepareExec(spec *ExecSpec, ns *Namespaces) (*Direct, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	d := &Direct{exec: true}
	s := &d.cfg.Spec
	s.Args, s.Env, s.Dir, s.User, s.TTY, s.Detached = spec.Args, spec.Env, spec.Dir, spec.User, spec.TTY, spec.Detached
	s.GroupAdd = spec.GroupAdd
	if s.User == "" {
		s.User = "0"
	}
	var err error
	if d.cfg.Caps, err = capSet(spec.Capabilities); err != nil {
		return nil, err
	}
	d.cfg.Seccomp = filterBytes(spec.SeccompFilter)
	d.prep = func() error { return d.prepareExec(ns) }
	if err := d.launch(); err != nil {
		d.closeTerminal()
		return nil, err
	}
	return d, nil
}

// Master is the exec's terminal (ExecSpec.TTY), in non-blocking mode; the
// caller owns it once Start succeeded.
func (d *Direct) Master() *os.File { return d.master }

func (d *Direct) closeTerminal() {
	for _, f := range []*os.File{d.master, d.tty} {
		if f != nil {
			f.Close()
		}
	}
}

// prepareExec is the exec stage's setup (runExecStage) up to its
// privilege drop, on this thread.
func (d *Direct) prepareExec(ns *Namespaces) error {
	s := &d.cfg.Spec
	// The mount namespace first, which wants an fs_struct of our own; it
	// puts the thread's root and cwd at the container's root.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return stepError("unshare(CLONE_FS)", "", err)
	}
	mnt, ok := ns.fds["mnt"]
	if !ok {
		return errors.New("initproc: Namespaces are closed")
	}
	if err := unix.Setns(mnt, unix.CLONE_NEWNS); err != nil {
		return stepError("join the container's mount namespace", "", err)
	}
	for _, n := range joinOrder {
		if err := unix.Setns(ns.fds[n.name], n.flag); err != nil {
			return stepError("join the container's "+n.name+" namespace", "", err)
		}
	}
	if err := resolveUser(s); err != nil {
		return err
	}
	if s.TTY {
		if err := d.openTerminal(); err != nil {
			return err
		}
	}
	var err error
	if d.argv0, err = lookPath(s.Args[0], s.Env); err != nil {
		return err
	}
	if err := enterWorkdir(s.Dir); err != nil {
		return err
	}
	return limitCaps(d.cfg.Caps, s.UID)
}

// openTerminal takes a terminal of the container's own devpts instance,
// as docker does, so that tty(1) names a /dev/pts entry the container
// has. The files land in the program's fd table (this thread shares it
// until the fork).
func (d *Direct) openTerminal() error {
	// Not /dev/ptmx, a symlink the container may have changed: its devpts
	// mount's own ptmx, checked to be one.
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepError("open", "/dev/pts/ptmx", err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(master, &fs); err != nil || fs.Type != unix.DEVPTS_SUPER_MAGIC {
		unix.Close(master)
		return &SetupError{Step: "open", Path: "/dev/pts/ptmx", Msg: "not on a devpts filesystem"}
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return stepError("unlock pty", "/dev/pts/ptmx", err)
	}
	// The peer by ioctl, not by a path the container could swap.
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if e != 0 {
		unix.Close(master)
		return stepError("TIOCGPTPEER", "/dev/pts/ptmx", e)
	}
	// The user owns its terminal, as with docker (the group stays tty's,
	// from the devpts mount's gid=5).
	if err := unix.Fchown(int(r), int(d.cfg.Spec.UID), -1); err != nil {
		unix.Close(master)
		unix.Close(int(r))
		return stepError("chown terminal", "", err)
	}
	unix.SetNonblock(master, true)
	d.master = os.NewFile(uintptr(master), "/dev/pts/ptmx")
	d.tty = os.NewFile(r, "pty")
	return nil
}
