package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

// TestAccessLogBackPressure: Picket's access log on stdout, and stdout a
// pipe that nobody reads — a real stand-in for a log destination that
// cannot keep up. Requests wait for the log instead of losing their lines,
// the wait shows in the metrics, and once the pipe is read every answered
// request has its line.
func TestAccessLogBackPressure(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	path := writeConfig(t, "[log]\nformat = \"json\"\naccess_log = \"stdout\"\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr testutil.SyncBuffer
	go func() { done <- serve(ctx, path, w, &stderr, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	m := regexp.MustCompile(`"listener":"admin","listen":"([^"]+)"`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no admin listener in the log:\n%s", stderr.String())
	}
	metrics := "http://" + m[1] + "/metrics"
	metric := func(name string) float64 {
		_, body := fetch(t, http.DefaultClient, metrics, nil)
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatalf("no %s in the metrics", name)
		return 0
	}

	proxyURL, _ := url.Parse("http://" + addr)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	// Far more lines than the pipe and both buffers hold: ~2,000 lines of
	// ~250 bytes.
	const workers, each = 16, 125
	var answered atomic.Int64
	var wg sync.WaitGroup
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				resp, err := client.Get(fmt.Sprintf("%s/r/%d-%d", origin.URL, k, i))
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered.Add(1)
			}
		}()
	}
	// Requests are held: some wait for the log, and they stop being
	// answered while the pipe stays unread.
	deadline := time.Now().Add(30 * time.Second)
	for metric("picket_access_log_waits_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no request waited for the log; %d of %d answered", answered.Load(), workers*each)
		}
		time.Sleep(10 * time.Millisecond)
	}
	held := answered.Load()
	if held >= workers*each {
		t.Fatalf("every request was answered while nobody read the log")
	}
	if v := metric("picket_access_log_buffered_bytes"); v == 0 {
		t.Errorf("picket_access_log_buffered_bytes is 0 while requests wait")
	}

	// Read the pipe: everything comes through, one line per request.
	seen := make(map[string]int)
	var lines atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var l struct {
				Log, URL string
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("torn line %q", sc.Text())
				continue
			}
			if l.Log == "access" {
				u, _ := url.Parse(l.URL)
				seen[u.Path]++
				lines.Add(1)
			}
		}
	}()
	wg.Wait()
	if wait := metric("picket_access_log_wait_seconds_total"); wait <= 0 {
		t.Errorf("picket_access_log_wait_seconds_total: got %v, want the time requests waited", wait)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	w.Close()
	<-readDone
	for k := range workers {
		for i := range each {
			if p := fmt.Sprintf("/r/%d-%d", k, i); seen[p] != 1 {
				t.Errorf("%s: %d access-log lines, want 1", p, seen[p])
			}
		}
	}
	t.Logf("%d of %d requests answered while the pipe was unread; %d access lines", held, workers*each, lines.Load())
}
