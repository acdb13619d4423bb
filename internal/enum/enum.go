// Package enum names the values of Picket's small enums — uint8 constants
// counted from 0, each with a table of names in value order — so that every
// enum prints and parses its names the same way: policy's Action and Stage,
// reputation's Kind and Source, scanner's Verdict, Source and Type, stats'
// Samples.
package enum

import (
	"fmt"
	"strings"
)

// Name returns the name of v: names[v], or "typ(v)" ("Action(7)") for a
// value without one.
func Name[E ~uint8](typ string, names []string, v E) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, uint8(v))
}

// Parse returns the value named s among the names from first on (the
// values before first cannot be written). An unknown name returns 0 and an
// error that says what was expected: unknown action "deny" (want allow,
// warn or block).
func Parse[E ~uint8](what string, names []string, first E, s string) (E, error) {
	for i := int(first); i < len(names); i++ {
		if names[i] == s {
			return E(i), nil
		}
	}
	return 0, fmt.Errorf("unknown %s %q (want %s)", what, s, list(names[first:]))
}

// list writes names as "a, b or c".
func list(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
