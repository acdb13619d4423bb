// Package countio counts the bytes that pass through a reader or a writer:
// a download's size as it streams, an archive member's compressed bytes
// against its expansion, a served update's length. It is internal because
// it is a helper that several rooms share, not a room of its own.
package countio

import "io"

// Reader counts the bytes read from R in N.
type Reader struct {
	R io.Reader
	N int64
}

func (c *Reader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

// Writer counts the bytes written to W in N.
type Writer struct {
	W io.Writer
	N int64
}

func (c *Writer) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
