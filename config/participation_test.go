package config

import (
	"strings"
	"testing"
	"time"
)

func TestParticipationKeys(t *testing.T) {
	f, err := Parse("p.toml", []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	k := f.Reputation.KSN
	if k.Participation.Participation || k.Samples != "off" || k.Interval.D() != time.Hour || k.MinClients != 2 || k.QueueMax != 48 {
		t.Errorf("defaults: got %+v, want participation off, samples off, 1h, 2, 48", k.Participation)
	}
	f, err = Parse("p.toml", []byte("[reputation.ksn]\nparticipation = true\nsamples = \"full-or-part\"\nsamples_max_size = \"1MiB\"\ninterval = \"5m\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := f.Reputation.KSN; !k.Participation.Participation || k.Samples != "full-or-part" || k.SamplesMaxSize != 1<<20 || k.Interval.D() != 5*time.Minute {
		t.Errorf("parsed: got %+v", k.Participation)
	}
	for _, tc := range []struct{ name, body, key string }{
		{"samples", `samples = "some"`, "reputation.ksn.samples"},
		{"interval", `interval = "1s"`, "reputation.ksn.interval"},
		{"queue", `queue_max = 0`, "reputation.ksn.queue_max"},
		{"size", `samples_max_size = "1GiB"`, "reputation.ksn.samples_max_size"},
		{"k", `min_clients = 0`, "reputation.ksn.min_clients"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.toml", []byte("[reputation.ksn]\n"+tc.body+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("got %v, want an error naming %s", err, tc.key)
			}
		})
	}
}
