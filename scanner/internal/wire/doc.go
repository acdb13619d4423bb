// Package wire holds what the engine clients (scanner/clamd, scanner/icap)
// share about their connections: a small pool with a bound on open
// connections and idle reuse, a non-blocking check that a pooled connection
// is still open before it is reused, and bounded line reading.
package wire
