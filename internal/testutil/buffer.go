package testutil

import (
	"bufio"
	"bytes"
	"encoding/json"
	"sync"
)

// SyncBuffer is a buffer safe for concurrent writes and reads, for the logs
// of servers and goroutines a test reads while they run. The zero
// SyncBuffer is empty and ready.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the JSON log lines written so far (zerolog's), each as a
// map; lines that are not JSON objects are left out.
func (b *SyncBuffer) Lines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader([]byte(b.String())))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
