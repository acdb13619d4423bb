package pac

import (
	"testing"

	"github.com/dop251/goja"
)

// pacUtils are the PAC helper functions as browsers define them (after
// Mozilla's ascii_pac_utils.js, which Chromium's pac_js_library matches).
// dnsResolve and myIpAddress come from the harness.
const pacUtils = `
function dnsDomainIs(host, domain) {
	return (host.length >= domain.length &&
		host.substring(host.length - domain.length) == domain);
}
function dnsDomainLevels(host) { return host.split('.').length - 1; }
function isValidIpAddress(ipchars) {
	var matches = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ipchars);
	if (matches == null) return false;
	if (matches[1] > 255 || matches[2] > 255 || matches[3] > 255 || matches[4] > 255) return false;
	return true;
}
function convert_addr(ipchars) {
	var bytes = ipchars.split('.');
	return ((bytes[0] & 0xff) << 24) | ((bytes[1] & 0xff) << 16) |
		((bytes[2] & 0xff) << 8) | (bytes[3] & 0xff);
}
function isInNet(ipaddr, pattern, maskstr) {
	if (!isValidIpAddress(pattern) || !isValidIpAddress(maskstr)) return false;
	if (!isValidIpAddress(ipaddr)) {
		ipaddr = dnsResolve(ipaddr);
		if (ipaddr == null) return false;
	}
	var host = convert_addr(ipaddr);
	var pat = convert_addr(pattern);
	var mask = convert_addr(maskstr);
	return ((host & mask) == (pat & mask));
}
function isPlainHostName(host) { return (host.search('\\.') == -1); }
function isResolvable(host) { return (dnsResolve(host) != null); }
function localHostOrDomainIs(host, hostdom) {
	return (host == hostdom) || (hostdom.lastIndexOf(host + '.', 0) == 0);
}
function shExpMatch(url, pattern) {
	pattern = pattern.replace(/\./g, '\\.');
	pattern = pattern.replace(/\*/g, '.*');
	pattern = pattern.replace(/\?/g, '.');
	return new RegExp('^' + pattern + '$').test(url);
}
`

// pacVM is a PAC file loaded in a JavaScript engine, with DNS answered from a
// table and every lookup counted. No real DNS is ever asked.
type pacVM struct {
	vm      *goja.Runtime
	find    goja.Callable
	dns     map[string]string
	lookups []string
}

func newPACVM(t testing.TB, script []byte, dns map[string]string) *pacVM {
	t.Helper()
	p := &pacVM{vm: goja.New(), dns: dns}
	p.vm.Set("dnsResolve", func(host string) any {
		p.lookups = append(p.lookups, host)
		if ip, ok := p.dns[host]; ok {
			return ip
		}
		return nil
	})
	p.vm.Set("myIpAddress", func() string { return "192.168.1.10" })
	if _, err := p.vm.RunString(pacUtils); err != nil {
		t.Fatalf("PAC utilities: %v", err)
	}
	if _, err := p.vm.RunScript("proxy.pac", string(script)); err != nil {
		t.Fatalf("the PAC file does not run: %v\n%s", err, script)
	}
	find, ok := goja.AssertFunction(p.vm.Get("FindProxyForURL"))
	if !ok {
		t.Fatalf("the PAC file defines no FindProxyForURL function:\n%s", script)
	}
	p.find = find
	return p
}

// call runs FindProxyForURL(url, host) and returns its answer and the names
// it resolved.
func (p *pacVM) call(t testing.TB, url, host string) (string, []string) {
	t.Helper()
	p.lookups = nil
	v, err := p.find(goja.Undefined(), p.vm.ToValue(url), p.vm.ToValue(host))
	if err != nil {
		t.Fatalf("FindProxyForURL(%q, %q): %v", url, host, err)
	}
	return v.String(), p.lookups
}
