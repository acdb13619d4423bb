package stats

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	// samples_max_size bytes.
	Partial bool `json:"partial"`
}

// WantSample reports whether the proxy should offer this file as a sample:
// participation and samples are on in KSN mode, the scan result is
// "unknown", the type is an executable, archive or document, the size is
// under samples_max_size (or samples = "full-or-part"), and the hash was
// never sampled. A true answer reserves the hash: each is sampled at most
// once. It is O(1) and never blocks on I/O; ask it before releasing the scan
// buffer.
func (p *Participation) WantSample(s Sample) bool {
	if len(s.SHA256) != sha256.Size || s.Result != "unknown" || !sampleTypes[s.Type] || s.Size <= 0 || p.cfg.ReadOnly {
		return false
	}
	h := [32]byte(s.SHA256)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.sendingSamples() || p.sampled[h] || len(p.sampled) >= maxSampled {
		return false
	}
	if s.Size > p.cfg.SamplesMaxSize && p.st.Samples != SamplesFullOrPart {
		return false
	}
	p.sampled[h] = true
	return true
}

// OfferSample copies at most samples_max_size bytes of a file WantSample
// said yes to, then queues them for sending in the background. The copy is
// the only work done on the caller's goroutine; when two samples are already
// being written the offer is dropped (counted). data is not used after
// OfferSample returns. A file larger than the limit is sent as its first
// bytes, marked partial.
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
	select {
	case p.slots <- struct{}{}:
	default:
		p.samplesDropped.Add(1)
		return
	}
	n := min(s.Size, p.cfg.SamplesMaxSize)
	buf := bytes.NewBuffer(make([]byte, 0, n))
	_, err := io.Copy(buf, io.LimitReader(data, n))
	if err != nil || int64(buf.Len()) != n {
		<-p.slots
		p.samplesDropped.Add(1)
		return
	}
	p.sampleIn <- pending{hash: h, data: buf.Bytes(),
		meta: SampleMeta{SHA256: hex.EncodeToString(h[:]), Type: s.Type, Size: s.Size, Partial: s.Size > n}}
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
			p.samplesDropped.Add(1) // the bytes are not the file the hash names
			<-p.slots
			continue
		}
		head, _ := json.Marshal(s.meta)
		seq++
		dropped, err := p.samples.put(uint64(p.cfg.Now().UnixNano())+seq, append(append(head, '\n'), s.data...))
		if err != nil {
			p.log.Warn().Err(err).Msg("sample not queued")
		} else {
			p.log.Info().Str(LogSHA256, s.meta.SHA256).Bool(LogPartial, s.meta.Partial).Msg("sample queued")
		}
		if dropped > 0 {
			p.samplesDropped.Add(uint64(dropped))
		}
		if f, err := os.OpenFile(p.sampledPath(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640); err == nil {
			f.WriteString(s.meta.SHA256 + "\n")
			f.Close()
		}
		<-p.slots
	}
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
