package stats

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/rs/zerolog"
)

// IntakeConfig configures an Intake. Zero values are documented per field.
type IntakeConfig struct {
	// Dir is where batches (Dir/stats) and samples (Dir/samples) are kept;
	// required.
	Dir string
	// MaxBatches bounds the stored batches (oldest deleted first); 0 means
	// 100000.
	MaxBatches int
	// MaxSamples bounds the stored samples; 0 means 10000.
	MaxSamples int
	// MaxSampleSize is the largest sample accepted, in bytes; 0 means
	// 256 MiB.
	MaxSampleSize int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Intake is the cloud side of participation: the http.Handler mounted at
// /v1/stats and /v1/samples of a cloud repserver (server.Config.Intake). It
// stores what it accepts durably on disk, bounded.
type Intake struct {
	cfg     IntakeConfig
	log     zerolog.Logger
	batches queue
	mu      sync.Mutex // orders stores
	seq     uint64
}

const maxBatchBytes = 8 << 20

// NewIntake creates the directories and returns an Intake.
func NewIntake(cfg IntakeConfig, log zerolog.Logger) (*Intake, error) {
	if cfg.Dir == "" {
		return nil, errors.New("stats: intake needs a directory")
	}
	if cfg.MaxBatches <= 0 {
		cfg.MaxBatches = 100_000
	}
	if cfg.MaxSamples <= 0 {
		cfg.MaxSamples = 10_000
	}
	if cfg.MaxSampleSize <= 0 {
		cfg.MaxSampleSize = 256 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, d := range []string{"stats", "samples"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("stats: intake: %w", err)
		}
	}
	return &Intake{cfg: cfg, log: log.With().Str(LogComponent, "intake").Logger(),
		batches: queue{dir: filepath.Join(cfg.Dir, "stats"), prefix: "batch-", suffix: ".json", max: cfg.MaxBatches}}, nil
}

func (in *Intake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, `{"error":"use POST"}`, http.StatusMethodNotAllowed)
		return
	}
	limit := int64(maxBatchBytes)
	if r.URL.Path == reputation.PathSamples {
		limit = in.cfg.MaxSampleSize
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit+1)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, `{"error":"bad gzip"}`, http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil || int64(len(data)) > limit {
		http.Error(w, `{"error":"body unreadable or too large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	if r.URL.Path == reputation.PathSamples {
		err = in.storeSample(r.Header.Get(HeaderSample), data)
	} else {
		err = in.storeBatch(data)
	}
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		http.Error(w, fmt.Sprintf(`{"error":%q}`, bad.msg), http.StatusBadRequest)
	case err != nil:
		in.log.Error().Err(err).Msg("intake: not stored")
		http.Error(w, `{"error":"not stored"}`, http.StatusServiceUnavailable)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

type badRequest struct{ msg string }

func (b badRequest) Error() string { return b.msg }

func (in *Intake) next() uint64 {
	s := uint64(in.cfg.Now().UnixNano())
	if s <= in.seq {
		s = in.seq + 1
	}
	in.seq = s
	return s
}

func (in *Intake) storeBatch(data []byte) error {
	var b Batch
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return badRequest{"not a statistics batch: " + err.Error()}
	}
	if b.Schema != Schema || len(b.Installation) != 32 {
		return badRequest{"unsupported schema or installation identifier"}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	dropped, err := in.batches.put(in.next(), data)
	if dropped > 0 {
		in.log.Info().Int(LogDropped, dropped).Msg("intake: batch store full, dropped the oldest")
	}
	return err
}

func (in *Intake) storeSample(header string, data []byte) error {
	var m SampleMeta
	if err := json.Unmarshal([]byte(header), &m); err != nil {
		return badRequest{"missing or bad " + HeaderSample + " header"}
	}
	h, err := hex.DecodeString(m.SHA256)
	if err != nil || len(h) != 32 || len(data) == 0 {
		return badRequest{"bad sample hash or empty sample"}
	}
	if !m.Partial && !bytes.Equal(h, sha256Sum(data)) {
		return badRequest{"sample bytes do not match its hash"}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	dir := filepath.Join(in.cfg.Dir, "samples")
	old, _ := filepath.Glob(filepath.Join(dir, "*-"+m.SHA256+".bin"))
	if len(old) > 0 && m.Partial {
		return nil // already have it
	}
	name := filepath.Join(dir, fmt.Sprintf("%019d-%s.bin", in.next(), m.SHA256))
	head, _ := json.Marshal(m)
	if err := writeAtomic(name, append(append(head, '\n'), data...)); err != nil {
		return err
	}
	for _, o := range old {
		os.Remove(o)
	}
	q := queue{dir: dir, suffix: ".bin", max: in.cfg.MaxSamples}
	names, _ := q.list()
	for len(names) > q.max {
		os.Remove(names[0])
		names = names[1:]
	}
	in.log.Info().Str(LogSHA256, m.SHA256).Bool(LogPartial, m.Partial).Msg("intake: sample stored")
	return nil
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// Summary is what an intake directory holds.
type Summary struct {
	Batches       int
	Installations int
	Requests      uint64
	Blocked       uint64
	Samples       int
	// Unknown and Detected are file hashes by prevalence: installations
	// that reported them, then total count.
	Unknown, Detected []Prevalence
}

// Prevalence is one file hash across installations.
type Prevalence struct {
	SHA256        string
	Type          string
	Installations int
	Count         uint64
	Sample        bool // a sample is stored
	Partial       bool // the stored sample is partial
}

// Summarize reads an intake directory and returns its summary with the
// top hashes of each kind.
func Summarize(dir string, top int) (Summary, error) {
	var s Summary
	q := queue{dir: filepath.Join(dir, "stats"), prefix: "batch-", suffix: ".json"}
	names, err := q.list()
	if err != nil {
		return s, err
	}
	insts := map[string]bool{}
	type acc struct {
		p     Prevalence
		insts map[string]bool
	}
	files := map[string]*acc{}
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		var b Batch
		if json.Unmarshal(data, &b) != nil {
			continue
		}
		s.Batches++
		insts[b.Installation] = true
		s.Requests += b.Requests.Total
		s.Blocked += b.Requests.Blocked
		for _, f := range b.Files {
			key := f.Verdict + "/" + f.SHA256
			a := files[key]
			if a == nil {
				a = &acc{p: Prevalence{SHA256: f.SHA256, Type: f.Type}, insts: map[string]bool{}}
				files[key] = a
			}
			a.insts[b.Installation] = true
			a.p.Count += f.Count
		}
	}
	s.Installations = len(insts)
	samples := map[string]bool{} // hash → partial
	sn, _ := filepath.Glob(filepath.Join(dir, "samples", "*.bin"))
	for _, n := range sn {
		base := strings.TrimSuffix(filepath.Base(n), ".bin")
		if i := strings.IndexByte(base, '-'); i >= 0 {
			m, _, err := readSample(n)
			samples[base[i+1:]] = err == nil && m.Partial
		}
	}
	s.Samples = len(sn)
	for key, a := range files {
		a.p.Installations = len(a.insts)
		a.p.Partial, a.p.Sample = samples[a.p.SHA256]
		if strings.HasPrefix(key, "unknown/") {
			s.Unknown = append(s.Unknown, a.p)
		} else {
			s.Detected = append(s.Detected, a.p)
		}
	}
	for _, l := range []*[]Prevalence{&s.Unknown, &s.Detected} {
		sort.Slice(*l, func(i, j int) bool {
			x, y := (*l)[i], (*l)[j]
			if x.Installations != y.Installations {
				return x.Installations > y.Installations
			}
			if x.Count != y.Count {
				return x.Count > y.Count
			}
			return x.SHA256 < y.SHA256
		})
		if top > 0 && len(*l) > top {
			*l = (*l)[:top]
		}
	}
	return s, nil
}
