package scanner

import (
	"context"
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
		name := in.member(partName(p, n))
		in.parts = append(in.parts, name)
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

// partPath is the path under which form gave the part at pos (from 1) to
// the local checks, or a new one if it did not get that far.
func (in *inspector) partPath(p *multipart.Part, pos int) string {
	if pos <= len(in.parts) {
		return in.parts[pos-1]
	}
	return in.member(partName(p, pos))
}

// maxFormFiles bounds the files of one form that the engines are asked
// about one by one.
const maxFormFiles = 16

// formEngines asks the engines about each file of an uploaded form (a part
// with a file name, up to maxFormFiles) as a body of its own, named and
// typed as the part says. Given the whole form, an engine sees text with the
// file somewhere inside, where a signature of the file's hash or of its
// structure does not match: clamd does not open multipart/form-data, and
// c-icap's virus_scan hands the request body to clamd as it is. Each file is
// held in a spool of its own while it is asked about; the first detection
// ends the walk.
func (sc *Scan) formEngines(ctx context.Context, res *Result, in *inspector, r io.Reader, boundary string) error {
	mr := multipart.NewReader(ctxReader{ctx, r}, boundary)
	for pos, files := 1, 0; files < maxFormFiles; pos++ {
		p, err := mr.NextRawPart()
		if err != nil {
			return ctxErr(ctx) // the end, or a broken form (noted by form)
		}
		name := in.partPath(p, pos)
		if p.FileName() == "" || in.good[name] {
			continue
		}
		files++
		sp := sc.s.newSpool()
		h := NewHasher()
		_, err = io.Copy(io.MultiWriter(sp, h), p)
		if err != nil || sp.Size() == 0 {
			sp.Close()
			if err != nil {
				in.note(fmt.Sprintf("form part %s not sent to the engines: %v", name, err))
				return ctxErr(ctx)
			}
			continue
		}
		m := sc.engineMeta(sp.Size())
		m.Name, m.ContentType = p.FileName(), p.Header.Get("Content-Type")
		sums := h.Sums()
		out := sc.askEngines(ctx, sums.SHA256, m, nil, sp, sp.Size())
		sp.Close()
		if err := sc.applyVerdicts(res, in, out, name, sums); err != nil {
			return err
		}
		if in.decided(sc.s) {
			return nil
		}
	}
	return nil
}

// ctxErr is ctx's error, wrapped, or nil.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("scanner: %w", err)
	}
	return nil
}
