package stats

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// HeaderSample carries a sample's SampleMeta (JSON) on POST /v1/samples.
const HeaderSample = "X-Picket-Sample"

// errRejected is a 4xx answer: the cloud will never take this entry.
type errRejected struct{ status int }

func (e errRejected) Error() string { return fmt.Sprintf("cloud refused it: HTTP %d", e.status) }

// send delivers queued batches, then queued samples, oldest first, until
// the queues are empty or a delivery fails (then it backs off).
func (p *Participation) send(ctx context.Context) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	for _, kind := range []struct {
		q    *queue
		path string
		ok   func() bool
	}{
		{&p.batches, reputation.PathStats, p.sending},
		{&p.samples, reputation.PathSamples, p.sendingSamples},
	} {
		names, err := kind.q.list()
		if err != nil {
			return err
		}
		for _, name := range names {
			p.mu.Lock()
			ok, wait := kind.ok(), p.cfg.Now().Before(p.nextTry)
			p.mu.Unlock()
			if !ok || wait {
				break
			}
			err := p.post(ctx, kind.path, name)
			var rej errRejected
			switch {
			case err == nil:
				os.Remove(name)
				p.mu.Lock()
				p.lastSend, p.lastErr, p.failures, p.nextTry = p.cfg.Now(), "", 0, time.Time{}
				p.mu.Unlock()
			case errors.As(err, &rej):
				os.Remove(name)
				p.log.Warn().Int(LogStatus, rej.status).Str("file", name).Msg("the cloud refused a queued entry; deleted")
			default:
				p.mu.Lock()
				p.failures++
				backoff := min(backoffFirst<<min(p.failures-1, 20), p.cfg.Interval)
				p.nextTry, p.lastErr = p.cfg.Now().Add(backoff), err.Error()
				p.mu.Unlock()
				p.log.Warn().Err(err).Dur(LogRetryIn, backoff).Msg("sending to the cloud failed; will retry")
				return err
			}
		}
	}
	return nil
}

// post sends one queued file, gzip-compressed.
func (p *Participation) post(ctx context.Context, path, name string) error {
	var body []byte
	var meta []byte
	if path == reputation.PathSamples {
		m, data, err := readSample(name)
		if err != nil {
			os.Remove(name)
			return nil // unreadable: nothing to retry
		}
		meta, _ = json.Marshal(m)
		body = data
	} else {
		var err error
		if body, err = os.ReadFile(name); err != nil {
			return nil
		}
	}
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	zw.Write(body)
	zw.Close()
	p.mu.Lock()
	cloud := p.cloud
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cloud.Server, "/")+path, &zbuf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "gzip")
	if meta != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(HeaderSample, string(meta))
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "picket/"+p.cfg.Version)
	if cloud.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cloud.Token)
	}
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 408 && resp.StatusCode != 429 && resp.StatusCode != 401:
		return errRejected{resp.StatusCode}
	}
	return fmt.Errorf("cloud answered HTTP %d", resp.StatusCode)
}
