// Command berth is a docker-compatible command line over the berth library:
// it pulls, pushes, lists, tags, removes, inspects, saves, loads and
// imports OCI images, runs, lists, logs, stops, kills, waits for and
// removes containers, and manages volumes and networks (published ports,
// names between containers), in a berth state directory, with no daemon.
//
// Usage:
//
//	berth [--root DIR] COMMAND [OPTIONS] [ARG...]
//
// Commands, flags, output formats and exit codes follow the docker CLI so
// that scripts written for docker work unchanged:
//
//	0    success
//	1    the command failed: an object that is not there, a registry or
//	     store error, a wrong number of arguments, an unknown command, some
//	     of several named objects (rmi, inspect, stop, kill, rm, wait)
//	64   an inspect --format template does not parse (docker inspect's)
//	125  a flag docker's parser refuses; run: anything that fails before
//	     the container's command runs (an image that is not there, say)
//	126  run: the container's command is not executable; exec: its
//	     command could not be run (not found included, as docker exec)
//	127  run: the container's command was not found
//
// berth run (attached) exits with the container's own exit code, 128+N
// when signal N ended it.
//
// The state directory is --root, else $BERTH_ROOT, else /var/lib/berth.
// Everything beyond image storage needs root. A network bridge no
// container uses any more stays up for $BERTH_BRIDGE_LINGER (default 2s,
// "0" for none) after a command ends, for the next command to reuse.
//
// The program is a thin layer over the public API of package berth; every
// command lives in the file of its group (image.go, archive.go,
// container.go, volume.go, network.go) and is listed once in the dispatch
// table below.
//
// The CLI sizes GOMAXPROCS by the machine's CPUs, not a cgroup's CPU limit,
// and the runtime does not re-read the limit while a command runs: a
// command lives too short for the limit to matter. (Go 1.26 still reads
// the cgroup once at start, ~0.2 ms here, whatever these settings say.)
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth"
	// First to initialize, whatever its place here: it fills the heap and
	// data pages every command touches in one system call each.
	_ "github.com/berth-dev/berth/examples/berth/internal/prefault"
)

// Exit codes, as docker uses them.
const (
	exitOK       = 0
	exitFailure  = 1   // a command failed (docker's code for most failures)
	exitTemplate = 64  // an inspect --format template does not parse
	exitBerth    = 125 // a flag is wrong, or run failed before its container ran
)

// runFunc runs a command with its flags already parsed.
type runFunc func(ctx context.Context, c *cli, args []string) error

// command is one entry of the dispatch table.
type command struct {
	name  string
	usage string // arguments after "berth NAME [OPTIONS]"
	short string // one line for "berth --help"
	long  string // the description "berth NAME --help" shows; short if empty
	args  argCount
	// posix ends the flags at the first positional argument, as docker run
	// does: what follows the image is the container's command line.
	posix bool
	// setup registers the command's flags on fs and returns the function
	// that runs it, which reads the flag values through its closure.
	setup func(fs *flagSet) runFunc
}

// commands is the dispatch table. Keep it sorted by name: it is the order
// of "berth --help".
func commands() []*command {
	return []*command{
		{name: "attach", usage: "[OPTIONS] CONTAINER", short: "Attach local standard input, output, and error streams to a running container", args: exactly(1), setup: attachCommand},
		{name: "build", usage: "[OPTIONS] PATH | URL | -", short: "Build an image from a Dockerfile", args: exactly(1), setup: buildCommand},
		{name: "builder", usage: "COMMAND", short: "Manage builds", long: "Manage builds: prune", args: atLeast(0), posix: true, setup: groupCommand("builder", "Manage builds", builderCommands)},
		{name: "commit", usage: "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", short: "Create a new image from a container's changes", args: between(1, 2), setup: commitCommand},
		{name: "container", usage: "COMMAND", short: "Manage containers", long: "Manage containers: the container commands under their management names, and prune", args: atLeast(0), posix: true, setup: groupCommand("container", "Manage containers", containerCommands)},
		{name: "cp", usage: "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH", short: "Copy files/folders between a container and the local filesystem", args: exactly(2), setup: cpCommand},
		{name: "create", usage: "[OPTIONS] IMAGE [COMMAND] [ARG...]", short: "Create a new container", args: atLeast(1), posix: true, setup: createCommand},
		{name: "diff", usage: "CONTAINER", short: "Inspect changes to files or directories on a container's filesystem", args: exactly(1), setup: diffCommand},
		{name: "events", usage: "[OPTIONS]", short: "Get real time events from berth", args: exactly(0), setup: eventsCommand},
		{name: "exec", usage: "[OPTIONS] CONTAINER COMMAND [ARG...]", short: "Execute a command in a running container", args: atLeast(2), posix: true, setup: execCommand},
		{name: "export", usage: "[OPTIONS] CONTAINER", short: "Export a container's filesystem as a tar archive", args: exactly(1), setup: exportCommand},
		{name: "history", usage: "[OPTIONS] IMAGE", short: "Show the history of an image", args: exactly(1), setup: historyCommand},
		{name: "image", usage: "COMMAND", short: "Manage images", long: "Manage images: the image commands under their management names, and prune", args: atLeast(0), posix: true, setup: groupCommand("image", "Manage images", imageCommands)},
		{name: "images", usage: "[OPTIONS] [REPOSITORY[:TAG]]", short: "List images", args: atMost(1), setup: imagesCommand},
		{name: "import", usage: "[OPTIONS] file|- [REPOSITORY[:TAG]]", short: "Import the contents from a tarball to create a filesystem image", args: between(1, 2), setup: importCommand},
		{name: "info", usage: "[OPTIONS]", short: "Display system-wide information", args: exactly(0), setup: infoCommand},
		{name: "inspect", usage: "[OPTIONS] NAME [NAME...]", short: "Return low-level information on berth objects", args: atLeast(1), setup: inspectCommand},
		{name: "kill", usage: "[OPTIONS] CONTAINER [CONTAINER...]", short: "Kill one or more running containers", args: atLeast(1), setup: killCommand},
		{name: "load", usage: "[OPTIONS]", short: "Load an image from a tar archive or STDIN", args: exactly(0), setup: loadCommand},
		{name: "login", usage: "[OPTIONS] [SERVER]", short: "Log in to a registry", args: atMost(1), setup: loginCommand},
		{name: "logout", usage: "[SERVER]", short: "Log out from a registry", args: atMost(1), setup: logoutCommand},
		{name: "logs", usage: "[OPTIONS] CONTAINER", short: "Fetch the logs of a container", args: exactly(1), setup: logsCommand},
		{name: "network", usage: "COMMAND", short: "Manage networks", long: "Manage networks: connect, create, disconnect, inspect, ls, prune, rm", args: atLeast(0), posix: true, setup: groupCommand("network", "Manage networks", networkCommands)},
		{name: "pause", usage: "CONTAINER [CONTAINER...]", short: "Pause all processes within one or more containers", args: atLeast(1), setup: pauseCommand},
		{name: "port", usage: "CONTAINER [PRIVATE_PORT[/PROTO]]", short: "List port mappings or a specific mapping for the container", args: between(1, 2), setup: portCommand},
		{name: "ps", usage: "[OPTIONS]", short: "List containers", args: exactly(0), setup: psCommand},
		{name: "pull", usage: "[OPTIONS] NAME[:TAG|@DIGEST]", short: "Pull an image from a registry", args: exactly(1), setup: pullCommand},
		{name: "push", usage: "NAME[:TAG]", short: "Push an image to a registry", args: exactly(1), setup: pushCommand},
		{name: "rename", usage: "CONTAINER NEW_NAME", short: "Rename a container", args: exactly(2), setup: renameCommand},
		{name: "restart", usage: "[OPTIONS] CONTAINER [CONTAINER...]", short: "Restart one or more containers", args: atLeast(1), setup: restartCommand},
		{name: "rm", usage: "[OPTIONS] CONTAINER [CONTAINER...]", short: "Remove one or more containers", args: atLeast(1), setup: rmCommand},
		{name: "rmi", usage: "[OPTIONS] IMAGE [IMAGE...]", short: "Remove one or more images", args: atLeast(1), setup: rmiCommand},
		{name: "run", usage: "[OPTIONS] IMAGE [COMMAND] [ARG...]", short: "Create and run a new container from an image", args: atLeast(1), posix: true, setup: runCommand},
		{name: "save", usage: "[OPTIONS] IMAGE [IMAGE...]", short: "Save one or more images to a tar archive (streamed to STDOUT by default)", args: atLeast(1), setup: saveCommand},
		{name: "start", usage: "[OPTIONS] CONTAINER [CONTAINER...]", short: "Start one or more stopped containers", args: atLeast(1), setup: startCommand},
		{name: "stats", usage: "[OPTIONS] [CONTAINER...]", short: "Display a live stream of container(s) resource usage statistics", args: atLeast(0), setup: statsCommand},
		{name: "stop", usage: "[OPTIONS] CONTAINER [CONTAINER...]", short: "Stop one or more running containers", args: atLeast(1), setup: stopCommand},
		{name: "system", usage: "COMMAND", short: "Manage berth", long: "Manage berth: df, events, info, prune", args: atLeast(0), posix: true, setup: groupCommand("system", "Manage berth", systemCommands)},
		{name: "tag", usage: "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", args: exactly(2), setup: tagCommand},
		{name: "top", usage: "CONTAINER", short: "Display the running processes of a container", args: exactly(1), setup: topCommand},
		{name: "unpause", usage: "CONTAINER [CONTAINER...]", short: "Unpause all processes within one or more containers", args: atLeast(1), setup: unpauseCommand},
		{name: "update", usage: "[OPTIONS] CONTAINER [CONTAINER...]", short: "Update configuration of one or more containers", args: atLeast(1), setup: updateCommand},
		{name: "version", usage: "", short: "Show the berth version information", args: exactly(0), setup: versionCommand},
		{name: "volume", usage: "COMMAND", short: "Manage volumes", long: "Manage volumes: create, inspect, ls, prune, rm", args: atLeast(0), posix: true, setup: groupCommand("volume", "Manage volumes", volumeCommands)},
		{name: "wait", usage: "CONTAINER [CONTAINER...]", short: "Block until one or more containers stop, then print their exit codes", args: atLeast(1), setup: waitCommand},
	}
}

// cli is what every command gets: the streams and the runtime, opened on
// first use so that help and usage errors never touch the state directory.
type cli struct {
	root           string
	stdin          *os.File
	stdout, stderr io.Writer
	rt             *berth.Runtime
}

// runtime opens the runtime on the chosen root.
func (c *cli) runtime() (*berth.Runtime, error) {
	if c.rt == nil {
		// A command is a short-lived program: the next one reuses the bridge
		// this one brought up instead of paying for deleting and re-making it.
		// $BERTH_BRIDGE_LINGER (a duration, "0" for none) overrides the 2 s.
		linger := 2 * time.Second
		if v := os.Getenv("BERTH_BRIDGE_LINGER"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil && v != "0" {
				return nil, fmt.Errorf("BERTH_BRIDGE_LINGER=%q: want a duration such as 2s: %w", v, err)
			}
			linger = d
		}
		rt, err := berth.New(c.root, berth.WithBridgeLinger(linger), berth.WithLeaveSpares())
		if err != nil {
			return nil, err
		}
		c.rt = rt
	}
	return c.rt, nil
}

func (c *cli) close() {
	if c.rt != nil {
		c.rt.Close()
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, argv []string, stdin *os.File, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	defer c.close()

	root := os.Getenv("BERTH_ROOT")
	if root == "" {
		root = berth.DefaultRoot
	}
	global := newFlagSet("berth")
	global.String(&c.root, "", "root", "string", root, "Root directory of berth state (default $BERTH_ROOT, else "+berth.DefaultRoot+")")
	var version bool
	global.Bool(&version, "v", "version", "Print version information and quit")
	cmds := commands()
	if err := global.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printMainHelp(stdout, global, cmds)
			return exitOK
		}
		fmt.Fprintf(stderr, "Error: %v\nSee 'berth --help'.\n", flagError(err))
		return exitBerth
	}
	if version {
		v, commit, _ := buildVersion()
		fmt.Fprintf(stdout, "berth version %s, build %s\n", v, commit)
		return exitOK
	}
	rest := global.Args()
	if len(rest) == 0 {
		printMainHelp(stdout, global, cmds)
		return exitOK
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		if len(rest) == 0 {
			printMainHelp(stdout, global, cmds)
			return exitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	cmd := lookup(cmds, name)
	if cmd == nil {
		fmt.Fprintf(stderr, "Error: '%s' is not a berth command.\nSee 'berth --help'.\n", name)
		return exitFailure
	}

	fs := newFlagSet("berth " + cmd.name)
	runCmd := cmd.setup(fs)
	args, err := fs.parseArgs(rest, cmd.posix)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(stdout, cmd, fs)
		return exitOK
	}
	code := exitBerth // a flag docker's parser refuses
	if err == nil {
		err, code = cmd.args.check(cmd.name, len(args)), exitFailure // a wrong number of arguments: 1, as docker
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\nSee 'berth %s --help'.\n", flagError(err), cmd.name)
		return code
	}

	return report(stderr, runCmd(ctx, c, args))
}

// report prints err the way docker does and returns the exit code.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var se *statusError
	if errors.As(err, &se) {
		if se.msg != "" {
			fmt.Fprintln(stderr, se.msg)
		}
		return se.code
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return exitFailure
}

// statusError ends a command with a given exit code and a message printed
// as is (docker's cli.StatusError).
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// failures ends a command that went through several names (rm, inspect,
// network rm, ...) as docker does: one "Error: ..." line per name that
// failed, exit code 1; nil when none did.
func failures(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return &statusError{code: exitFailure, msg: strings.Join(errs, "\n")}
}

func lookup(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

// argCount bounds the number of positional arguments of a command.
type argCount struct{ min, max int } // max < 0: no bound

func exactly(n int) argCount    { return argCount{n, n} }
func atLeast(n int) argCount    { return argCount{n, -1} }
func atMost(n int) argCount     { return argCount{0, n} }
func between(a, b int) argCount { return argCount{a, b} }

// check returns docker's message for a wrong number of arguments.
func (a argCount) check(cmd string, n int) error {
	plural := func(k int) string {
		if k == 1 {
			return "1 argument"
		}
		return fmt.Sprintf("%d arguments", k)
	}
	switch {
	case a.min == a.max && n != a.min && a.min == 0:
		return fmt.Errorf("\"berth %s\" accepts no arguments.", cmd)
	case a.min == a.max && n != a.min:
		return fmt.Errorf("\"berth %s\" requires exactly %s.", cmd, plural(a.min))
	case n < a.min && a.max < 0:
		return fmt.Errorf("\"berth %s\" requires at least %s.", cmd, plural(a.min))
	case n < a.min:
		return fmt.Errorf("\"berth %s\" requires at least %s and at most %s.", cmd, plural(a.min), plural(a.max))
	case a.max >= 0 && n > a.max:
		return fmt.Errorf("\"berth %s\" requires at most %s.", cmd, plural(a.max))
	}
	return nil
}

// flagSet is a flag.FlagSet whose flags have docker's short and long
// names ("-q, --quiet") and which remembers them for the help text.
type flagSet struct {
	*flag.FlagSet
	docs []flagDoc
}

type flagDoc struct {
	short, long, kind, usage string
}

func newFlagSet(name string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported docker's way, by run
	return &flagSet{FlagSet: fs}
}

// Bool defines a boolean flag with an optional one-letter alias.
func (f *flagSet) Bool(p *bool, short, long, usage string) {
	f.BoolVar(p, long, false, usage)
	if short != "" {
		f.BoolVar(p, short, false, usage)
	}
	f.docs = append(f.docs, flagDoc{short, long, "", usage})
}

// String defines a string flag with an optional one-letter alias; kind
// names the value in the help text.
func (f *flagSet) String(p *string, short, long, kind, value, usage string) {
	f.StringVar(p, long, value, usage)
	if short != "" {
		f.StringVar(p, short, value, usage)
	}
	f.docs = append(f.docs, flagDoc{short, long, kind, usage})
}

// Int defines an integer flag with an optional one-letter alias.
func (f *flagSet) Int(p *int, short, long string, value int, usage string) {
	f.IntVar(p, long, value, usage)
	if short != "" {
		f.IntVar(p, short, value, usage)
	}
	f.docs = append(f.docs, flagDoc{short, long, "int", usage})
}

// Strings defines a flag that may be given several times, each value
// appended to *p (docker's "list" flags: -e, --label, --cap-add).
func (f *flagSet) Strings(p *[]string, short, long, usage string) {
	f.Var((*listValue)(p), long, usage)
	if short != "" {
		f.Var((*listValue)(p), short, usage)
	}
	f.docs = append(f.docs, flagDoc{short, long, "list", usage})
}

type listValue []string

func (l *listValue) String() string     { return strings.Join(*l, ",") }
func (l *listValue) Set(s string) error { *l = append(*l, s); return nil }

// isSet reports whether the flag named long, or its one-letter alias,
// was given on the command line, for flags whose zero value means
// something (--entrypoint "").
func (f *flagSet) isSet(long string) bool {
	short := ""
	for _, d := range f.docs {
		if d.long == long {
			short = d.short
		}
	}
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == long || (short != "" && fl.Name == short) })
	return set
}

// parseArgs parses a command's flags, with docker's combined one-letter
// flags ("-it", "-dit", "-eK=V") expanded first. In posix mode the flags
// end at the first positional argument; otherwise they may be
// interspersed with the arguments.
func (f *flagSet) parseArgs(args []string, posix bool) ([]string, error) {
	args, err := f.expandShorthands(args, posix)
	if err != nil {
		return nil, err
	}
	if !posix {
		return f.parseInterspersed(args)
	}
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	return f.Args(), nil
}

// expandShorthands rewrites clusters of one-letter flags ("-it") as
// separate flags ("-i", "-t"), the way docker's flag parser reads them:
// boolean letters stack, and a letter that takes a value takes the rest
// of the cluster ("-eK=V", "-t5") or, when it is last, the next argument.
// Arguments that are values of flags are left alone, and in posix mode so
// is everything from the first positional argument on.
func (f *flagSet) expandShorthands(args []string, posix bool) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || posix && (a == "-" || !strings.HasPrefix(a, "-")) {
			return append(out, args[i:]...), nil
		}
		if a == "-" || !strings.HasPrefix(a, "-") {
			out = append(out, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		plain, _, hasValue := strings.Cut(name, "=")
		if strings.HasPrefix(a, "--") || len(plain) == 1 || f.Lookup(plain) != nil {
			out = append(out, a)
			if !hasValue && f.takesValue(plain) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		for j := 0; j < len(name); j++ {
			letter := name[j : j+1]
			fl := f.Lookup(letter)
			if fl == nil {
				return nil, fmt.Errorf("unknown shorthand flag: '%s' in %s", letter, a)
			}
			if !f.takesValue(letter) {
				out = append(out, "-"+letter)
				continue
			}
			if rest := strings.TrimPrefix(name[j+1:], "="); rest != "" {
				out = append(out, "-"+letter, rest)
			} else if i+1 < len(args) {
				i++
				out = append(out, "-"+letter, args[i])
			} else {
				out = append(out, "-"+letter) // the flag package reports the missing value
			}
			break
		}
	}
	return out, nil
}

// takesValue reports whether the flag name exists and is not boolean.
func (f *flagSet) takesValue(name string) bool {
	fl := f.Lookup(name)
	if fl == nil {
		return false
	}
	b, ok := fl.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, as docker allows ("images busybox -q"); "--"
// ends the flags.
func (f *flagSet) parseInterspersed(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, err
		}
		rest := f.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError rewords the flag package's errors as docker's.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		if len(name) == 1 {
			return fmt.Errorf("unknown shorthand flag: '%s' in -%s", name, name)
		}
		return fmt.Errorf("unknown flag: --%s", name)
	}
	if rest, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("flag needs an argument: %s", rest)
	}
	return err
}

func printMainHelp(w io.Writer, global *flagSet, cmds []*command) {
	fmt.Fprint(w, "\nUsage:  berth [OPTIONS] COMMAND\n\nA daemonless runtime for OCI containers\n\nOptions:\n")
	printFlags(w, global)
	fmt.Fprint(w, "\nCommands:\n")
	sorted := append([]*command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.short)
	}
	fmt.Fprint(w, "\nRun 'berth COMMAND --help' for more information on a command.\n")
}

func printCommandHelp(w io.Writer, cmd *command, fs *flagSet) {
	desc := cmd.long
	if desc == "" {
		desc = cmd.short
	}
	fmt.Fprintf(w, "\nUsage:  berth %s %s\n\n%s\n", cmd.name, cmd.usage, desc)
	if len(fs.docs) > 0 {
		fmt.Fprint(w, "\nOptions:\n")
		printFlags(w, fs)
	}
}

func printFlags(w io.Writer, fs *flagSet) {
	var names []string
	width := 0
	for _, d := range fs.docs {
		n := "    "
		if d.short != "" {
			n = "-" + d.short + ", "
		}
		n += "--" + d.long
		if d.kind != "" {
			n += " " + d.kind
		}
		names = append(names, n)
		width = max(width, len(n))
	}
	for i, d := range fs.docs {
		fmt.Fprintf(w, "  %-*s   %s\n", width, names[i], d.usage)
	}
}

// groupCommand is a command made of subcommands (docker volume, docker
// network): it dispatches to the subcommand named first, which parses its
// own flags.
func groupCommand(group, title string, subs func() []*command) func(fs *flagSet) runFunc {
	return func(fs *flagSet) runFunc {
		return func(ctx context.Context, c *cli, args []string) error {
			cmds := subs()
			if len(args) == 0 {
				fmt.Fprintf(c.stdout, "Usage:  berth %s COMMAND\n\n%s\n\nCommands:\n", group, title)
				for _, s := range cmds {
					fmt.Fprintf(c.stdout, "  %-10s %s\n", s.name, s.short)
				}
				return nil
			}
			sub := lookup(cmds, args[0])
			if sub == nil {
				return &statusError{code: exitFailure, msg: fmt.Sprintf("Error: unknown command %q for \"berth %s\"\nSee 'berth %s --help'.", args[0], group, group)}
			}
			name := group + " " + sub.name
			sfs := newFlagSet("berth " + name)
			runSub := sub.setup(sfs)
			rest, err := sfs.parseArgs(args[1:], sub.posix)
			if errors.Is(err, flag.ErrHelp) {
				printCommandHelp(c.stdout, &command{name: name, usage: sub.usage, short: sub.short}, sfs)
				return nil
			}
			code := exitBerth // a flag docker's parser refuses; a wrong number of arguments is 1
			if err == nil {
				err, code = sub.args.check(name, len(rest)), exitFailure
			}
			if err != nil {
				return &statusError{code: code, msg: fmt.Sprintf("Error: %v\nSee 'berth %s --help'.", flagError(err), name)}
			}
			return runSub(ctx, c, rest)
		}
	}
}

// buildVersion reads the binary's module version, commit and Go version
// from its build information ("(devel)" and "unknown" when it has none).
func buildVersion() (version, commit, goVersion string) {
	version, commit, goVersion = "(devel)", "unknown", runtime.Version()
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if v := info.Main.Version; v != "" {
		version = v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 7 {
			commit = s.Value[:7]
		}
	}
	return version, commit, info.GoVersion
}

// versionCommand is docker version, for scripts that check the tool is
// there: berth has no server, so only the client's part.
func versionCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		v, commit, goVersion := buildVersion()
		fmt.Fprintf(c.stdout, "Client:\n Version:           %s\n Go version:        %s\n Git commit:        %s\n OS/Arch:           %s/%s\n",
			v, goVersion, commit, runtime.GOOS, runtime.GOARCH)
		return nil
	}
}
