package stats

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fieldPaths lists the JSON paths of every leaf field of t: "requests.total",
// "files[].sha256".
func fieldPaths(prefix string, t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		ft := f.Type
		switch {
		case ft == reflect.TypeOf(time.Time{}):
			out = append(out, path)
		case ft.Kind() == reflect.Struct:
			out = append(out, fieldPaths(path+".", ft)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, fieldPaths(path+"[].", ft.Elem())...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// TestStatementListsEveryField fails when a field that can be sent is not
// documented in docs/privacy.md (as `path` in backquotes), and when the
// statement documents a field that no longer exists.
func TestStatementListsEveryField(t *testing.T) {
	doc, err := os.ReadFile("../docs/privacy.md")
	if err != nil {
		t.Fatal(err)
	}
	want := append(fieldPaths("", reflect.TypeOf(Batch{})), fieldPaths("sample.", reflect.TypeOf(SampleMeta{}))...)
	if len(want) < 30 {
		t.Fatalf("found only %d fields: the reflection is broken", len(want))
	}
	for _, p := range want {
		if !strings.Contains(string(doc), "`"+p+"`") {
			t.Errorf("docs/privacy.md does not document the field `%s`", p)
		}
	}
	// Every documented field row exists.
	known := make(map[string]bool)
	for _, p := range want {
		known[p] = true
	}
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| `") {
			p := strings.TrimPrefix(line, "| `")
			p, _, _ = strings.Cut(p, "`")
			if !known[p] {
				t.Errorf("docs/privacy.md documents `%s`, which is not a field", p)
			}
		}
	}
}
