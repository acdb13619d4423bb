package clamd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/avtest"
	tf "github.com/picket-proxy/picket/internal/testfiles"
	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/scanner"
)

var (
	detected = []byte("Picket clamd test: a harmless file that the test's .hdb detects.\n")
	bodySig  = []byte("PICKET-CLAMD-BODY-SIGNATURE-61c2")
)

func sigs() map[string]string {
	return map[string]string{
		"test.hdb": avtest.HDB("Picket.Test.MD5", detected),
		"test.ndb": avtest.NDB("Picket.Test.Body", bodySig),
	}
}

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = -1
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// scan streams data in pieces of at most piece bytes, as a download arrives.
func scan(t testing.TB, c *Client, data []byte, piece int) (scanner.EngineResult, error) {
	t.Helper()
	st := c.Open(scanner.EngineMeta{Size: int64(len(data))})
	defer st.Close()
	for len(data) > 0 {
		k := min(piece, len(data))
		if _, err := st.Write(data[:k]); err != nil {
			return scanner.EngineResult{}, err
		}
		data = data[k:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return st.Finish(ctx)
}

func TestInstream(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: sigs(), TCP: true})
	big := bytes.Repeat([]byte("clean filler "), 300000) // ~3.9 MiB
	withSig := append(append(bytes.Clone(big[:1<<20]), bodySig...), big[:1<<20]...)
	for _, addr := range []struct{ name, addr string }{{"unix", "unix:" + d.Socket}, {"tcp", d.TCPAddr}} {
		c := newClient(t, Config{Address: addr.addr})
		for _, tc := range []struct {
			name   string
			data   []byte
			piece  int
			threat string
		}{
			{"hdb match, one write", detected, 1 << 20, "Picket.Test.MD5.UNOFFICIAL"},
			{"hdb match, byte by byte", detected, 1, "Picket.Test.MD5.UNOFFICIAL"},
			{"clean", []byte("nothing to see here\n"), 7, ""},
			{"empty", nil, 1, ""},
			{"ndb body signature in 2 MiB", withSig, 32 << 10, "Picket.Test.Body.UNOFFICIAL"},
			{"ndb inside a zip", tf.Zip(tf.Member{Name: "inner/readme.txt", Data: append([]byte("hello "), bodySig...)}), 100, "Picket.Test.Body.UNOFFICIAL"},
			{"hdb member inside a zip", tf.Zip(tf.Member{Name: "x.txt", Data: detected}), 100, "Picket.Test.MD5.UNOFFICIAL"},
			{"clean 3.9 MiB", big, 64 << 10, ""},
		} {
			t.Run(addr.name+"/"+tc.name, func(t *testing.T) {
				res, err := scan(t, c, tc.data, tc.piece)
				if err != nil {
					t.Fatalf("got error %v, want a verdict", err)
				}
				if res.Threat != tc.threat || res.Partial || res.Scanned != int64(len(tc.data)) {
					t.Fatalf("got %+v, want threat %q, not partial, %d bytes scanned", res, tc.threat, len(tc.data))
				}
			})
		}
		// Every scan above reused the one pooled session.
		if n := c.pool.Open(); n != 1 {
			t.Errorf("%s: got %d open connections after sequential scans, want 1 (reused)", addr.name, n)
		}
	}
}

func TestStreamMaxLength(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: sigs()})
	c := newClient(t, Config{Address: d.Socket, StreamMaxLength: 1 << 20})
	filler := bytes.Repeat([]byte{'a'}, 3<<20)
	early := append(append([]byte{}, bodySig...), filler...)                   // signature in the first MiB
	late := append(bytes.Clone(filler[:2<<20]), append(bodySig, filler...)...) // signature past it
	for _, tc := range []struct {
		name   string
		data   []byte
		threat string
	}{
		{"detection within the limit", early, "Picket.Test.Body.UNOFFICIAL"},
		{"signature past the limit", late, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := scan(t, c, tc.data, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			if res.Threat != tc.threat || !res.Partial || res.Scanned != 1<<20 {
				t.Fatalf("got %+v, want threat %q, partial, %d bytes scanned", res, tc.threat, 1<<20)
			}
		})
	}
}

// TestStreamRefused: a stream_max_length above clamd's own is a clear error.
func TestStreamRefused(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: sigs(), StreamMaxLength: "1M"})
	c := newClient(t, Config{Address: d.Socket, StreamMaxLength: 4 << 20})
	_, err := scan(t, c, bytes.Repeat([]byte{'b'}, 3<<20), 64<<10)
	if !errors.Is(err, ErrStreamRefused) || !strings.Contains(err.Error(), "StreamMaxLength") {
		t.Fatalf("got %v, want ErrStreamRefused naming StreamMaxLength", err)
	}
	if h := c.Health(); h.Healthy {
		t.Errorf("health after a refused stream: %+v, want unhealthy", h)
	}
}

func TestHealth(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: sigs()})
	c := newClient(t, Config{Address: "unix:" + d.Socket, HealthInterval: 50 * time.Millisecond, Timeout: 2 * time.Second})
	waitHealth := func(want bool) scanner.EngineHealth {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			h := c.Health()
			if h.Healthy == want && !h.Checked.IsZero() {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %+v, want healthy=%v", h, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	h := waitHealth(true)
	if !strings.HasPrefix(h.Version, "ClamAV ") || h.Kind != "clamd" || c.Tag() == "" {
		t.Errorf("got %+v (tag %q), want a ClamAV version and a tag", h, c.Tag())
	}
	d.Kill()
	h = waitHealth(false)
	if h.Error == "" {
		t.Errorf("unhealthy without an error: %+v", h)
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		line, engine, sigs string
		date               time.Time
		bad                bool
	}{
		{"ClamAV 1.4.6/27000/Mon Dec  1 08:00:00 2026", "ClamAV 1.4.6", "27000", time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), false},
		{"ClamAV 1.4.6", "ClamAV 1.4.6", "", time.Time{}, false},
		{"ClamAV 0.103.8/26000/Tue Nov 14 09:22:11 2023", "ClamAV 0.103.8", "26000", time.Date(2023, 11, 14, 9, 22, 11, 0, time.UTC), false},
		{"HTTP/1.1 400 Bad Request", "", "", time.Time{}, true},
	} {
		v, err := ParseVersion(tc.line)
		if (err != nil) != tc.bad {
			t.Fatalf("%q: got error %v, want error %v", tc.line, err, tc.bad)
		}
		if !tc.bad && (v.Engine != tc.engine || v.Signatures != tc.sigs || !v.Date.Equal(tc.date)) {
			t.Errorf("%q: got %+v, want %s %s %s", tc.line, v, tc.engine, tc.sigs, tc.date)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct{ in, network, addr string }{
		{"unix:/run/clamav/clamd.ctl", "unix", "/run/clamav/clamd.ctl"},
		{"/run/clamav/clamd.ctl", "unix", "/run/clamav/clamd.ctl"},
		{"127.0.0.1:3310", "tcp", "127.0.0.1:3310"},
		{"tcp:[::1]:3310", "tcp", "[::1]:3310"},
		{"clamav.example:3310", "tcp", "clamav.example:3310"},
		{"unix:relative.sock", "", ""},
		{"localhost", "", ""},
		{"host:99999", "", ""},
		{"", "", ""},
	} {
		n, a, err := ParseAddress(tc.in)
		if n != tc.network || a != tc.addr || (err != nil) != (tc.network == "") {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.in, n, a, err, tc.network, tc.addr)
		}
	}
}

// TestKilledMidStream: clamd dies while a body streams in; the stream fails
// with an error at once (no hang) and health says so.
func TestKilledMidStream(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: sigs()})
	c := newClient(t, Config{Address: d.Socket, Timeout: 3 * time.Second})
	st := c.Open(scanner.EngineMeta{Size: -1})
	defer st.Close()
	if _, err := st.Write(bytes.Repeat([]byte{'c'}, 64<<10)); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	start := time.Now()
	var err error
	for i := 0; i < 64 && err == nil; i++ { // the kernel may take a few writes to notice
		_, err = st.Write(bytes.Repeat([]byte{'c'}, 64<<10))
	}
	if err == nil {
		_, err = st.Finish(context.Background())
	}
	if err == nil {
		t.Fatal("got a verdict from a killed clamd")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("the failure took %s, want it within the 3s timeout", el)
	}
	if c.Health().Healthy {
		t.Error("health still says healthy after the engine died")
	}
}

// TestFrozen: a clamd that stops answering costs at most the timeout.
func TestFrozen(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: sigs()})
	c := newClient(t, Config{Address: d.Socket, Timeout: time.Second})
	st := c.Open(scanner.EngineMeta{Size: -1})
	defer st.Close()
	if _, err := st.Write(detected); err != nil {
		t.Fatal(err)
	}
	d.Freeze()
	start := time.Now()
	_, err := st.Finish(context.Background())
	el := time.Since(start)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if el < 900*time.Millisecond || el > 10*time.Second {
		t.Errorf("gave up after %s, want about the 1s timeout", el)
	}
}

// TestGarbage: a server that answers nonsense is a clear error, never a
// verdict or a hang.
func TestGarbage(t *testing.T) {
	dir := testutil.ShortTempDir(t, "pk-garbage-")
	sock := filepath.Join(dir, "g.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answers := []string{"HTTP/1.1 200 OK\r\n\r\n\x00", "1: stream: maybe\x00", "7: stream: OK\x00", strings.Repeat("x", 20000)}
	go func() {
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(a string) {
				defer conn.Close()
				buf := make([]byte, 64<<10)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				for {
					n, err := conn.Read(buf)
					if err != nil {
						return
					}
					if bytes.Contains(buf[:n], []byte{0, 0, 0, 0}) {
						conn.Write([]byte(a))
						return
					}
				}
			}(answers[i%len(answers)])
		}
	}()
	c := newClient(t, Config{Address: sock, Timeout: 2 * time.Second})
	for i := range answers {
		_, err := scan(t, c, []byte("some body bytes"), 5)
		if err == nil || !strings.Contains(err.Error(), "clamd") {
			t.Errorf("answer %d: got %v, want a clamd error", i, err)
		}
	}
}

// TestFrozenMidBody: a clamd that hangs while a body longer than the
// socket's buffers streams in costs the scan one timeout, the write that
// found it hung; the verdict does not wait for a second one on a new
// connection to the same hung clamd.
func TestFrozenMidBody(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: sigs()})
	const timeout = 2 * time.Second
	c := newClient(t, Config{Address: d.Socket, Timeout: timeout})
	s, err := scanner.New(scanner.Config{Engines: []scanner.EngineConfig{{Engine: c, FailClosed: true}}, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	d.Freeze()
	body := bytes.Repeat([]byte("a line of text that is nothing much\n"), 8<<20/36)
	sc := s.NewScan(scanner.Meta{Size: int64(len(body)), Name: "a.txt"})
	defer sc.Close()
	if _, err := sc.ReadFrom(bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = sc.Finish(context.Background())
	if el := time.Since(start); el >= timeout {
		t.Errorf("the verdict took %s after the body's end, want less than the %s timeout (already spent on the body)", el, timeout)
	}
	if !scanner.IsEngineError(err) {
		t.Errorf("got %v, want the fail-closed engine error", err)
	}
	if st := s.Stats().Engines[0]; st.Errors != 1 {
		t.Errorf("got %d engine errors, want 1", st.Errors)
	}
}
