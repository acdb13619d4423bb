package stats

// Log field names of this package. Nothing personal is ever logged: only
// switches, counts, hashes of samples and who changed a switch.
const (
	LogComponent     = "component"     // "participation", "intake"
	LogMode          = "mode"          // "ksn" or "kpsn"
	LogParticipation = "participation" // the statistics switch
	LogSamples       = "samples"       // the samples switch
	LogWas           = "was"           // the previous value of a switch
	LogBy            = "by"            // who changed a switch, and from where
	LogSeq           = "seq"           // batch sequence number
	LogQueued        = "queued"        // entries waiting in a queue
	LogDropped       = "dropped"       // entries dropped from a full queue
	LogSHA256        = "sha256"        // a sample's hash
	LogPartial       = "partial"       // whether a sample is a file's first bytes only
	LogType          = "type"          // a sample's true file type
	LogReason        = "reason"        // a sample's active content
	LogClients       = "clients"       // distinct clients that downloaded a candidate sample
	LogStatus        = "status"        // HTTP status of the cloud's answer
	LogRetryIn       = "retry_in"      // backoff before the next try
	LogInstallation  = "installation"  // the random installation identifier
)
