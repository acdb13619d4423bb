package proxy

import (
	"strconv"
	"time"
)

// squidLine formats the exchange as one line of Squid's native access.log
// format ("squid" logformat:
// %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt), so that
// SARG, Calamaris and SIEM parsers for Squid read Picket's log. Differences:
// %<st counts body bytes only, and %<a is the host name asked for, not the
// address dialled.
func squidLine(buf []byte, x *exchange, now time.Time, withQuery bool) []byte {
	ms := now.UnixMilli()
	buf = strconv.AppendInt(buf, ms/1000, 10)
	buf = append(buf, '.')
	buf = appendPadded(buf, ms%1000, 3, '0')
	buf = append(buf, ' ')
	buf = appendPadded(buf, now.Sub(x.start).Milliseconds(), 6, ' ')
	buf = append(buf, ' ')
	buf = append(buf, x.req.Client.String()...)
	buf = append(buf, ' ')
	buf = append(buf, squidResult(x)...)
	buf = append(buf, '/')
	buf = appendPadded(buf, int64(x.status), 3, '0')
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, x.bytesOut.Load(), 10)
	buf = append(buf, ' ')
	buf = append(buf, x.req.Method...)
	buf = append(buf, ' ')
	switch {
	case x.req.URL == nil:
		buf = append(buf, '-')
	case x.req.Connect:
		buf = append(buf, x.req.URL.Host...) // Squid logs CONNECT targets as host:port
	default:
		buf = append(buf, logURL(x.req.URL, withQuery)...)
	}
	buf = append(buf, ' ')
	buf = append(buf, userOrDash(x.req.User)...)
	buf = append(buf, ' ')
	if x.decision.Action == Allow && x.errKind == "" && x.req.URL != nil {
		buf = append(buf, "HIER_DIRECT/"...)
		buf = append(buf, x.req.URL.Hostname()...)
	} else {
		buf = append(buf, "HIER_NONE/-"...)
	}
	buf = append(buf, ' ')
	if x.ctype != "" {
		buf = append(buf, x.ctype...)
	} else {
		buf = append(buf, '-')
	}
	return append(buf, '\n')
}

// squidResult is Squid's result code for the exchange.
func squidResult(x *exchange) string {
	switch {
	case x.decision.Action == Block, x.decision.Action == Warn:
		return "TCP_DENIED"
	case x.req.Connect:
		return "TCP_TUNNEL"
	case x.errKind != "":
		return "NONE"
	}
	return "TCP_MISS"
}

// appendPadded appends n right-aligned to width with pad.
func appendPadded(buf []byte, n int64, width int, pad byte) []byte {
	var tmp [20]byte
	d := strconv.AppendInt(tmp[:0], n, 10)
	for i := len(d); i < width; i++ {
		buf = append(buf, pad)
	}
	return append(buf, d...)
}
