package enum

import "testing"

type color uint8

var colorNames = []string{"none", "red", "green", "blue"}

func TestName(t *testing.T) {
	for _, tc := range []struct {
		v    color
		want string
	}{
		{0, "none"},
		{3, "blue"},
		{4, "color(4)"},
		{255, "color(255)"},
	} {
		if got := Name("color", colorNames, tc.v); got != tc.want {
			t.Errorf("Name(%d): got %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		first   color
		s       string
		want    color
		wantErr string
	}{
		{name: "first name", s: "none", want: 0},
		{name: "last name", s: "blue", want: 3},
		{name: "unknown", s: "Red", wantErr: `unknown color "Red" (want none, red, green or blue)`},
		{name: "from first", first: 1, s: "green", want: 2},
		{name: "before first", first: 1, s: "none", wantErr: `unknown color "none" (want red, green or blue)`},
		{name: "empty", first: 3, s: "", wantErr: `unknown color "" (want blue)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("color", colorNames, tc.first, tc.s)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || got != 0 {
					t.Fatalf("got %d, %v; want 0, %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
