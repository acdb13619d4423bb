package certs

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// benchMint measures a.mint alone: one leaf signed per iteration, for a new
// host each time, with no cache or singleflight in the way.
func benchMint(b *testing.B, a *Authority) {
	b.ReportAllocs()
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := a.mint("h"+strconv.Itoa(i)+".example.com", netip.Addr{}, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeafMintCold is the cost of minting a leaf with an ECDSA P-256 CA.
func BenchmarkLeafMintCold(b *testing.B) {
	benchMint(b, newAuthority(b, Config{}))
}

// BenchmarkLeafMintColdRSACA is the cost of minting an ECDSA leaf with an
// RSA-2048 CA, as with a corporate RSA CA.
func BenchmarkLeafMintColdRSACA(b *testing.B) {
	ca := signCert(b, caTemplate("RSA CA", time.Now()), nil, &rsaKey().PublicKey, rsaKey())
	cfg := writePair(b, b.TempDir(), certPEM(ca), pkcs8PEM(b, rsaKey()))
	benchMint(b, mustLoad(b, cfg))
}

// BenchmarkLeafCacheHit is the cost of Leaf for a host in the cache, port
// and all, as the proxy calls it for every CONNECT.
func BenchmarkLeafCacheHit(b *testing.B) {
	a := newAuthority(b, Config{})
	if _, err := a.Leaf("www.example.com:443"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Leaf("www.example.com:443"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeafCacheHitParallel is BenchmarkLeafCacheHit from all
// GOMAXPROCS goroutines at once, over a few hosts (the LRU has one lock).
func BenchmarkLeafCacheHitParallel(b *testing.B) {
	a := newAuthority(b, Config{})
	hosts := []string{"a.example:443", "b.example:443", "c.example:443", "d.example:443"}
	for _, h := range hosts {
		if _, err := a.Leaf(h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if _, err := a.Leaf(hosts[i%len(hosts)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
