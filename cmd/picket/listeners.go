package main

import (
	"fmt"
	"net"

	"github.com/picket-proxy/picket/admin"
	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/proxy"
	"github.com/rs/zerolog"
)

// listeners are Picket's sockets, opened before anything else.
type listeners struct {
	proxy, admin, http, https net.Listener
	// pp is the proxy listener behind the PROXY protocol, nil without it.
	pp *ppListener
}

// listen opens every configured listener; on failure it closes what it
// opened and names the key. log receives the PROXY protocol's failures.
func listen(f *config.File, log zerolog.Logger) (*listeners, error) {
	l := &listeners{}
	for _, x := range []struct {
		key, addr string
		dst       *net.Listener
	}{
		{"proxy.listen", f.Proxy.Listen, &l.proxy},
		{"admin.listen", f.Admin.Listen, &l.admin},
		{"transparent.http_listen", f.Transparent.HTTPListen, &l.http},
		{"transparent.https_listen", f.Transparent.HTTPSListen, &l.https},
	} {
		if x.addr == "" {
			continue
		}
		ln, err := proxy.Listen(x.addr, f.Proxy.TCPKeepalive.D())
		if err != nil {
			l.close()
			return nil, fmt.Errorf("%s: %w", x.key, err)
		}
		*x.dst = ln
	}
	// Behind a load balancer: the PROXY protocol header names the client
	// (proxyproto.go), so ACLs and logs see the real address.
	if from := f.Proxy.ProxyProtocolFrom; len(from) > 0 {
		pp, err := newPPListener(l.proxy, from, f.Proxy.ReadHeaderTimeout.D(), log)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("proxy.proxy_protocol_from: %w", err)
		}
		l.proxy, l.pp = pp, pp
	}
	return l, nil
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.proxy, l.admin, l.http, l.https} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// names lists the listeners for the admin status.
func (l *listeners) names() []admin.Listener {
	var out []admin.Listener
	for _, x := range []struct {
		name string
		ln   net.Listener
	}{{"proxy", l.proxy}, {"admin", l.admin}, {"transparent-http", l.http}, {"transparent-https", l.https}} {
		if x.ln != nil {
			out = append(out, admin.Listener{Name: x.name, Addr: x.ln.Addr().String()})
		}
	}
	return out
}
