package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// queue is a directory of files waiting to be sent, oldest first by name.
// Names are "<prefix><16-digit sequence><suffix>", so sorting by name sorts
// by age. It holds at most max files: put drops the oldest.
type queue struct {
	dir, prefix, suffix string
	max                 int
}

func (q *queue) list() ([]string, error) {
	ents, err := os.ReadDir(q.dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, q.prefix) && strings.HasSuffix(n, q.suffix) {
			names = append(names, filepath.Join(q.dir, n))
		}
	}
	sort.Strings(names)
	return names, nil
}

// put writes data as entry seq and drops the oldest entries beyond max; it
// returns how many it dropped.
func (q *queue) put(seq uint64, data []byte) (int, error) {
	if err := writeAtomic(filepath.Join(q.dir, fmt.Sprintf("%s%016d%s", q.prefix, seq, q.suffix)), data); err != nil {
		return 0, err
	}
	names, err := q.list()
	if err != nil {
		return 0, err
	}
	dropped := 0
	for len(names) > q.max {
		if err := os.Remove(names[0]); err != nil && !os.IsNotExist(err) {
			return dropped, err
		}
		names = names[1:]
		dropped++
	}
	return dropped, nil
}

func (q *queue) len() int {
	names, _ := q.list()
	return len(names)
}
