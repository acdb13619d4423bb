package admin

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Feed is one threat-feed source of the embedded database and how fresh it
// is: GET /api/v1/status "feeds", the picket_feed_* metrics, the console's
// Databases panel and /readyz's degraded detail.
type Feed struct {
	Name     string `json:"name"`
	Format   string `json:"format"`
	URL      string `json:"url,omitempty"` // a download's URL without its query
	Path     string `json:"path"`
	Entries  int    `json:"entries"`
	BadLines int    `json:"bad_lines"`
	// Missing is true for a download that has no copy yet.
	Missing     bool      `json:"missing,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastChange  time.Time `json:"last_change,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Failures counts consecutive failed downloads, Errors the failed
	// downloads since Picket started.
	Failures int    `json:"failures"`
	Errors   uint64 `json:"errors"`
	// AgeSeconds is the time since LastSuccess; null when there was none.
	AgeSeconds        *int64 `json:"age_seconds"`
	StaleAfterSeconds int64  `json:"stale_after_seconds,omitempty"`
	// Stale makes Picket report itself degraded (not unready).
	Stale bool `json:"stale"`
}

// degraded words the stale feeds for /readyz and the status.
func degraded(feeds []Feed) []string {
	var out []string
	for _, f := range feeds {
		if !f.Stale {
			continue
		}
		switch {
		case f.Missing || f.AgeSeconds == nil:
			msg := fmt.Sprintf("feed %s: no copy downloaded yet", f.Name)
			if f.LastError != "" {
				msg += " (" + f.LastError + ")"
			}
			out = append(out, msg)
		default:
			out = append(out, fmt.Sprintf("feed %s: last successful download %s ago, stale after %s",
				f.Name, time.Duration(*f.AgeSeconds)*time.Second, time.Duration(f.StaleAfterSeconds)*time.Second))
		}
	}
	return out
}

var (
	feedEntries  = desc("picket_feed_entries", "Entries of a threat-feed source in the database in force.", "source")
	feedBad      = desc("picket_feed_bad_lines", "Lines of a threat-feed source that could not be used.", "source")
	feedAge      = desc("picket_feed_age_seconds", "Seconds since a threat-feed source was last downloaded or confirmed current (a local file: modified); absent before the first success.", "source")
	feedSuccess  = desc("picket_feed_last_success_timestamp_seconds", "When a threat-feed source was last downloaded or confirmed current, in seconds since the Unix epoch.", "source")
	feedErrors   = desc("picket_feed_errors_total", "Failed downloads of a threat-feed source since Picket started (each keeps the last good copy).", "source")
	feedFailures = desc("picket_feed_consecutive_failures", "Failed downloads of a threat-feed source since its last success.", "source")
	feedStale    = desc("picket_feed_stale", "1 when a threat-feed source is older than its stale_after (or has no copy yet): Picket reports itself degraded.", "source")
)

// feedCollector reads the feeds at scrape time.
type feedCollector struct{ feeds func() []Feed }

func (c feedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{feedEntries, feedBad, feedAge, feedSuccess, feedErrors, feedFailures, feedStale} {
		ch <- d
	}
}

func (c feedCollector) Collect(ch chan<- prometheus.Metric) {
	if c.feeds == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
	}
	for _, f := range c.feeds() {
		gauge(feedEntries, float64(f.Entries), f.Name)
		gauge(feedBad, float64(f.BadLines), f.Name)
		if f.AgeSeconds != nil {
			gauge(feedAge, float64(*f.AgeSeconds), f.Name)
			gauge(feedSuccess, float64(f.LastSuccess.UnixNano())/1e9, f.Name)
		}
		ch <- prometheus.MustNewConstMetric(feedErrors, prometheus.CounterValue, float64(f.Errors), f.Name)
		gauge(feedFailures, float64(f.Failures), f.Name)
		gauge(feedStale, b2f(f.Stale), f.Name)
	}
}
