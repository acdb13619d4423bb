package proxy

import "github.com/rs/zerolog"

// Field names of the access log and of the application log lines written by
// this package. Keep them stable: administrators' tools parse them.
const (
	fClient     = "client"
	fUser       = "user"
	fGroups     = "groups"
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
	fEngine     = "engine"
	fPartial    = "scan_partial"
	fActive     = "active_content"
	// The upload's scan (upload.go), beside the download's.
	fUploadType    = "upload_type"
	fUploadResult  = "upload_result"
	fUploadThreat  = "upload_threat"
	fUploadEngine  = "upload_engine"
	fUploadPartial = "upload_partial"
	fIncident      = "incident"
	fReason        = "reason"
	fError         = "error"
	fKind          = "kind"
	fComplete      = "complete"
	fTunnel        = "tunnel"
	fListen        = "listen"
	fParent        = "parent"
)

// scanFieldNames names a scan's fields in the access log: a download's and
// an upload's sit side by side on one line. active "" leaves Active out.
type scanFieldNames struct{ typ, result, threat, engine, partial, active string }

var (
	downloadFields = scanFieldNames{fScanType, fScanResult, fThreat, fEngine, fPartial, fActive}
	uploadFields   = scanFieldNames{fUploadType, fUploadResult, fUploadThreat, fUploadEngine, fUploadPartial, ""}
)

// scanFields adds sc (nil: nothing) to ev under the names f.
func scanFields(ev *zerolog.Event, sc *ScanEvent, f scanFieldNames) *zerolog.Event {
	if sc == nil {
		return ev
	}
	ev = ev.Str(f.typ, sc.Type).Str(f.result, sc.Result)
	if sc.Threat != "" {
		ev = ev.Str(f.threat, sc.Threat)
	}
	if sc.Engine != "" {
		ev = ev.Str(f.engine, sc.Engine)
	}
	if sc.Partial {
		ev = ev.Bool(f.partial, true)
	}
	if sc.Active != "" && f.active != "" {
		ev = ev.Str(f.active, sc.Active)
	}
	return ev
}
