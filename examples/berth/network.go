package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth"
)

// networkCommands are docker network's subcommands.
func networkCommands() []*command {
	return []*command{
		{name: "connect", usage: "[OPTIONS] NETWORK CONTAINER", short: "Connect a container to a network", args: exactly(2), setup: networkConnectCommand},
		{name: "create", usage: "[OPTIONS] NETWORK", short: "Create a network", args: exactly(1), setup: networkCreateCommand},
		{name: "disconnect", usage: "[OPTIONS] NETWORK CONTAINER", short: "Disconnect a container from a network", args: exactly(2), setup: networkDisconnectCommand},
		{name: "inspect", usage: "[OPTIONS] NETWORK [NETWORK...]", short: "Display detailed information on one or more networks", args: atLeast(1), setup: networkInspectCommand},
		{name: "ls", usage: "[OPTIONS]", short: "List networks", args: exactly(0), setup: networkLsCommand},
		{name: "prune", usage: "[OPTIONS]", short: "Remove all unused networks", args: exactly(0), setup: networkPruneCommand},
		{name: "rm", usage: "NETWORK [NETWORK...]", short: "Remove one or more networks", args: atLeast(1), setup: networkRmCommand},
	}
}

// noSuchNetwork is docker's message for a network that is not in the
// root; other errors pass through.
func noSuchNetwork(name string, err error) error {
	if errors.Is(err, berth.ErrNotFound) {
		return fmt.Errorf("No such network: %s", name)
	}
	return err
}

func networkCreateCommand(fs *flagSet) runFunc {
	var subnet, gateway, driver string
	var internal bool
	var labels []string
	fs.String(&driver, "d", "driver", "string", "bridge", "Driver to manage the Network")
	fs.String(&gateway, "", "gateway", "string", "", "IPv4 Gateway for the master subnet")
	fs.Bool(&internal, "", "internal", "Restrict external access to the network")
	fs.Strings(&labels, "", "label", "Set metadata on a network")
	fs.String(&subnet, "", "subnet", "string", "", "Subnet in CIDR format that represents a network segment")
	return func(ctx context.Context, c *cli, args []string) error {
		if driver != "bridge" {
			return fmt.Errorf("network driver %q is not supported: berth has the bridge driver only", driver)
		}
		var opts []berth.NetworkOption
		if subnet != "" {
			opts = append(opts, berth.WithSubnet(subnet))
		}
		if gateway != "" {
			if subnet == "" {
				// docker's client refuses this before asking the daemon.
				return errors.New("every ip-range or gateway must have a corresponding subnet")
			}
			opts = append(opts, berth.WithGateway(gateway))
		}
		if internal {
			opts = append(opts, berth.WithInternal())
		}
		if len(labels) > 0 {
			m, err := parseLabels(labels)
			if err != nil {
				return err
			}
			opts = append(opts, berth.WithNetworkLabels(m))
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		n, err := rt.CreateNetwork(ctx, args[0], opts...)
		if errors.Is(err, berth.ErrExists) {
			return fmt.Errorf("network with name %s already exists", args[0])
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, n.ID)
		return nil
	}
}

// parseLabels reads --label k=v values; a bare k has an empty value.
func parseLabels(labels []string) (map[string]string, error) {
	m := make(map[string]string, len(labels))
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		if k == "" {
			return nil, fmt.Errorf("invalid label %q: empty name", l)
		}
		m[k] = v
	}
	return m, nil
}

// networkRow is one line of docker network ls, and the object its
// --format template sees.
type networkRow struct {
	ID, Name, Driver, Scope, Internal, CreatedAt, Labels string
}

var networkHeader = networkRow{ID: "NETWORK ID", Name: "NAME", Driver: "DRIVER", Scope: "SCOPE", Internal: "INTERNAL", CreatedAt: "CREATED AT", Labels: "LABELS"}

const defaultNetworkFormat = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"

func networkLsCommand(fs *flagSet) runFunc {
	var quiet, noTrunc bool
	var format string
	var filterArgs []string
	fs.Strings(&filterArgs, "f", "filter", "Provide filter values (e.g. 'driver=bridge')")
	fs.String(&format, "", "format", "string", "", "Pretty-print networks using a Go template")
	fs.Bool(&noTrunc, "", "no-trunc", "Do not truncate the output")
	fs.Bool(&quiet, "q", "quiet", "Only display network IDs")
	name := fs.Name()
	return func(ctx context.Context, c *cli, args []string) error {
		format = tableFormat(format)
		filters, err := parseFilters(name, filterArgs, "dangling", "driver", "id", "label", "name", "scope", "type")
		if err != nil {
			return err
		}
		f, err := newNetworkFilter(filters)
		if err != nil {
			return err
		}
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		nets, err := rt.Networks(ctx)
		if err != nil {
			return err
		}
		var used func(*berth.Network) (bool, error)
		if f.dangling != "" {
			if used, err = networkInUse(ctx, rt); err != nil {
				return err
			}
		}
		var rows []networkRow
		for _, n := range nets {
			ok := f.match(n)
			if ok && f.dangling != "" {
				inUse, err := used(n)
				if err != nil {
					return err
				}
				// A builtin network is never dangling, as in docker.
				ok = (inUse || builtinNetwork(n)) == (f.dangling == "false")
			}
			if ok {
				rows = append(rows, newNetworkRow(n, noTrunc))
			}
		}
		if format == "" && quiet { // a --format wins over -q, as in docker
			for _, r := range rows {
				fmt.Fprintln(c.stdout, r.ID)
			}
			return nil
		}
		if format == "" {
			format = defaultNetworkFormat
		}
		return printRows(c.stdout, format, networkHeader, rows)
	}
}

// networkFilter is network ls's --filter: docker's dangling, driver, id,
// label, name, scope and type keys.
type networkFilter struct {
	filters  filterArgs
	dangling string // "true", "false", or "" when not filtered
}

// newNetworkFilter checks the values of filters as docker's daemon does.
func newNetworkFilter(filters filterArgs) (*networkFilter, error) {
	f := &networkFilter{filters: filters}
	if d := filters["dangling"]; len(d) > 1 {
		return nil, errors.New(`got more than one value for filter key "dangling"`)
	} else if len(d) == 1 {
		switch d[0] {
		case "true", "1":
			f.dangling = "true"
		case "false", "0":
			f.dangling = "false"
		default:
			return nil, errors.New(`invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")`)
		}
	}
	for _, t := range filters["type"] {
		if t != "builtin" && t != "custom" {
			return nil, fmt.Errorf("invalid filter: 'type'='%s'", t)
		}
	}
	return f, nil
}

// match reports whether n passes every key but dangling: name and id are
// docker's patterns (matchPattern), driver and scope exact, labels all
// present, type builtin (the default network) or custom (the others).
func (f *networkFilter) match(n *berth.Network) bool {
	fl := f.filters
	typ := "custom"
	if builtinNetwork(n) {
		typ = "builtin"
	}
	switch {
	case len(fl["driver"]) > 0 && !slices.Contains(fl["driver"], n.Driver),
		len(fl["name"]) > 0 && !matchPattern(fl["name"], n.Name),
		len(fl["id"]) > 0 && !matchPattern(fl["id"], n.ID),
		len(fl["scope"]) > 0 && !slices.Contains(fl["scope"], "local"),
		len(fl["type"]) > 0 && !slices.Contains(fl["type"], typ):
		return false
	}
	return matchLabels(fl["label"], n.Labels)
}

// builtinNetwork reports one of the networks docker predefines: of them
// berth has and lists the default, bridge ("host" and "none" are network
// modes, and names no network may take).
func builtinNetwork(n *berth.Network) bool { return n.Name == berth.DefaultNetwork }

// networkInUse returns a function that reports whether some container
// uses a network: a container of the root, running or not, is configured
// to join it, or one is attached to it now. Docker counts the attached
// (running) containers only; berth counts what keeps network rm and prune
// from removing the network, so that "network rm $(network ls -q -f
// dangling=true)" works.
func networkInUse(ctx context.Context, rt *berth.Runtime) (func(*berth.Network) (bool, error), error) {
	infos, err := rt.Containers(ctx, berth.WithAll())
	if err != nil {
		return nil, err
	}
	configured := map[string]bool{}
	for _, info := range infos {
		for _, name := range info.Networks {
			configured[name] = true
		}
	}
	return func(n *berth.Network) (bool, error) {
		if configured[n.Name] {
			return true, nil
		}
		eps, err := n.Endpoints(ctx)
		return len(eps) > 0, err
	}, nil
}

func newNetworkRow(n *berth.Network, noTrunc bool) networkRow {
	r := networkRow{
		ID: n.ID, Name: n.Name, Driver: n.Driver, Scope: "local",
		Internal:  fmt.Sprint(n.Internal),
		CreatedAt: n.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
	}
	if !noTrunc {
		r.ID = shortID(r.ID)
	}
	r.Labels = labelColumn(n.Labels)
	return r
}

// networkInspect is the object docker network inspect prints, with the
// fields berth knows.
type networkInspect struct {
	Name       string
	Id         string
	Created    string
	Scope      string
	Driver     string
	EnableIPv6 bool
	IPAM       ipamInspect
	Internal   bool
	Attachable bool
	Ingress    bool
	ConfigFrom struct{ Network string }
	ConfigOnly bool
	// Containers are keyed by container ID, as docker keys them.
	Containers map[string]networkContainerInspect
	Options    map[string]string
	Labels     map[string]string
}

type ipamInspect struct {
	Driver  string
	Options map[string]string
	Config  []ipamConfig
}

type ipamConfig struct {
	Subnet  string
	Gateway string
}

type networkContainerInspect struct {
	Name        string
	EndpointID  string
	MacAddress  string
	IPv4Address string
	IPv6Address string
}

// newNetworkInspect shapes n and its attached containers as docker network
// inspect does.
func newNetworkInspect(n *berth.Network, eps []berth.NetworkEndpoint) networkInspect {
	out := networkInspect{
		Name: n.Name, Id: n.ID, Created: n.Created.Format(time.RFC3339Nano), Scope: "local", Driver: n.Driver,
		IPAM: ipamInspect{
			Driver: "default", Options: map[string]string{},
			Config: []ipamConfig{{Subnet: n.Subnet.String(), Gateway: n.Gateway.String()}},
		},
		Internal:   n.Internal,
		Containers: map[string]networkContainerInspect{},
		Options:    map[string]string{},
		Labels:     n.Labels,
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for _, ep := range eps {
		out.Containers[ep.ContainerID] = networkContainerInspect{
			Name: ep.Container, MacAddress: ep.MAC,
			IPv4Address: fmt.Sprintf("%s/%d", ep.IP, ep.PrefixLen),
		}
	}
	return out
}

// inspectNetwork is network inspect's object for the network name.
func inspectNetwork(ctx context.Context, rt *berth.Runtime, name string) (networkInspect, error) {
	n, err := rt.Network(ctx, name)
	if err != nil {
		return networkInspect{}, err
	}
	eps, err := n.Endpoints(ctx)
	if err != nil {
		return networkInspect{}, err
	}
	return newNetworkInspect(n, eps), nil
}

func networkInspectCommand(fs *flagSet) runFunc {
	var format string
	fs.String(&format, "f", "format", "string", "", "Format the output using the given Go template")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		var found []networkInspect
		var errs []string
		for _, name := range args {
			ni, err := inspectNetwork(ctx, rt, name)
			if err != nil {
				errs = append(errs, "Error: "+noSuchNetwork(name, err).Error())
				continue
			}
			found = append(found, ni)
		}
		if err := printInspect(c.stdout, format, found); err != nil {
			return err
		}
		return failures(errs)
	}
}

func networkRmCommand(fs *flagSet) runFunc {
	var force bool
	fs.Bool(&force, "f", "force", "Do not error if the network does not exist")
	return func(ctx context.Context, c *cli, args []string) error {
		rt, err := c.runtime()
		if err != nil {
			return err
		}
		var errs []string
		for _, name := range args {
			n, err := rt.Network(ctx, name)
			if err == nil {
				err = n.Remove(ctx)
			}
			switch {
			case errors.Is(err, berth.ErrNotFound) && force:
			case errors.Is(err, berth.ErrInUse):
				errs = append(errs, fmt.Sprintf("Error response from daemon: error while removing network: %v", err))
			case err != nil:
				errs = append(errs, "Error: "+noSuchNetwork(name, err).Error())
			default:
				fmt.Fprintln(c.stdout, name)
			}
		}
		return failures(errs)
	}
}

// networkAndContainer finds the network and the container connect and
// disconnect name.
func networkAndContainer(ctx context.Context, c *cli, netName, ctrName string) (*berth.Network, *berth.Container, error) {
	rt, err := c.runtime()
	if err != nil {
		return nil, nil, err
	}
	n, err := rt.Network(ctx, netName)
	if err != nil {
		return nil, nil, noSuchNetwork(netName, err)
	}
	ctr, err := rt.Container(ctx, ctrName)
	if err != nil {
		return nil, nil, noSuchContainer(ctrName, err)
	}
	return n, ctr, nil
}

func networkConnectCommand(fs *flagSet) runFunc {
	var aliases []string
	fs.Strings(&aliases, "", "alias", "Add network-scoped alias for the container")
	return func(ctx context.Context, c *cli, args []string) error {
		n, ctr, err := networkAndContainer(ctx, c, args[0], args[1])
		if err != nil {
			return err
		}
		return n.Connect(ctx, ctr, aliases...)
	}
}

func networkDisconnectCommand(fs *flagSet) runFunc {
	var force bool
	fs.Bool(&force, "f", "force", "Force the container to disconnect from a network")
	return func(ctx context.Context, c *cli, args []string) error {
		n, ctr, err := networkAndContainer(ctx, c, args[0], args[1])
		if err != nil {
			return err
		}
		return n.Disconnect(ctx, ctr)
	}
}
