package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// resolveUser turns Spec.User ("name", "uid", "uid:gid", "name:group",
// "uid:group") into numeric ids from the container's own /etc/passwd and
// /etc/group, read in Go after pivot_root, never through NSS: the files are
// the image's, and the host's resolver must never see them. It also sets
// HOME from the passwd entry when the environment has none, as Docker does
// ("/" for a uid with no entry).
func resolveUser(s *Spec) error {
	userPart, groupPart, hasGroup := strings.Cut(s.User, ":")
	passwd := readColonFile("/etc/passwd")
	groups := readColonFile("/etc/group")

	home := "/"
	var name string
	uid, err := parseID(userPart)
	if errors.Is(err, strconv.ErrRange) {
		return &SetupError{Step: "resolve user", Msg: fmt.Sprintf("uid %s out of range 0-%d", userPart, maxID)}
	}
	found := false
	for _, f := range passwd {
		if len(f) < 7 {
			continue
		}
		if (err == nil && f[2] == userPart) || (err != nil && f[0] == userPart) {
			u, e1 := parseID(f[2])
			g, e2 := parseID(f[3])
			if e1 != nil || e2 != nil {
				continue
			}
			uid, name, home, found = u, f[0], f[5], true
			s.GID = uint32(g)
			break
		}
	}
	if !found {
		if err != nil {
			return &SetupError{Step: "resolve user", Path: "/etc/passwd", Msg: fmt.Sprintf("unable to find user %s: no matching entries in passwd file", userPart)}
		}
		s.GID = 0
	}
	s.UID = uint32(uid)

	if hasGroup {
		gid, err := parseID(groupPart)
		if errors.Is(err, strconv.ErrRange) {
			return &SetupError{Step: "resolve user", Msg: fmt.Sprintf("gid %s out of range 0-%d", groupPart, maxID)}
		}
		if err != nil {
			if gid, err = lookupGroup(groups, groupPart); err != nil {
				return err
			}
		}
		s.GID = uint32(gid)
	}
	// Supplementary groups as docker run sets them: the primary group, and
	// for a user given without a group every group listing it by name
	// ("user" and "1000" get their memberships, "1000:1000" and
	// "user:staff" only that group). BuildKit's RUN leaves the primary
	// group out.
	s.AdditionalGIDs = []uint32{s.GID}
	if s.BuildKitGroups {
		s.AdditionalGIDs = []uint32{}
	}
	if name != "" && !hasGroup {
		for _, f := range groups {
			if len(f) < 4 {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == name {
					if g, e := parseID(f[2]); e == nil && uint32(g) != s.GID {
						s.AdditionalGIDs = append(s.AdditionalGIDs, uint32(g))
					}
				}
			}
		}
	}
	for _, g := range s.GroupAdd {
		gid, err := parseID(g)
		if err != nil {
			gid, err = lookupGroup(groups, g)
			if err != nil {
				return err
			}
		}
		if !slices.Contains(s.AdditionalGIDs, uint32(gid)) {
			s.AdditionalGIDs = append(s.AdditionalGIDs, uint32(gid))
		}
	}
	hasHome := false
	for _, kv := range s.Env {
		if strings.HasPrefix(kv, "HOME=") {
			hasHome = true
		}
	}
	if !hasHome {
		s.Env = append(s.Env, "HOME="+home)
	}
	return nil
}

// lookupGroup finds group name's gid in the container's /etc/group.
func lookupGroup(groups [][]string, name string) (uint64, error) {
	for _, f := range groups {
		if len(f) >= 3 && f[0] == name {
			if g, e := parseID(f[2]); e == nil {
				return g, nil
			}
		}
	}
	return 0, &SetupError{Step: "resolve user", Path: "/etc/group", Msg: fmt.Sprintf("unable to find group %s: no matching entries in group file", name)}
}

// maxID is the largest uid or gid a container process may get, as runc
// allows: 4294967295 is -1 to setresuid, "leave unchanged", which kept
// the child stage root.
const maxID = 1<<31 - 1

// parseID parses a decimal uid or gid of at most maxID.
func parseID(s string) (uint64, error) { return strconv.ParseUint(s, 10, 31) }

// readColonFile reads a passwd(5)-style file, bounded in size so that a
// hostile image cannot make the child read without end. A missing file
// reads as empty, and so does one that is not a regular file: a FIFO
// there would block every later start and Exec of the container.
func readColonFile(path string) [][]string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	var out [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for n := 0; sc.Scan() && n < 100000; n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
