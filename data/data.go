// Package data is the demo data Picket ships — the feed set of the embedded
// reputation database and the scanner's demo signatures — built into the
// binary, so that a configuration file anywhere starts with it: on first
// start Picket writes it out where the defaults expect it, as it generates
// the CA (cmd/picket/seed.go). It is a package only because go:embed reads
// files below its own directory.
package data

import "embed"

// FS holds the files of feeds/ and signatures/ as they are in the
// repository, named one kind at a time rather than as whole directories:
// `make run` serves this very directory, and a feed fetched by URL keeps its
// last good copy in feeds/cache/ (and the compiled database in
// feeds/.feeds.db), which the next build must not carry into the binary.
// data_test.go checks that the patterns and the directories agree.
//
//go:embed feeds/*.toml feeds/*.txt feeds/*.csv feeds/*.jsonl feeds/*.hdb feeds/*.hsb feeds/*.fp
//go:embed signatures/*.hsb signatures/*.fp
var FS embed.FS
