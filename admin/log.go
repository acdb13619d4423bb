package admin

// Log field names of the admin server's log lines.
const (
	LogClient        = "client"
	LogMethod        = "method"
	LogPath          = "path"
	LogStatus        = "status"
	LogParticipation = "participation"
	LogSamples       = "samples"
	LogRotated       = "rotated" // the installation identifier was rotated
)
