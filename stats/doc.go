// Package stats is participation: what Picket may tell the cloud, and only
// when the administrator said yes.
//
//	proxy Event ──Observe (O(1), never blocks)──▶ aggregate (counters, capped hash maps)
//	                                                   │ every Interval: cut
//	                                                   ▼
//	                                    Batch ──JSON──▶ queue dir (bounded, oldest dropped)
//	                                                   │ if KSN and participation on
//	                                                   ▼
//	                                    POST /v1/stats (gzip, retry with backoff)
//
//	scanner "unknown" file with active content (never a plain document)
//	    ──WantSample? (seen by samples_min_clients distinct clients, sightings.go)──▶
//	    OfferSample (≤ samples_max_size bytes; only executables partial)
//	    ──▶ queue dir/samples ──▶ POST /v1/samples (each hash once, at once)
//
// Batch is the one type that defines everything that can be sent; the
// statement docs/privacy.md documents every field, and a test keeps the two
// in step. Nothing else leaves the installation: no client addresses, user
// names, cookies, headers, query strings, URLs of clean traffic or bodies.
// In KPSN mode nothing is ever sent, whatever the switches say.
//
// Intake is the cloud side: it stores what installations send, bounded, on
// disk, and Summarize lists what it learnt.
package stats
