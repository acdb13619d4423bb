package stats

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/picket-proxy/picket/internal/enum"
)

// Samples says which file samples may be sent.
type Samples uint8

// The sample settings.
const (
	SamplesOff        Samples = iota // none
	SamplesFull                      // whole files up to the size limit
	SamplesFullOrPart                // larger files as their first bytes, marked partial
)

var samplesNames = [...]string{"off", "full", "full-or-part"}

func (s Samples) String() string { return enum.Name("Samples", samplesNames[:], s) }

// ParseSamples is the inverse of Samples.String.
func ParseSamples(s string) (Samples, error) {
	return enum.Parse("samples setting", samplesNames[:], SamplesOff, s)
}

// MarshalText writes the setting's name.
func (s Samples) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a setting's name.
func (s *Samples) UnmarshalText(b []byte) error {
	v, err := ParseSamples(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Settings are the two switches.
type Settings struct {
	Participation bool    `json:"participation"`
	Samples       Samples `json:"samples"`
}

// state is the state file: the runtime choice, the configuration file's
// values it was last reconciled with, and the installation's counters.
type state struct {
	Settings
	// File is what the configuration file said when last read: when the
	// file says something else at the next start or reload, the file wins;
	// otherwise the runtime choice stands. The latest change wins.
	File         Settings `json:"file"`
	Installation string   `json:"installation"`
	// ClientKey (64 hex digits) keys the digests of client addresses that
	// count the distinct clients of a sample (clientDigest). It never
	// leaves the installation, is never shown, and is replaced whenever
	// the installation identifier is.
	ClientKey string    `json:"client_key"`
	Seq       uint64    `json:"seq"`     // last batch cut
	Dropped   uint64    `json:"dropped"` // batches dropped, not yet reported
	Changed   time.Time `json:"changed"`
	ChangedBy string    `json:"changed_by"`
}

func loadState(path string) (state, bool, error) {
	var s state
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, false, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Installation) != 32 {
		s.Installation = newInstallation()
	}
	if k, err := hex.DecodeString(s.ClientKey); err != nil || len(k) != 32 {
		s.ClientKey = newClientKey()
	}
	return s, true, nil
}

func newClientKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newInstallation() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeAtomic writes data to path through a temporary file in the same
// directory, synced and renamed, so a crash leaves the old or the new file.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func (s *state) save(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(data, '\n'))
}
