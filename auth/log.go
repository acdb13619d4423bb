package auth

// Log field names of the package's log lines.
const (
	LogFile   = "file"
	LogUsers  = "users"
	LogError  = "error"
	LogUser   = "user"
	LogServer = "server"
	LogDN     = "dn"
	LogFilter = "filter"
	LogGroups = "groups"
)
