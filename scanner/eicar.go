package scanner

import "bytes"

// eicar is the EICAR anti-malware test file's 68 characters.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// EICARName is the threat name reported for the EICAR test file.
const EICARName = "EICAR-Test-File"

// eicarMaxSize is the largest a file may be and still be the test file.
const eicarMaxSize = 128

// IsEICAR reports whether a file of size bytes whose first bytes are head is
// the EICAR test file as its specification defines it: the 68 characters at
// the very start, optionally followed by whitespace only (space, tab, CR, LF,
// Ctrl-Z), 128 bytes in all at most. head must hold the whole file for a
// match (HeadSize bytes always suffice).
func IsEICAR(head []byte, size int64) bool {
	if size < int64(len(eicar)) || size > eicarMaxSize || int64(len(head)) < size {
		return false
	}
	if !bytes.HasPrefix(head, []byte(eicar)) {
		return false
	}
	for _, c := range head[len(eicar):size] {
		switch c {
		case ' ', '\t', '\r', '\n', 0x1a:
		default:
			return false
		}
	}
	return true
}
