// Package db is the reputation database: feeds in several formats loaded
// from a directory described by feeds.toml, indexed by full SHA-256 in a
// compact sorted table, and swapped atomically when the feeds change.
//
// It serves both sides of the protocol: a Store is the embedded Backend of
// a KPSN client without a server, and the database of a repserver.
//
//	feeds.toml ──▶ Load ──▶ Builder ──▶ *DB (immutable) ──▶ Store.cur (atomic)
//	                                                          │
//	                         Store.FindPrefixes / repserver ◀─┘
package db
