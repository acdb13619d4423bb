// Package deadline answers whether a bounded run is over, for the load and
// soak tools that count a request's failure as an error only while their
// run lasts. It is internal because it is a helper that two tools share,
// not a room of its own.
package deadline

import (
	"context"
	"time"
)

// Reached reports whether ctx is done or its deadline has passed.
//
// ctx.Err() alone is not enough at the end of a run: a dial or a read fails
// on its socket's deadline, which is the run's deadline, and that timer can
// fire before the context's own (or a dial finds the deadline passed and
// fails at once with "i/o timeout"), while ctx.Err() is still nil.
func Reached(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
