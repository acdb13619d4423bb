package main

import (
	"fmt"
	"net"

	"github.com/picket-proxy/picket/admin"
	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/proxy"
	"github.com/pires/go-proxyproto"
)

// listeners are Picket's sockets, opened before anything else.
type listeners struct {
	proxy, admin, http, https net.Listener
}

// listen opens every configured listener; on failure it closes what it
// opened and names the key.
func listen(f *config.File) (*listeners, error) {
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
	// Behind a load balancer: the PROXY protocol header names the client,
	// accepted from the configured balancers only (a header from anyone
	// else fails the connection), so ACLs and logs see the real address.
	if from := f.Proxy.ProxyProtocolFrom; len(from) > 0 {
		policy, err := proxyproto.StrictWhiteListPolicy(from)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("proxy.proxy_protocol_from: %w", err)
		}
		l.proxy = &proxyproto.Listener{Listener: l.proxy, Policy: policy, ReadHeaderTimeout: f.Proxy.ReadHeaderTimeout.D()}
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
