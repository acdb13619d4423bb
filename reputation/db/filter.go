package db

import (
	"encoding/binary"
	"math/bits"
)

// The prefix filter is a split-block Bloom filter over the records' 4-byte
// prefixes, written as the extra section "prefix-filter" of every file the
// assembler writes. Nearly every prefix a lookup asks for is absent (a
// URL's 2 to 30 expressions, of which at most a few are listed), and in a
// database far larger than the CPU's caches the index and the binary
// search cost about five reads from memory each; the filter answers "not
// here" with one read of 32 bytes, wrong (a search after all) for 0.4 %
// of the absent prefixes at 5 M entries and 2.7 % at 1 M, just past a power
// of two (TestPrefixFilterSizes). It never says "not here" of a
// prefix that is there: it is built from the very records written.
//
// A block is eight 32-bit words; a prefix sets one bit in each word of one
// block. A file without the section (written before it existed) is
// searched as before.

const (
	filterSection = "prefix-filter"
	filterBlock   = 32 // bytes: eight words
)

// filterBlocks is the filter's size in blocks for about n records: the
// largest power of two within n/16, so 8 to 16 bits a record (13.4 at 5 M).
func filterBlocks(n int) int {
	if n < 16 {
		return 1
	}
	return 1 << (bits.Len(uint(n/16)) - 1)
}

// filterSalts are odd constants that pick a prefix's bit in each word
// (those of Parquet's split-block Bloom filter).
var filterSalts = [8]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d,
	0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

// filterSpot returns the block of p in a filter of blocks blocks (a power
// of two) and the key whose salted products pick its bits.
func filterSpot(p uint32, blocks int) (int, uint32) {
	h := uint64(p) * 0x9e3779b97f4a7c15 // a bijection: the block from the high bits
	return int((h >> 32) & uint64(blocks-1)), uint32(h)
}

// filterAdd sets p's bits in f.
func filterAdd(f []byte, p uint32) {
	b, key := filterSpot(p, len(f)/filterBlock)
	blk := f[b*filterBlock : b*filterBlock+filterBlock]
	for i, s := range filterSalts {
		w := binary.LittleEndian.Uint32(blk[4*i:])
		binary.LittleEndian.PutUint32(blk[4*i:], w|1<<((key*s)>>27))
	}
}

// filterHas reports whether p may be among the records whose filter is f:
// false means it is not.
func filterHas(f []byte, p uint32) bool {
	b, key := filterSpot(p, len(f)/filterBlock)
	blk := f[b*filterBlock : b*filterBlock+filterBlock]
	for i, s := range filterSalts {
		if binary.LittleEndian.Uint32(blk[4*i:])&(1<<((key*s)>>27)) == 0 {
			return false
		}
	}
	return true
}

// validFilter reports whether f has the shape of a filter: a power of two
// of whole blocks.
func validFilter(f []byte) bool {
	n := len(f) / filterBlock
	return len(f)%filterBlock == 0 && n > 0 && n&(n-1) == 0
}
