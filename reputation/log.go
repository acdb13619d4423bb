package reputation

// Log field names used by this package and its sub-packages. URLs, query
// strings and tokens are never logged: only counts, states and sources.
const (
	LogComponent = "component" // "reputation", "repserver", "feeds"
	LogPolicy    = "fail"      // fail policy applied: "open" or "closed"
	LogBreaker   = "breaker"   // breaker state after a change
	LogPrefixes  = "prefixes"  // number of prefixes in a request
	LogSource    = "source"    // verdict source
	LogVersion   = "version"   // database version
	LogEntries   = "entries"   // database entries
	LogBadLines  = "bad_lines" // feed lines that could not be parsed
	LogFile      = "file"      // feed file (path relative to the feed directory)
	LogLine      = "line"      // line number in a feed file
	LogRole      = "role"      // repserver role
	LogAddr      = "addr"      // listen or upstream address
	LogElapsed   = "elapsed"   // duration of an operation
	LogStatus    = "status"    // HTTP status
	LogFrom      = "from"      // version a mirror updates from
	LogFull      = "full"      // whether an update is a full download
	LogUpdate    = "update"    // what an update request got: current, incremental or full
	LogTLS       = "tls"       // whether a listener serves TLS
	LogMode      = "mode"      // client mode: "ksn" or "kpsn"
	LogBackend   = "backend"   // client backend: cloud server, private server, embedded database
	LogFeed      = "feed"      // name of a feed source (feeds.toml)
	LogFailures  = "failures"  // consecutive failed downloads of a feed
	LogNext      = "next"      // when a feed is next downloaded
	LogBytes     = "bytes"     // size of a downloaded feed; bytes of a mirror update sent or received
	LogOutcome   = "outcome"   // of a feed download: updated, unchanged, failed
)
