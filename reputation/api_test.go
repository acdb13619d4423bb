package reputation

import (
	"testing"
	"time"
)

func TestDecodeLookupResponse(t *testing.T) {
	h := HashExpression("a.test/")
	a, err := DecodeLookupResponse([]byte(`{"matches":[{"hash":"` + h.String() + `","verdict":"phishing","category":"c","threat":"T","ttl":60}],"negative_ttl":30}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Matches) != 1 || a.Matches[0].Hash != h || a.Matches[0].Verdict.Kind != KindPhishing ||
		a.Matches[0].Verdict.TTL != time.Minute || a.NegativeTTL != 30*time.Second {
		t.Errorf("got %+v", a)
	}
	for _, bad := range []string{`{`, `{"matches":[{"hash":"ab"}]}`, `{"negative_ttl":-1}`,
		`{"matches":[{"hash":"` + h.String() + `","verdict":"evil"}]}`, `{"matches":[{"hash":"` + h.String() + `","ttl":-5}]}`} {
		if _, err := DecodeLookupResponse([]byte(bad)); err == nil {
			t.Errorf("DecodeLookupResponse(%s): no error", bad)
		}
	}
}

func FuzzDecodeLookupResponse(f *testing.F) {
	f.Add([]byte(`{"matches":[{"hash":"` + HashExpression("x").String() + `","verdict":"malware","ttl":5}],"negative_ttl":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeLookupResponse(data)
		if err != nil {
			return
		}
		for _, m := range a.Matches {
			if m.Verdict.TTL < 0 || m.Verdict.Kind > KindMalware {
				t.Fatalf("accepted %+v", m)
			}
		}
	})
}
