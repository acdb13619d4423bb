package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// window is a compiled time window: days of the week and a wall-clock span
// in minutes since midnight, evaluated in the engine's time zone.
type window struct {
	days       uint8 // bit set of time.Weekday; all seven when no days given
	start, end int   // minutes, [start, end); start > end spans midnight
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

const allDays = 1<<7 - 1

func compileWindow(days []string, hours string) (*window, []keyError) {
	var errs []keyError
	w := &window{start: 0, end: 24 * 60}
	for _, d := range days {
		wd, ok := dayNames[strings.ToLower(strings.TrimSpace(d))]
		if !ok {
			errs = append(errs, keyError{"days", fmt.Errorf("unknown day %q (want mon, tue, wed, thu, fri, sat or sun)", d)})
			continue
		}
		w.days |= 1 << wd
	}
	if len(days) == 0 {
		w.days = allDays
	}
	if hours != "" {
		from, to, ok := strings.Cut(hours, "-")
		s, err1 := parseClock(from, false)
		e, err2 := parseClock(to, true)
		switch {
		case !ok:
			errs = append(errs, keyError{"hours", fmt.Errorf("invalid window %q (want \"HH:MM-HH:MM\", e.g. \"22:00-06:00\")", hours)})
		case err1 != nil || err2 != nil:
			errs = append(errs, keyError{"hours", fmt.Errorf("invalid window %q: %w", hours, errors.Join(err1, err2))})
		case s == e:
			errs = append(errs, keyError{"hours", fmt.Errorf("invalid window %q: empty (start equals end)", hours)})
		default:
			w.start, w.end = s, e
		}
	}
	return w, errs
}

// parseClock parses "HH:MM"; "24:00" only as an end.
func parseClock(s string, end bool) (int, error) {
	s = strings.TrimSpace(s)
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(hh) == 0 || len(hh) > 2 || len(mm) != 2 {
		return 0, fmt.Errorf("bad time %q (want HH:MM)", s)
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 || h > 24 || h == 24 && (m != 0 || !end) {
		return 0, fmt.Errorf("bad time %q (want 00:00 to 23:59, or 24:00 as an end)", s)
	}
	return h*60 + m, nil
}

// contains reports whether t, read as wall-clock time, is in the window.
// The part of an overnight window after midnight belongs to the day before.
func (w *window) contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	if w.start < w.end {
		return m >= w.start && m < w.end && w.days&(1<<day) != 0
	}
	// Spans midnight.
	if m >= w.start {
		return w.days&(1<<day) != 0
	}
	if m < w.end {
		return w.days&(1<<((day+6)%7)) != 0
	}
	return false
}
