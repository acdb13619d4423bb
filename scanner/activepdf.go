package scanner

import (
	"bufio"
	"cmp"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"slices"
)

// pdfScan finds active content in a PDF in one streaming pass: a small
// lexer (names with #xx escapes decoded, strings and comments skipped,
// stream data skipped) and a parser that keeps only the dictionaries being
// read. Object streams (/Type /ObjStm), unfiltered or FlateDecode, are
// inflated as they are read, within a budget of bytes, and lexed the same
// way; no stream is held in memory.
//
// /JavaScript, /JS, /Launch, /EmbeddedFile(s) and /RichMedia count wherever
// they appear as names (a name is never text: text is in strings). An
// /OpenAction counts when it is an action that reaches outside the document
// or runs something (pdfActiveActions), written in place or as a reference
// to an object that is one; a destination (open at page 1, fit to width),
// a GoTo or a Named action is not active content.
type pdfScan struct {
	found      Active
	budget     int64  // bytes that may still be inflated
	incomplete string // what could not be read, for Result.Incomplete

	br       *bufio.Reader
	pos      int64 // bytes consumed by the lexer
	nested   bool  // lexing an object stream's content
	lexErr   error // the first read error
	nameBuf  [32]byte
	wordBuf  [16]byte
	keyword  []byte // the last keyword token
	ints     [2]int64
	nInts    int // how many of ints are the tokens just before
	stack    []pdfFrame
	closed   pdfFrame // the outermost dictionary closed last (a stream's)
	objQueue []objAt  // an object stream's objects, by offset
	curObj   uint32
	objStart bool // the next token starts object curObj
	openVal  bool // the token just read was the key /OpenAction

	openRefs   []uint32            // objects /OpenAction refers to
	actionObjs map[uint32]struct{} // objects that are active actions
}

// objAt is an object of an object stream and where it starts.
type objAt struct {
	num   uint32
	start int64
}

// pdfFrame is a dictionary or array being read.
type pdfFrame struct {
	dict       bool
	key        pdfKey // the dictionary's last key
	expectVal  bool   // the key's value is next
	objStm     bool   // /Type /ObjStm
	filters    int    // names in /Filter
	flate      bool   // /Filter is FlateDecode, alone
	n, first   int64  // an object stream's /N and /First, -1 if not given
	action     bool   // /S is one of pdfActiveActions
	openAction bool   // the value of /OpenAction
	obj        uint32 // the object this dictionary is, +1 (0: none)
}

// pdfKey is a dictionary key the parser looks at; the others are keyOther.
type pdfKey uint8

const (
	keyOther pdfKey = iota
	keyType
	keyFilter
	keyS
	keyN
	keyFirst
	keyOpenAction
)

func pdfKeyOf(n []byte) pdfKey {
	switch string(n) {
	case "Type":
		return keyType
	case "Filter":
		return keyFilter
	case "S":
		return keyS
	case "N":
		return keyN
	case "First":
		return keyFirst
	case "OpenAction":
		return keyOpenAction
	}
	return keyOther
}

// pdfActiveActions are the action types that reach outside the document
// or run something; GoTo, Named (next page, ...), Thread, Hide,
// SetOCGState, Trans and the like only move around the document or change
// its view.
var pdfActiveActions = map[string]bool{
	"GoToR": true, "GoToE": true, "Launch": true, "URI": true, "SubmitForm": true, "ImportData": true,
	"JavaScript": true, "Rendition": true, "Sound": true, "Movie": true, "RichMediaExecute": true,
}

const (
	maxPDFRefs    = 16      // /OpenAction references resolved
	maxPDFActions = 1 << 16 // action objects remembered
	maxPDFDepth   = 64      // nested dictionaries and arrays tracked
	maxObjStmObjs = 1 << 16 // objects of one object stream told apart
)

func newPDFScan(budget int64) *pdfScan {
	return &pdfScan{budget: budget, actionObjs: map[uint32]struct{}{}}
}

// scan reads r to its end and returns what it found.
func (p *pdfScan) scan(r io.Reader) Active {
	p.br = bufio.NewReaderSize(r, 32<<10)
	p.parse()
	for _, ref := range p.openRefs {
		if _, ok := p.actionObjs[ref]; ok {
			p.found |= ActivePDFOpenAction
		}
	}
	return p.found
}

// parse reads tokens until the end of p.br.
func (p *pdfScan) parse() {
	for {
		tok, name, iv := p.next()
		switch tok {
		case tokEOF:
			return
		case tokName:
			p.name(name)
		case tokInt:
			if f := p.top(); f != nil && f.dict && f.expectVal {
				switch f.key {
				case keyN:
					f.n = iv
				case keyFirst:
					f.first = iv
				}
			}
			p.value()
			p.ints[0], p.ints[1] = p.ints[1], iv
			p.nInts = min(p.nInts+1, 2)
			continue
		case tokKeyword:
			p.keywordTok()
		case tokDictOpen, tokArrayOpen:
			p.open(tok == tokDictOpen)
		case tokDictClose, tokArrayClose:
			p.close()
		case tokOther:
			p.value()
		}
		p.nInts = 0
	}
}

// top is the innermost frame, nil outside any.
func (p *pdfScan) top() *pdfFrame {
	if len(p.stack) == 0 {
		return nil
	}
	return &p.stack[len(p.stack)-1]
}

// value notes that a value, or the start of one, was read.
func (p *pdfScan) value() {
	p.openVal, p.objStart = false, false
	if f := p.top(); f != nil && f.dict {
		f.expectVal = false
	}
}

func (p *pdfScan) name(n []byte) {
	switch string(n) {
	case "JavaScript", "JS":
		p.found |= ActivePDFJavaScript
	case "Launch":
		p.found |= ActivePDFLaunch
	case "EmbeddedFile", "EmbeddedFiles":
		p.found |= ActivePDFEmbeddedFile
	case "RichMedia":
		p.found |= ActivePDFRichMedia
	}
	f := p.top()
	if f != nil && f.dict && !f.expectVal { // a key
		f.key, f.expectVal = pdfKeyOf(n), true
		p.openVal, p.objStart = f.key == keyOpenAction, false
		return
	}
	// A value: of a dictionary's key, or in an array that is one.
	if f != nil && !f.dict && len(p.stack) >= 2 && p.stack[len(p.stack)-2].dict {
		f = &p.stack[len(p.stack)-2]
	}
	if f != nil && f.dict {
		switch f.key {
		case keyType:
			f.objStm = f.objStm || string(n) == "ObjStm"
		case keyFilter:
			f.filters++
			f.flate = f.filters == 1 && (string(n) == "FlateDecode" || string(n) == "Fl")
		case keyS:
			f.action = pdfActiveActions[string(n)]
		}
	}
	p.value()
}

func (p *pdfScan) open(dict bool) {
	fr := pdfFrame{dict: dict, n: -1, first: -1}
	if dict {
		fr.openAction = p.openVal // an array there is a destination: not active
		if p.objStart {
			fr.obj = p.curObj + 1
		}
	}
	p.value()
	if len(p.stack) >= maxPDFDepth {
		p.stack = p.stack[:0] // malformed: start again
	}
	p.stack = append(p.stack, fr)
}

func (p *pdfScan) close() {
	f := p.top()
	if f == nil {
		p.value()
		return
	}
	if f.dict && f.action {
		if f.openAction {
			p.found |= ActivePDFOpenAction
		}
		if f.obj > 0 && len(p.actionObjs) < maxPDFActions {
			p.actionObjs[f.obj-1] = struct{}{}
		}
	}
	if len(p.stack) == 1 {
		p.closed = *f
	}
	p.stack = p.stack[:len(p.stack)-1]
	p.value()
}

func (p *pdfScan) keywordTok() {
	switch string(p.keyword) {
	case "R":
		f := p.top()
		if p.nInts == 2 && f != nil && f.dict && f.key == keyOpenAction && len(p.openRefs) < maxPDFRefs && objNum(p.ints[0]) {
			p.openRefs = append(p.openRefs, uint32(p.ints[0]))
		}
		p.value()
	case "obj":
		p.stack, p.closed = p.stack[:0], pdfFrame{}
		p.value()
		if p.nInts == 2 && objNum(p.ints[0]) {
			p.curObj, p.objStart = uint32(p.ints[0]), true
		}
	case "endobj":
		p.stack = p.stack[:0]
		p.value()
	case "stream":
		p.stream()
		p.stack = p.stack[:0]
		p.value()
	default:
		p.value()
	}
}

func objNum(v int64) bool { return v >= 0 && v <= 1<<32-1 }

// stream reads a stream's data, after the keyword "stream": an object
// stream's objects are lexed (inflated first if need be); any other data
// is skipped up to "endstream".
func (p *pdfScan) stream() {
	d := p.closed
	p.closed = pdfFrame{}
	// The data starts after an end of line.
	if c, ok := p.readByte(); ok {
		switch {
		case c == '\r':
			if c2, ok := p.readByte(); ok && c2 != '\n' {
				p.unread()
			}
		case c != '\n':
			p.unread()
		}
	}
	if d.dict && d.objStm && !p.nested {
		if d.filters == 0 {
			// Unfiltered: its objects are lexed in place, up to the
			// "endstream" that ends them.
			p.objectIndex(d, p.pos)
			return
		}
		p.objectStream(d)
	}
	p.skipTo([]byte("endstream"))
}

// objectStream inflates and lexes a FlateDecode object stream's content.
func (p *pdfScan) objectStream(d pdfFrame) {
	switch {
	case !d.flate:
		p.note("an object stream in an encoding other than FlateDecode was not read")
		return
	case p.budget <= 0:
		p.note(fmt.Sprintf("object streams past %d bytes inflated were not read", maxPDFInflated))
		return
	}
	zr, err := zlib.NewReader(p.br) // a bufio.Reader: zlib reads no further than its end
	if err != nil {
		p.note("an object stream could not be inflated")
		return
	}
	defer zr.Close()
	lim := &budgetReader{r: zr, n: &p.budget}
	sub := &pdfScan{actionObjs: p.actionObjs, nested: true, br: bufio.NewReaderSize(lim, 4<<10)}
	sub.objectIndex(d, 0)
	sub.parse()
	p.found |= sub.found
	for _, ref := range sub.openRefs {
		if len(p.openRefs) < maxPDFRefs {
			p.openRefs = append(p.openRefs, ref)
		}
	}
	switch {
	case errors.Is(lim.err, errBudget):
		p.note(fmt.Sprintf("object streams past %d bytes inflated were not read", maxPDFInflated))
	case sub.lexErr != nil && sub.lexErr != io.EOF:
		p.note("an object stream could not be inflated")
	}
}

// objectIndex reads an object stream's header, N pairs of object number
// and offset from /First, base being where the content starts, so that its
// objects can be told apart.
func (p *pdfScan) objectIndex(d pdfFrame, base int64) {
	if d.n <= 0 || d.first < 0 {
		return
	}
	for i := int64(0); i < d.n; i++ {
		num, ok1 := p.nextInt()
		off, ok2 := p.nextInt()
		if !ok1 || !ok2 {
			break
		}
		if len(p.objQueue) < maxObjStmObjs && objNum(num) && off >= 0 {
			p.objQueue = append(p.objQueue, objAt{uint32(num), base + d.first + off})
		}
	}
	slices.SortFunc(p.objQueue, func(a, b objAt) int { return cmp.Compare(a.start, b.start) })
}

func (p *pdfScan) nextInt() (int64, bool) {
	tok, _, v := p.next()
	return v, tok == tokInt
}

func (p *pdfScan) note(msg string) {
	if p.incomplete == "" {
		p.incomplete = msg
	}
}
