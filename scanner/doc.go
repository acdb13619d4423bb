// Package scanner decides whether a download or an upload carries malware: it sniffs the
// true type of a body from its first bytes, hashes it (SHA-256, SHA-1 and MD5
// in one pass) while it arrives, buffers it in memory or in a private temp
// file, and then judges it. It never touches the network: the reputation of a
// file hash is asked through the small Reputation interface the caller hands
// in, and external anti-virus engines (clamd, ICAP servers: the clients are
// in scanner/clamd and scanner/icap) through the Engine interface.
//
// The order of a scan:
//
//	Classify(head, type, name, size) ── not scannable ──▶ stream untouched
//	        │ scannable
//	        ▼
//	Scanner.NewScan ▶ Scan.Write / ReadFrom   hash ×3, buffer (memory ▸ temp file), ≤ MaxSize,
//	        │                               and stream to each Engine as it arrives (not encoded)
//	        ▼
//	Scan.Finish(ctx)      (at most MaxConcurrent at once for steps 1-5)
//	   1. oversize?                 ──▶ VerdictOversize
//	   2. decode Content-Encoding   (gzip, deflate, br, zstd; bounded)
//	   3. EICAR, hash signatures    (.hdb, .hsb; the file and archive members)
//	   4. archives                  (zip, gzip, tar; depth, members, expansion, ratio ▸ VerdictBomb;
//	                                 an upload's multipart form: each part a member, form.go)
//	   5. known good                (.fp overrides local detections)
//	      active content            (executables, archives holding one, macros, OLE objects, external
//	                                 templates, RTF objects, PDF JavaScript/actions: Result.Active,
//	                                 a classification, not a verdict)
//	   6. engines                   (unless 3-5 decided: verdict cache by SHA-256 ▸ clamd, ICAP;
//	                                 a failure is fail-open or an *EngineError; partial scans marked;
//	                                 then each file of an uploaded form on its own, form.go)
//	   7. reputation of the hashes  (clean ▸ false alarm; malware ▸ block; never for an upload)
//	        │
//	        ▼
//	Result{Verdict, Threat, Sums, Type, Source, FalseAlarm, Blocked}
//	        │
//	Scan.Reader / WriteTo (buffer mode)  or  Trickle.Release (trickle mode)
//	Scan.Close                           (frees memory, closes the temp file)
//
// Files are in this package by concern: sniff.go (types), hash.go, spool.go
// (memory and temp-file buffering with the memory budget), signatures.go
// (ClamAV hash databases), eicar.go, archive.go, form.go (uploaded forms),
// encoding.go, scan.go (the scan object and the verdict merge), trickle.go
// (the trickle-mode helper), engines.go (the Engine interface, the verdict
// cache, per-engine counters), active.go, activepdf.go and activepdflex.go
// (what active content a file carries; the last is the PDF lexer).
package scanner
