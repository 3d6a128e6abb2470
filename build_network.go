package berth

import (
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// runNetwork turns RUN --network into Run's options: none is a network
// namespace with only loopback, host the host's, and default what Run
// gives a container by default (its bridge network), as docker build's
// RUN reaches the network.
func runNetwork(mode string) ([]RunOption, error) {
	switch mode {
	case instructions.NetworkDefault, "":
		return nil, nil
	case instructions.NetworkNone, instructions.NetworkHost:
		return []RunOption{WithNetworkMode(mode)}, nil
	default:
		return nil, fmt.Errorf("%w: RUN --network=%s", ErrUnsupported, mode)
	}
}
