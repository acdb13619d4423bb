// Package reputation gives URLs and file hashes a verdict: unknown, clean,
// malware, phishing or unwanted.
//
// A Client answers a Query in this order:
//
//	Query{URL | SHA256 | SHA1 | MD5}
//	  │
//	  ├─ result cache ─── hit ──────────────────────────────▶ Verdict (as cached)
//	  │   (raw query → final verdict and its Source, until the shortest TTL)
//	  ├─ canonicalize URL, build ≤30 expressions, SHA-256 each (urls.go, hash.go)
//	  ├─ administrator's block, then allow list ── match ─────▶ Verdict (local)
//	  ├─ prefix cache (4-byte prefix → full hashes + negative TTL)
//	  │   all prefixes fresh ───────────────────────────────────▶ Verdict (as cached)
//	  └─ Backend: one batched request of the missing 4-byte prefixes,
//	      singleflight-collapsed, with a timeout and a circuit breaker
//	      ├─ Remote (KSN cloud or KPSN private server, api.go) ▶ Verdict (server)
//	      ├─ embedded database (package reputation/db) ─────────▶ Verdict (database)
//	      └─ failure ── fail-open: unknown / fail-closed: block ─▶ Verdict (failure, never cached)
//
// Provenance. A verdict's Source says who gave it — the administrator's
// lists (local), a reputation service (database, server) or the fail policy
// (failure) — and the policy decides by it: the lists win over the
// protection table, fail = "closed" always blocks. So a cached verdict keeps
// its Source; Verdict.Cached alone says that a cache answered. The local
// lists are fixed for the life of a Client (a reload that changes them
// builds a new Client; Client.Reload and Client.Flush empty both caches),
// so a cached list verdict is exactly what the lists would answer now:
// caching it keeps the order "local lists, then cache, then backend" while
// letting a cache hit skip canonicalization (≈0.3 µs, no allocation). A
// fail-policy verdict is never cached: each lookup during an outage asks
// again (or meets the open breaker), gets the fail policy's verdict with
// Source failure, and the first lookup after the outage gets the service's.

// The proxy depends on the Lookuper interface; *Client implements it.
//
// Only 4-byte prefixes of SHA-256 hashes ever leave the process; full hashes
// are matched locally. The wire protocol is documented in docs/protocol.md.
//
// URL canonicalization and lookup expressions follow the Safe Browsing v4
// "URLs and hashing" rules. File hashes are looked up the same way under a
// derived key (FileKey), so the database and the protocol know one kind of
// entry: a 32-byte hash with a verdict.
package reputation
