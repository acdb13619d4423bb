package deadline

import (
	"context"
	"testing"
	"time"
)

// lateCtx is a context whose deadline has passed while its own timer has
// not yet fired (Err is still nil): what a worker can see at the end of a
// run, when its socket's deadline, the same instant, fired first.
type lateCtx struct{ context.Context }

func (lateCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
func (lateCtx) Err() error                  { return nil }

func TestReached(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if Reached(ctx) {
		t.Error("reached before the deadline")
	}
	if !Reached(lateCtx{context.Background()}) {
		t.Error("not reached past the deadline while Err is still nil: a request cut by the end of a run would count as an error")
	}
	cancel()
	if !Reached(ctx) {
		t.Error("not reached once cancelled")
	}
	if Reached(context.Background()) {
		t.Error("a context without a deadline reached it")
	}
}
