package stats

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
)

// SampleMeta is everything sent with a sample besides its bytes, as the
// X-Picket-Sample header (JSON). docs/privacy.md documents every field.
type SampleMeta struct {
	// SHA256 is the hex SHA-256 of the whole file.
	SHA256 string `json:"sha256"`
	// Type is the scanner's true file type.
	Type string `json:"type"`
	// Size is the whole file's size in bytes.
	Size int64 `json:"size"`
	// Partial is set when the bytes are only the file's first
	// samples_max_size bytes (executables only).
	Partial bool `json:"partial"`
	// Reason is why the file could attack: the scanner's kinds of active
	// content, comma-separated (executable, macros, pdf-javascript, ...).
	Reason string `json:"reason"`
}

// WantSample reports whether the proxy should offer this file as a sample.
// All of these must hold:
//
//   - participation and samples are on, in KSN mode;
//   - the scan result is "unknown" (neither known clean nor detected);
//   - the file can attack: it carries active content (an executable, a
//     script, an archive holding one, a document with macros, embedded
//     objects, an external template or PDF actions). A plain document is
//     never a sample, whatever its reputation;
//   - it is no larger than samples_max_size, or it is an executable and
//     samples = "full-or-part" (its first bytes are sent); documents and
//     archives are sent whole or not at all;
//   - it was never sampled;
//   - it was downloaded by at least samples_min_clients distinct clients
//     within samples_window of its first download (counted here, in
//     memory, as keyed digests of their addresses): a file only one
//     person downloaded never leaves.
//
// A true answer reserves the hash for the OfferSample that must follow:
// each file is sampled at most once, from a download that made the count.
// If the offer is dropped, a later download of the file offers it again. It
// is O(1) and never blocks on I/O; ask it before releasing the scan buffer.
func (p *Participation) WantSample(s Sample) bool {
	reason := activeReason(s.Active)
	if len(s.SHA256) != sha256.Size || s.Result != "unknown" || reason == "" || s.Size <= 0 || p.cfg.ReadOnly {
		return false
	}
	h := [32]byte(s.SHA256)
	p.mu.Lock()
	if !p.sendingSamples() || p.sampled[h] || len(p.sampled) >= maxSampled ||
		s.Size > p.cfg.SamplesMaxSize && !(p.st.Samples == SamplesFullOrPart && partialTypes[s.Type]) {
		p.mu.Unlock()
		return false
	}
	k := p.cfg.SamplesMinClients
	n := p.seen.see(h, clientDigest(p.clientKey, s.Client), p.cfg.Now(), k)
	if n >= k {
		p.sampled[h] = true // the sighting stays until the sample is queued
	}
	p.mu.Unlock()
	if n < k {
		p.log.Debug().Str(LogSHA256, hex.EncodeToString(h[:])).Str(LogReason, reason).Int(LogClients, n).
			Msgf("sample not taken: downloaded by %d of the %d distinct clients needed", n, k)
	}
	return n >= k
}

// OfferSample copies at most samples_max_size bytes of a file WantSample
// said yes to, then queues them for sending in the background. The copy is
// the only work done on the caller's goroutine. Samples copied and not yet
// written hold at most twice samples_max_size bytes: an offer beyond that
// is dropped (counted), and a later download of the file offers it again.
// data is not used after OfferSample returns. An executable larger than
// the limit is sent as its first bytes, marked partial (WantSample refuses
// other large files).
func (p *Participation) OfferSample(s Sample, data io.Reader) {
	if len(s.SHA256) != sha256.Size || p.cfg.ReadOnly {
		return
	}
	h := [32]byte(s.SHA256)
	p.mu.Lock()
	ok := p.sampled[h] && p.sendingSamples()
	p.mu.Unlock()
	if !ok {
		return
	}
	n := min(s.Size, p.cfg.SamplesMaxSize)
	held, count := p.inFlight.Add(n), p.inFlightN.Add(1)
	if held > sampleMemory*p.cfg.SamplesMaxSize || count > sampleBacklog {
		p.dropSample(h, n)
		return
	}
	buf := bytes.NewBuffer(make([]byte, 0, n))
	if _, err := io.Copy(buf, io.LimitReader(data, n)); err != nil || int64(buf.Len()) != n {
		p.dropSample(h, n)
		return
	}
	p.sampleIn <- pending{hash: h, data: buf.Bytes(), meta: SampleMeta{SHA256: hex.EncodeToString(h[:]), Type: oneOf(typeNames, s.Type),
		Size: s.Size, Partial: s.Size > n, Reason: activeReason(s.Active)}}
}

// dropSample gives up an offered sample of n bytes: it is counted and
// released, and the file may be offered again by a later download.
func (p *Participation) dropSample(h [32]byte, n int64) {
	p.inFlight.Add(-n)
	p.inFlightN.Add(-1)
	p.samplesDropped.Add(1)
	p.mu.Lock()
	delete(p.sampled, h)
	p.mu.Unlock()
}

// QueuedSamples lists the samples waiting to be sent, oldest first: what
// is sent with each (never the bytes, which are not even read).
func (p *Participation) QueuedSamples() ([]SampleMeta, error) {
	names, err := p.samples.list()
	if err != nil {
		return nil, err
	}
	out := make([]SampleMeta, 0, len(names))
	for _, n := range names {
		if m, err := readSampleMeta(n); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// writeSamples moves offered samples to the queue directory; it runs from
// New to Close.
func (p *Participation) writeSamples() {
	defer p.wg.Done()
	seq := uint64(0)
	for {
		var s pending
		select {
		case <-p.done:
			return
		case s = <-p.sampleIn:
		}
		if !s.meta.Partial && sha256.Sum256(s.data) != s.hash {
			p.dropSample(s.hash, int64(len(s.data))) // the bytes are not the file the hash names
			continue
		}
		head, _ := json.Marshal(s.meta)
		seq++
		dropped, err := p.queue(&p.samples, p.sendingSamples, uint64(p.cfg.Now().UnixNano())+seq, append(append(head, '\n'), s.data...))
		if errors.Is(err, errSwitchedOff) {
			p.dropSample(s.hash, int64(len(s.data)))
			continue
		}
		if err != nil {
			p.log.Warn().Err(err).Msg("sample not queued")
			p.dropSample(s.hash, int64(len(s.data)))
			continue
		}
		p.log.Info().Str(LogSHA256, s.meta.SHA256).Str(LogType, s.meta.Type).Str(LogReason, s.meta.Reason).
			Bool(LogPartial, s.meta.Partial).Msg("sample queued")
		if dropped > 0 {
			p.samplesDropped.Add(uint64(dropped))
		}
		if f, err := os.OpenFile(p.sampledPath(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640); err == nil {
			f.WriteString(s.meta.SHA256 + "\n")
			f.Close()
		}
		p.mu.Lock()
		p.seen.forget(s.hash)
		p.mu.Unlock()
		p.samplesTaken.Add(1)
		p.inFlight.Add(-int64(len(s.data)))
		p.inFlightN.Add(-1)
		select {
		case p.kick <- struct{}{}:
		default: // a send is due already
		}
	}
}

// readSampleMeta reads only the meta line of a queued sample file.
func readSampleMeta(path string) (SampleMeta, error) {
	var m SampleMeta
	f, err := os.Open(path)
	if err != nil {
		return m, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 4096).ReadSlice('\n')
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(line, &m)
}

// readSample splits a queued sample file into its meta and bytes.
func readSample(path string) (SampleMeta, []byte, error) {
	var m SampleMeta
	data, err := os.ReadFile(path)
	if err != nil {
		return m, nil, err
	}
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return m, nil, io.ErrUnexpectedEOF
	}
	if err := json.Unmarshal(data[:i], &m); err != nil {
		return m, nil, err
	}
	return m, data[i+1:], nil
}
