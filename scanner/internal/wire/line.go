package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrLineTooLong is returned by ReadLine for a line over its limit.
var ErrLineTooLong = errors.New("line too long")

// ReadLine reads one line ending in delim (the delimiter and a CR before a
// LF removed) of at most limit bytes. A longer line is an error, never a
// larger buffer; end of file inside a line is io.ErrUnexpectedEOF.
func ReadLine(r *bufio.Reader, delim byte, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice(delim)
		if len(line)+len(frag) > limit+2 {
			return nil, fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, limit)
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if delim == '\n' {
				line = bytes.TrimSuffix(line, []byte{'\r'})
			}
			if len(line) > limit {
				return nil, fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, limit)
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// Quote shows at most 64 bytes of what a peer sent, for error messages.
func Quote(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%q...", b[:64])
	}
	return fmt.Sprintf("%q", b)
}
