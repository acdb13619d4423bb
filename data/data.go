// Package data is the demo data Picket ships — the feed set of the embedded
// reputation database and the scanner's demo signatures — built into the
// binary, so that a configuration file anywhere starts with it: on first
// start Picket writes it out where the defaults expect it, as it generates
// the CA (cmd/picket/seed.go). It is a package only because go:embed reads
// files below its own directory.
package data

import "embed"

// FS holds feeds/ and signatures/ as they are in the repository.
//
//go:embed feeds signatures
var FS embed.FS
