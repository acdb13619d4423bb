package proxy

// growStack grows the calling goroutine's stack to 8 KiB while it is still
// shallow, at the start of a connection's or a stream's goroutine.
//
// A goroutine starts on a small stack (Go sizes it from the average it saw
// at the last collection: 4 KiB here) and the request path — the decision,
// twenty frames and about 7 KiB down — outgrows it. Go then copies the
// stack, and a copy costs in proportion to the frames on it: each one's
// stack map is looked up to adjust its pointers. Measured on a new
// tunnel, that copy at the decision was 5 µs of CPU, about a fifth of what
// Picket spends beyond the least a Go CONNECT proxy does
// (docs/benchmarks.md). Here the copy has three frames to adjust, and the
// frame that forces it costs the zeroing of 4 KiB of stack the goroutine
// then uses anyway.
//
//go:noinline
func growStack(i int) byte {
	var pad [stackReserve]byte
	return pad[i&(stackReserve-1)] // read, so that the frame is kept
}

// stackReserve is growStack's frame: more than a 4 KiB stack holds past
// its guard, less than what makes Go double a 4 KiB stack twice.
const stackReserve = 4 << 10
