package main

import (
	"encoding/pem"
	"fmt"
	"io"

	"github.com/picket-proxy/picket/certs"
	"github.com/picket-proxy/picket/config"
)

// loadCA loads the interception CA named by [tls], generating it on first
// use.
func loadCA(f *config.File) (*certs.Authority, bool, error) {
	ca, generated, err := certs.Load(certs.Config{
		CertFile:     f.Resolve(f.TLS.CACert),
		KeyFile:      f.Resolve(f.TLS.CAKey),
		CommonName:   f.TLS.CAName,
		LeafValidity: f.TLS.LeafValidity.D(),
		CacheSize:    f.TLS.CertCacheSize,
	})
	if err != nil {
		return nil, false, fmt.Errorf("%s: tls.ca_cert/tls.ca_key: %w", f.Path, err)
	}
	return ca, generated, nil
}

func cmdCA(args []string, stdout, stderr io.Writer) int {
	const synopsis = "ca export [-config FILE] [-der] | ca info [-config FILE]"
	if len(args) == 0 || (args[0] != "export" && args[0] != "info") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintf(stdout, "Usage: picket %s\n\n  export  print the CA certificate (PEM, or DER with -der) to install in clients\n  info    print the CA's subject, fingerprint, validity and files\n", synopsis)
			return 0
		}
		fmt.Fprintf(stderr, "Usage: picket %s\n", synopsis)
		return 2
	}
	sub := args[0]
	fs := newFlagSet("ca "+sub, synopsis, stderr)
	path := fs.String("config", "config.toml", "configuration file")
	der := false
	if sub == "export" {
		fs.BoolVar(&der, "der", false, "write DER instead of PEM")
	}
	f, code, ok := parseConfigFlags(fs, args[1:], path, stderr)
	if !ok {
		return code
	}
	ca, generated, err := loadCA(f)
	if err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 1
	}
	if generated {
		fmt.Fprintf(stderr, "picket: generated a new CA in %s\n", f.Resolve(f.TLS.CACert))
	}
	switch {
	case sub == "info":
		c := ca.Certificate()
		fmt.Fprintf(stdout, "subject:     %s\nfingerprint: SHA256 %s\nvalid:       %s to %s\ncertificate: %s\nkey:         %s\n",
			c.Subject, ca.Fingerprint(), c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"),
			f.Resolve(f.TLS.CACert), f.Resolve(f.TLS.CAKey))
	case der:
		_, _ = stdout.Write(ca.CertDER())
	default:
		_ = pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE", Bytes: ca.CertDER()})
	}
	return 0
}
