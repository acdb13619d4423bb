package proxy

// Field names of the access log and of the application log lines written by
// this package. Keep them stable: administrators' tools parse them.
const (
	fClient     = "client"
	fUser       = "user"
	fMethod     = "method"
	fURL        = "url"
	fProto      = "proto"
	fHost       = "host"
	fStatus     = "status"
	fBytesIn    = "bytes_in"
	fBytesOut   = "bytes_out"
	fDuration   = "duration_ms"
	fAction     = "action"
	fVerdict    = "verdict"
	fCategory   = "category"
	fSource     = "source"
	fCached     = "cached"
	fRule       = "rule"
	fStage      = "stage"
	fScanType   = "scan_type"
	fScanResult = "scan_result"
	fThreat     = "threat"
	fIncident   = "incident"
	fReason     = "reason"
	fError      = "error"
	fKind       = "kind"
	fComplete   = "complete"
	fTunnel     = "tunnel"
	fListen     = "listen"
	fParent     = "parent"
)
