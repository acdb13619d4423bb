package scanner

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
)

// formBoundary returns the boundary of an upload whose declared type is
// multipart/form-data (or multipart/mixed, which some clients use for
// several files), "" for any other body.
func formBoundary(m Meta) string {
	if !m.Upload || !identity(m.ContentEncoding) {
		return ""
	}
	typ, params, err := mime.ParseMediaType(m.ContentType)
	if err != nil || (typ != "multipart/form-data" && typ != "multipart/mixed") {
		return ""
	}
	return params["boundary"]
}

// form inspects the parts of a multipart upload as the members of an
// archive: each part (a file a person picked, or a form field) is checked
// and, if it is an archive, opened, as a member at depth 1 named by its
// file name (else by its field name). The counts and limits of archives
// apply. A body that is not the multipart it claims to be is noted; the
// whole body has been checked as it is already.
func (in *inspector) form(r io.Reader, boundary string) {
	mr := multipart.NewReader(ctxReader{in.ctx, r}, boundary)
	in.chain = append(in.chain, "")
	defer func() { in.chain = in.chain[:len(in.chain)-1] }()
	for n := 1; ; n++ {
		p, err := mr.NextRawPart() // no Content-Transfer-Encoding decoding: browsers send none
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			in.readError("", fmt.Errorf("form: %w", err))
			return
		}
		if !in.addMember("") {
			return
		}
		name := partName(p, n)
		if err := in.stream(name, p, 1); err != nil {
			in.readError("", fmt.Errorf("form part %s: %w", name, err))
			return
		}
	}
}

// partName names a form part: its file name, else its field name, else
// its position.
func partName(p *multipart.Part, n int) string {
	name := p.FileName()
	if name == "" {
		name = p.FormName()
	}
	name = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if name == "" {
		return fmt.Sprintf("part %d", n)
	}
	return name
}
