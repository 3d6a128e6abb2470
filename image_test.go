package berth_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/berth-dev/berth"
	"github.com/berth-dev/berth/berthtest"
)

func TestImportPushPull(t *testing.T) {
	ctx := context.Background()
	reg := berthtest.StartRegistry(t)
	rt := berthtest.NewRuntime(t)
	img := berthtest.Busybox(t, rt, "busybox:latest")
	if len(img.Layers) != 1 || img.RepoTags[0] != "busybox:latest" {
		t.Fatalf("imported image = %+v", img)
	}
	ref := reg.Host + "/test/busybox:1"
	if err := rt.Push(ctx, img, ref); err != nil {
		t.Fatal(err)
	}
	rt2 := berthtest.NewRuntime(t)
	pulled, err := rt2.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Digest != img.Digest || pulled.ID != img.ID {
		t.Errorf("pulled %s/%s, pushed %s/%s", pulled.Digest, pulled.ID, img.Digest, img.ID)
	}
	if err := rt2.Check(ctx); err != nil {
		t.Errorf("Check after pull: %v", err)
	}
	var buf bytes.Buffer
	if err := rt2.Save(ctx, &buf, ref); err != nil {
		t.Fatal(err)
	}
	rt3 := berthtest.NewRuntime(t)
	loaded, err := rt3.Load(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].Digest != img.Digest {
		t.Fatalf("loaded %+v", loaded)
	}
	if _, err := rt3.RemoveImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := rt3.Image(ctx, ref); !errors.Is(err, berth.ErrNotFound) {
		t.Errorf("after rmi: %v, want ErrNotFound", err)
	}
}
