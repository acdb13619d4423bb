package countio

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReader(t *testing.T) {
	r := &Reader{R: iotest.OneByteReader(strings.NewReader("hello, world"))}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.N != int64(len(b)) || r.N != 12 {
		t.Errorf("got N = %d after reading %d bytes, want 12", r.N, len(b))
	}
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := &Writer{W: &buf}
	for _, s := range []string{"ab", "", "cde"} {
		if _, err := io.WriteString(w, s); err != nil {
			t.Fatal(err)
		}
	}
	if w.N != 5 || buf.String() != "abcde" {
		t.Errorf("got N = %d, %q; want 5, \"abcde\"", w.N, buf.String())
	}
	// A short write counts what was written, not what was asked.
	lw := &Writer{W: &limitWriter{left: 3}}
	n, err := lw.Write([]byte("abcdef"))
	if n != 3 || lw.N != 3 || err == nil {
		t.Errorf("short write: got n = %d, N = %d, err = %v; want 3, 3 and an error", n, lw.N, err)
	}
}

type limitWriter struct{ left int }

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, io.ErrShortWrite
	}
	w.left -= len(p)
	return len(p), nil
}
