package scanner

import (
	"bytes"
	"errors"
	"io"
)

// The PDF scanner's lexer (activepdf.go): tokens read from the document
// within the inflation budget, without holding strings or streams.

// pdf token kinds.
type pdfTok uint8

const (
	tokEOF pdfTok = iota
	tokName
	tokInt
	tokOther // a real number, a string, a hex string, a stray delimiter
	tokKeyword
	tokDictOpen
	tokDictClose
	tokArrayOpen
	tokArrayClose
)

// errBudget ends the inflation of object streams past the budget.
var errBudget = errors.New("inflate budget spent")

type budgetReader struct {
	r   io.Reader
	n   *int64
	err error
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if *b.n <= 0 {
		b.err = errBudget
		return 0, errBudget
	}
	if int64(len(p)) > *b.n {
		p = p[:*b.n]
	}
	n, err := b.r.Read(p)
	*b.n -= int64(n)
	if err != nil {
		b.err = err
	}
	return n, err
}

// skipTo discards input up to and including marker.
func (p *pdfScan) skipTo(marker []byte) {
	for {
		buf, err := p.br.Peek(p.br.Size())
		if len(buf) == 0 {
			return
		}
		if i := bytes.Index(buf, marker); i >= 0 {
			p.discard(i + len(marker))
			return
		}
		if err != nil { // the end: nothing more to find
			p.discard(len(buf))
			return
		}
		p.discard(len(buf) - len(marker) + 1)
	}
}

func (p *pdfScan) discard(n int) {
	m, _ := p.br.Discard(n)
	p.pos += int64(m)
}

func (p *pdfScan) readByte() (byte, bool) {
	c, err := p.br.ReadByte()
	if err != nil {
		if p.lexErr == nil {
			p.lexErr = err
		}
		return 0, false
	}
	p.pos++
	return c, true
}

func (p *pdfScan) unread() {
	if p.br.UnreadByte() == nil {
		p.pos--
	}
}

func pdfSpace(c byte) bool {
	return c == 0 || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' '
}

func pdfDelim(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '[', ']', '{', '}', '/', '%':
		return true
	}
	return false
}

// next returns the next token: for a name its decoded bytes (truncated to
// 32; a longer name matches nothing we look for, so it is returned empty),
// for an integer its value.
func (p *pdfScan) next() (pdfTok, []byte, int64) {
	for {
		c, ok := p.readByte()
		if !ok {
			return tokEOF, nil, 0
		}
		if pdfSpace(c) {
			continue
		}
		// In an object stream, objects start at the offsets of its index.
		for len(p.objQueue) > 0 && p.pos-1 >= p.objQueue[0].start {
			p.curObj, p.objStart = p.objQueue[0].num, true
			p.objQueue = p.objQueue[1:]
			p.stack = p.stack[:0]
		}
		switch c {
		case '%':
			p.skipLine()
		case '/':
			return tokName, p.lexName(), 0
		case '(':
			p.skipString()
			return tokOther, nil, 0
		case '<':
			if c2, ok := p.readByte(); ok && c2 == '<' {
				return tokDictOpen, nil, 0
			} else if ok {
				p.unread()
			}
			p.skipHex()
			return tokOther, nil, 0
		case '>':
			if c2, ok := p.readByte(); ok && c2 == '>' {
				return tokDictClose, nil, 0
			} else if ok {
				p.unread()
			}
			return tokOther, nil, 0
		case '[':
			return tokArrayOpen, nil, 0
		case ']':
			return tokArrayClose, nil, 0
		case ')', '{', '}':
			return tokOther, nil, 0
		default:
			return p.lexRegular(c)
		}
	}
}

func (p *pdfScan) skipLine() {
	for {
		c, ok := p.readByte()
		if !ok || c == '\n' || c == '\r' {
			return
		}
	}
}

// lexName reads a name after its "/", decoding #xx escapes.
func (p *pdfScan) lexName() []byte {
	n := 0
	for {
		c, ok := p.readByte()
		if !ok {
			break
		}
		if pdfSpace(c) || pdfDelim(c) {
			p.unread()
			break
		}
		if c == '#' {
			if h, err := p.br.Peek(2); err == nil && unhex(h[0]) >= 0 && unhex(h[1]) >= 0 {
				c = byte(unhex(h[0])<<4 | unhex(h[1]))
				p.discard(2)
			}
		}
		if n < len(p.nameBuf) {
			p.nameBuf[n] = c
		}
		n++
	}
	if n > len(p.nameBuf) {
		return nil // longer than any name looked for
	}
	return p.nameBuf[:n]
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// skipString skips a literal string after its "(": nested parentheses
// balance, a backslash escapes the next byte.
func (p *pdfScan) skipString() {
	depth := 1
	for depth > 0 {
		c, ok := p.readByte()
		if !ok {
			return
		}
		switch c {
		case '\\':
			if _, ok := p.readByte(); !ok {
				return
			}
		case '(':
			depth++
		case ')':
			depth--
		}
	}
}

func (p *pdfScan) skipHex() {
	for {
		c, ok := p.readByte()
		if !ok || c == '>' {
			return
		}
	}
}

// lexRegular reads an integer, a real number or a keyword starting with c.
func (p *pdfScan) lexRegular(c byte) (pdfTok, []byte, int64) {
	n, digits, other := 0, 0, false
	var v int64
	neg := c == '-'
	for {
		if n < len(p.wordBuf) {
			p.wordBuf[n] = c
		}
		switch {
		case c >= '0' && c <= '9':
			digits++
			if v < 1<<40 {
				v = v*10 + int64(c-'0')
			}
		case (c == '+' || c == '-') && n == 0:
		default:
			other = true
		}
		n++
		var ok bool
		if c, ok = p.readByte(); !ok {
			break
		}
		if pdfSpace(c) || pdfDelim(c) {
			p.unread()
			break
		}
	}
	switch {
	case !other && digits > 0:
		if neg {
			v = -v
		}
		return tokInt, nil, v
	case n > len(p.wordBuf):
		p.keyword = nil
	default:
		p.keyword = p.wordBuf[:n]
	}
	if c := p.wordBuf[0]; c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.' {
		return tokOther, nil, 0 // a real number
	}
	return tokKeyword, nil, 0
}
