package berth

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/seccomp"
	"github.com/berth-dev/berth/internal/store"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// seccompFilter returns docker's default profile, or profile (docker's
// JSON form) when set, compiled for a capability set, once per set,
// profile and Runtime.
func (r *Runtime) seccompFilter(capNames []string, profile string) ([]unix.SockFilter, error) {
	key := strings.Join(capNames, ",")
	if profile != "" {
		key += "\x00" + profile
	}
	if f, ok := r.filters.Load(key); ok {
		return f.([]unix.SockFilter), nil
	}
	f, err := r.compiledProfile(capNames, profile)
	if err != nil {
		return nil, err
	}
	r.filters.Store(key, []unix.SockFilter(f))
	return f, nil
}

// compiledProfile compiles docker's default profile, or profile, for a
// capability set,
// or reads what an earlier program on the root compiled: compiling costs
// 1.5-3 ms in a fresh process here (every CLI command is one), reading the
// program back about 0.1 ms. The file is named by seccomp.Key, a hash of
// the expanded profile (which the kernel version and the capabilities
// shape), the syscall tables and the compiler's revision. It is used only
// if root owns it and its directory and no one else may write them (a
// program from anywhere else is a hole in every container), and only if
// it decodes for its key; otherwise the profile is compiled and the file
// replaced.
func (r *Runtime) compiledProfile(capNames []string, profile string) (seccomp.Filter, error) {
	var p *specs.LinuxSeccomp
	var err error
	if profile != "" {
		p, err = seccomp.LoadProfile([]byte(profile), capNames)
	} else {
		p, err = seccomp.DefaultProfile(capNames)
	}
	if err != nil {
		return nil, err
	}
	key, err := seccomp.Key(p)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(r.root, "cache", "seccomp", key)
	if b, err := readTrusted(path); err == nil {
		if f, err := seccomp.Decode(b, key); err == nil {
			return f, nil
		}
	}
	f, err := seccomp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("compiling the seccomp profile: %w", err)
	}
	store.WriteCacheFile(path, f.Encode(key), 0o600) // else compiled again next time
	return f, nil
}

// readTrusted reads the regular file at path if this process's user owns
// it and its directory and neither is writable by group or others; it does
// not follow a symlink at path.
func readTrusted(path string) ([]byte, error) {
	var dir unix.Stat_t
	if err := unix.Lstat(filepath.Dir(path), &dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	euid := uint32(os.Geteuid())
	for _, s := range []unix.Stat_t{dir, st} {
		if s.Uid != euid || s.Mode&0o022 != 0 {
			return nil, fmt.Errorf("%s: owned by uid %d, mode %o: not trusted", path, s.Uid, s.Mode&0o7777)
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return io.ReadAll(f)
}
