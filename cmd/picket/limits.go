package main

import (
	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/config"
)

// fdsPerConn are the descriptors one client connection may hold at once:
// its own and its upstream connection (a tunnel, a forwarded request).
const fdsPerConn = 2

// fdsBesides are the descriptors Picket holds besides its connections:
// listeners, log files, pooled upstream connections, the feed directory,
// engine sockets, with room to spare.
const fdsBesides = 1024

// checkFileLimit warns when the open-file limit is too low for
// [proxy] max_conns: past the limit, accept fails (Picket backs off and
// retries) and dials fail with "too many open files", long before
// max_conns answers 503 — the kernel's limit, not max_conns, decides who is
// served. It names both figures and the two ways out.
func checkFileLimit(p config.Proxy, limit uint64, log zerolog.Logger) {
	if p.MaxConns <= 0 {
		return // no limit of Picket's own to compare with
	}
	need := uint64(p.MaxConns)*fdsPerConn + fdsBesides
	if limit >= need {
		return
	}
	log.Warn().Uint64("open_file_limit", limit).Int("max_conns", p.MaxConns).Uint64("needs", need).
		Msg("the open-file limit is below what [proxy] max_conns needs (two per connection and 1024 besides): raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower max_conns")
}
