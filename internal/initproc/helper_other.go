//go:build !amd64

package initproc

// helperImage returns nil: the exec helper exists for amd64 only, and other
// architectures start every container through the child stage.
func helperImage() []byte { return nil }

// initImage returns nil: the init (Spec.Init) exists for amd64 only.
func initImage() []byte { return nil }
