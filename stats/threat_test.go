package stats

import "testing"

func TestThreatName(t *testing.T) {
	for _, tc := range []struct{ source, name, want string }{
		{"engine", "Win.Trojan.Agent-1234", "Win.Trojan.Agent-1234"},
		{"engine", "HEUR:Trojan.Win32.Generic", "HEUR:Trojan.Win32.Generic"},
		{"eicar", "EICAR-Test-File", "EICAR-Test-File"},
		{"reputation", "malware-distribution", "malware-distribution"},
		{"engine", "Acme.Payroll.Leak.UNOFFICIAL", "local"},
		{"signature", "Acme.Secret.Project", "local"},
		{"engine", "modified by the ICAP service", "other"},
		{"engine", "bob@example.com", "other"},
		{"engine", string(make([]byte, 65)), "other"},
		{"engine", "", ""},
	} {
		if got := threatName(tc.source, tc.name); got != tc.want {
			t.Errorf("threatName(%q, %q) = %q, want %q", tc.source, tc.name, got, tc.want)
		}
	}
}
