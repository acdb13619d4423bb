// Package certs holds Picket's interception certificate authority: it loads
// the CA from PEM files (or generates one on first start), mints short-lived
// leaf certificates per host name, and keeps them in a bounded cache.
//
// A leaf request flows like this:
//
//	host ──normalize──▶ cache (LRU) ──hit, fresh──▶ *tls.Certificate
//	                        │
//	                        └─miss or due for renewal──▶ singleflight ──▶ mint ──▶ cache
//
// Every leaf carries the same ECDSA P-256 key, generated when the Authority
// is created, so minting costs one signature by the CA key and no key
// generation. The CA key may be RSA or ECDSA; leaves are ECDSA either way.
//
// The package knows nothing of goproxy: Authority.Fetch has the shape of
// goproxy's certificate-storage hook, so the proxy package can plug it in
// without this package importing goproxy.
package certs
