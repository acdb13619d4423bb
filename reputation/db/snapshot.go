package db

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/picket-proxy/picket/reputation"
)

// The snapshot file format: magic, version, verdict table, entries, then the
// checksum of the entries. Written by a private repserver so that it serves
// its last good copy after a restart while the upstream is down.
const snapshotMagic = "PICKETDB1\n"

// maxSnapshotString bounds a category or threat name in a snapshot.
const maxSnapshotString = 4096

// WriteFile writes d to path atomically (temporary file, then rename).
func (d *DB) WriteFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	w.WriteString(snapshotMagic)
	var buf []byte
	buf = binary.BigEndian.AppendUint64(buf, d.version)
	buf = binary.AppendUvarint(buf, uint64(len(d.verdicts)))
	for _, v := range d.verdicts {
		buf = append(buf, byte(v.Kind))
		buf = binary.AppendUvarint(buf, uint64(len(v.Category)))
		buf = append(buf, v.Category...)
		buf = binary.AppendUvarint(buf, uint64(len(v.ThreatName)))
		buf = append(buf, v.ThreatName...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(d.hashes)))
	w.Write(buf)
	for i, h := range d.hashes {
		w.Write(h[:])
		w.Write(binary.AppendUvarint(buf[:0], uint64(d.vidx[i])))
	}
	sum := d.Checksum()
	w.Write(sum[:])
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ErrBadSnapshot is returned (wrapped) for a corrupt snapshot file.
var ErrBadSnapshot = errors.New("db: bad snapshot")

// ReadFile reads a snapshot written by WriteFile and verifies its checksum.
func ReadFile(path string) (*DB, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	bad := func(what string, err error) error {
		return fmt.Errorf("%w: %s: %s: %v", ErrBadSnapshot, path, what, err)
	}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != snapshotMagic {
		return nil, bad("magic", err)
	}
	var v8 [8]byte
	if _, err := io.ReadFull(r, v8[:]); err != nil {
		return nil, bad("version", err)
	}
	readString := func() (string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return "", err
		}
		if n > maxSnapshotString {
			return "", errors.New("string too long")
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return string(b), err
	}
	nv, err := binary.ReadUvarint(r)
	if err != nil || nv > 1<<32 {
		return nil, bad("verdict count", err)
	}
	b := NewBuilder(0)
	verdicts := make([]reputation.Verdict, 0, min(nv, 1<<16))
	for i := uint64(0); i < nv; i++ {
		k, err := r.ReadByte()
		if err != nil || k > byte(reputation.KindMalware) {
			return nil, bad("verdict", err)
		}
		c, err := readString()
		if err != nil {
			return nil, bad("category", err)
		}
		t, err := readString()
		if err != nil {
			return nil, bad("threat", err)
		}
		verdicts = append(verdicts, reputation.Verdict{Kind: reputation.Kind(k), Category: c, ThreatName: t})
	}
	ne, err := binary.ReadUvarint(r)
	if err != nil || ne > 1<<32 {
		return nil, bad("entry count", err)
	}
	for i := uint64(0); i < ne; i++ {
		var h reputation.Hash
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, bad("entry", err)
		}
		vi, err := binary.ReadUvarint(r)
		if err != nil || vi >= nv {
			return nil, bad("entry verdict", err)
		}
		b.Add(h, verdicts[vi])
	}
	var sum [32]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return nil, bad("checksum", err)
	}
	d := b.Build(binary.BigEndian.Uint64(v8[:]))
	if d.Checksum() != sum {
		return nil, bad("checksum", errors.New("mismatch"))
	}
	return d, nil
}
