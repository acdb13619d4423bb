package proxy

// growStack grows the calling goroutine's stack to 8 KiB while it is still
// shallow, at the start of a connection's or a stream's goroutine.
//
// A goroutine starts on a small stack (Go sizes it from the average it saw
// at the last collection: 4 KiB under load here) and the request path —
// the decision, twenty frames and up to about 7 KiB down — outgrows it. Go
// then copies the stack: it allocates the new one and walks every frame on
// the old, looking up each one's stack map to adjust its pointers. Here
// the walk has three frames, and the frame that forces the copy costs the
// zeroing of 4 KiB of stack the goroutine then uses anyway. Measured
// (docs/benchmarks.md): the copy at the decision was about 5 µs per new
// tunnel in the load run's profile; 4-5 % less CPU per new tunnel by hand,
// 0-4 % per new tunnel and per HTTP/2 request in the load run's A/B.
//
//go:noinline
func growStack(i int) byte {
	var pad [stackReserve]byte
	return pad[i&(stackReserve-1)] // read, so that the frame is kept
}

// stackReserve is growStack's frame: more than a 4 KiB stack holds past
// its guard, less than what makes Go double a 4 KiB stack twice.
const stackReserve = 4 << 10
