//go:build linux && (amd64 || arm64)

package prefault

const (
	atFDCWD  = ^uintptr(99) // -100
	oRDONLY  = 0
	oCLOEXEC = 0o2000000
)
