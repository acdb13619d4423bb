package server

import (
	"bufio"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/countio"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// The update protocol (docs/protocol.md), on the model of Safe Browsing
// v5's hash lists: a mirror asks GET /v1/update?from=TOKEN with the opaque
// version token of its copy (none the first time) and gets one of
//
//   - "up to date": its token again, no changes;
//   - the changes since its version (JSON: added entries, removed hashes),
//     when the cloud still has them;
//   - the whole database: the compiled file itself when the mirror accepts
//     MediaTypeDB (a mirror maps it as it comes), else JSON with full set.
//
// Every answer carries the new token, the checksum of the database the
// mirror must end with, and the minimum wait before its next request.

// MediaTypeDB is the media type of a whole database file in an update.
const MediaTypeDB = "application/vnd.picket.db"

// The headers of an update that is a database file.
const (
	HeaderVersion  = "Picket-Version"
	HeaderChecksum = "Picket-Checksum"
	HeaderMinWait  = "Picket-Min-Wait"
)

// UpdateResponse is the JSON reply to GET /v1/update?from=TOKEN. (The
// server writes it as a stream and the mirror reads it as one: the arrays
// are never held whole.)
type UpdateResponse struct {
	// Version is the opaque token of the database this update brings the
	// mirror to; the mirror sends it back as from=.
	Version string `json:"version"`
	// Full is set when Added is the whole database (the mirror's version
	// was unknown or too old); otherwise Added and Removed are changes.
	Full bool `json:"full"`
	// Checksum is the hex SHA-256 of the resulting database (db.Checksum):
	// the mirror verifies it before swapping, and downloads the whole
	// database when it does not match.
	Checksum string `json:"checksum"`
	// MinWait is how many seconds the mirror must wait before its next
	// update request.
	MinWait int64                  `json:"min_wait"`
	Added   []reputation.WireMatch `json:"added"`
	Removed []string               `json:"removed"`
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	s.updates.Add(1)
	d := s.hist.published.Load()
	token := versionToken(d.Version())
	sum := d.Checksum()
	head := UpdateResponse{Version: token, Checksum: hex.EncodeToString(sum[:]), MinWait: int64(s.cfg.MinWait / time.Second)}
	from := r.URL.Query().Get("from")
	var c db.Changes
	kind := "full"
	switch {
	case from == token:
		kind = "current"
	case from != "":
		if v, ok := parseToken(from); ok {
			var err error
			if c, ok, err = s.hist.since(v, d.Version()); err != nil {
				s.log.Error().Err(err).Msg("composing the changes for a mirror failed; sending the database")
			} else if ok {
				kind = "incremental"
			}
		}
	}
	cw := &countio.Writer{W: w}
	var entries int
	var err error
	if kind == "full" && accepts(r, MediaTypeDB) {
		h := w.Header()
		h.Set("Content-Type", MediaTypeDB)
		h.Set("Cache-Control", "no-store")
		h.Set(HeaderVersion, token)
		h.Set(HeaderChecksum, head.Checksum)
		h.Set(HeaderMinWait, strconv.FormatInt(head.MinWait, 10))
		h.Set("Content-Length", strconv.Itoa(d.Bytes()))
		entries, err = d.Len(), d.WriteTo(cw, token)
	} else {
		head.Full = kind == "full"
		entries, err = s.writeUpdate(cw, r, head, c, d)
	}
	s.sent.entries.Add(uint64(entries))
	s.sent.bytes.Add(uint64(cw.N))
	switch kind {
	case "current":
		s.sent.current.Add(1)
	case "incremental":
		s.sent.incremental.Add(1)
	default:
		s.sent.full.Add(1)
	}
	ev := s.log.Info()
	if err != nil {
		ev = s.log.Warn().Err(err)
	}
	ev.Str(reputation.LogFrom, from).Str(reputation.LogVersion, token).Str(reputation.LogUpdate, kind).
		Int(reputation.LogEntries, entries).Int64(reputation.LogBytes, cw.N).Msg("update served")
}

// writeUpdate streams the JSON answer: head, then the changes c, or all of
// d when head.Full. It returns the entries written.
func (s *Server) writeUpdate(cw *countio.Writer, r *http.Request, head UpdateResponse, c db.Changes, d *db.DB) (int, error) {
	h := cw.W.(http.ResponseWriter).Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	var out io.Writer = cw
	var zw *gzip.Writer
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		zw = gzip.NewWriter(cw)
		out = zw
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	fmt.Fprintf(bw, `{"version":%q,"full":%t,"checksum":%q,"min_wait":%d,"added":[`, head.Version, head.Full, head.Checksum, head.MinWait)
	n := 0
	var err error
	sep := func() {
		if n > 0 {
			bw.WriteByte(',')
		}
		n++
	}
	entry := func(e db.Entry) {
		b, merr := json.Marshal(wireMatch(e.Hash, e.Verdict, 0))
		if merr != nil && err == nil {
			err = merr
		}
		sep()
		bw.Write(b)
	}
	switch {
	case head.Full:
		d.All(entry)
	case c.Added != nil:
		c.Added.All(entry)
	}
	bw.WriteString(`],"removed":[`)
	added := n
	n = 0
	if !head.Full && c.Removed != nil {
		c.Removed.All(func(e db.Entry) {
			sep()
			bw.WriteByte('"')
			bw.WriteString(e.Hash.String())
			bw.WriteByte('"')
		})
	}
	bw.WriteString("]}\n")
	if ferr := bw.Flush(); ferr != nil && err == nil {
		err = ferr
	}
	if zw != nil {
		if cerr := zw.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return added + n, err
}

// accepts reports whether r's Accept header lists the media type (with a
// quality above zero).
func accepts(r *http.Request, mediaType string) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		params := strings.Split(part, ";")
		if !strings.EqualFold(strings.TrimSpace(params[0]), mediaType) {
			continue
		}
		for _, p := range params[1:] {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(k, "q") {
				if q, err := strconv.ParseFloat(v, 64); err != nil || q <= 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}
