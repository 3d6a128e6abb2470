package berth

import (
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// runNetwork turns RUN --network into Run's options. Every RUN gets a
// network namespace of its own with loopback only, which is what none
// asks for; default gives the same today.
func runNetwork(mode string) ([]RunOption, error) {
	switch mode {
	case instructions.NetworkDefault, instructions.NetworkNone, "":
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: RUN --network=%s", ErrUnsupported, mode)
	}
}
