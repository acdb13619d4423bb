package pac

// Log field names of the package's log lines.
const (
	LogFile  = "file"
	LogError = "error"
)
