package admin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/proxy"
)

// artifacts is where screenshots go: $PICKET_ARTIFACTS, or test-artifacts/
// at the repository root.
func artifacts(t *testing.T) string {
	dir := os.Getenv("PICKET_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts headless Chromium with a fresh profile. It only ever loads
// the loopback admin page: no proxy, no background networking.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		// Not a skip: a test that passes without running is a defect.
		t.Fatal("Chromium is needed (make tools installs it)")
	}
	tmp := testutil.ShortTempDir(t, "pk-chr-")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		// Its own TMPDIR, removed at the end: Chromium keeps the profile's
		// singleton socket in a directory there (org.chromium.Chromium.*)
		// that outlives the browser.
		chromedp.Env("TMPDIR=" + tmp),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("no-default-browser-check", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func do2(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	run(t, ctx, what, chromedp.Steps(steps...))
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := run(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(artifacts(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// TestConsoleBrowser loads the console in headless Chromium at desktop and
// phone widths, checks what it shows and turns participation on through the
// page's switch.
func TestConsoleBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	s, parts := newTestServer(t, nil)
	now := time.Now()
	// Forty minutes of background traffic for the chart, then the workload.
	for m := 40; m >= 1; m-- {
		at := now.Add(-time.Duration(m) * time.Minute)
		for k := range 20 + (m*7)%15 {
			e := proxy.Event{Time: at, Method: "GET", Action: "allow", Verdict: "clean", Source: "database", Host: "bg.example"}
			switch {
			case k%9 == 0:
				e.Scan = &proxy.ScanEvent{Type: "zip", Result: "clean"}
			case k == 5 && m%3 == 0:
				e.Action, e.Verdict, e.Source, e.Rule = "block", "malware", "database", "reputation"
			}
			s.Observe(e)
		}
	}
	// An infected upload, blocked: the console marks its scan as an upload's.
	s.Observe(proxy.Event{Time: now, Method: "POST", URL: "http://up.example/form", Host: "up.example", Status: 403,
		Action: "block", Stage: "scan", Rule: "scanner.upload.eicar", Incident: "INC-UP",
		Upload: &proxy.ScanEvent{Type: "eicar", Result: "malicious", Threat: "EICAR-Test-File", Upload: true}})
	for i, e := range workload(now) {
		e.Time = now.Add(time.Duration(i) * time.Second)
		s.Observe(e)
	}
	base := serve(t, s)
	ctx := browser(t)

	// 1. Desktop: the status, the charts, the recent blocks.
	do2(t, ctx, "load the console",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#blocks-body tr.block-row")),
		chromedp.WaitVisible(chromedp.CSS("#chart svg path.l-req")),
	)
	text := func(sel string) string {
		return run(t, ctx, "text of "+sel, chromedp.TextContent(chromedp.CSS(sel)))
	}
	checks := []struct{ sel, want string }{
		{"#version", "v-test"},
		{"#ready", "ready"},
		{"#system-list", "AB:CD:EF"},
		{"#system-list", "127.0.0.1:3128"},
		{"#system-list", "kpsn (embedded database)"},
		{"#health-list", "healthy (breaker closed)"},
		{"#health-list", "60.0 % hits"},
		{"#health-list", "pinned.example"},
		{"#health-list", "v4 · 1,200 entries"},
		{"#health-list", "Engine clamd"},
		{"#health-list", "healthy · ClamAV 1.4.6 · signatures 27000 (2026-12-01) · 3 scans · 1 detections · 0 errors"},
		{"#health-list", "Engine icap"},
		{"#health-list", "unhealthy: icap: dial tcp 127.0.0.1:1344: connect: connection refused · icap://127.0.0.1:1344/avscan"},
		{"#blocks-body", "INC-SCAN"},
		{"#blocks-body", "INC-A"},
		{"#blocks-body", "badb.example"},
		{"#blocks-body", "reputation"},
		{"#blocks-body", "phishing"},
		{"#blocks-body", "EICAR-Test-File"},
		{"#verdict-legend", "phishing 3"},
		{"#action-legend", "block "},
		{"#t-conns", "7"},
		{"#participation-state", "off"},
		{"#statement", "Never client addresses"},
		{"#feeds-summary", "3 sources · 13,747 entries"},
		{"#feeds-body", "urlhaus-csv"},
		{"#feeds-body", "12,345"},
		{"#feeds-body", "2d 0h ago"}, // the local file; the download is "10m …s ago", seconds depending on the machine
		{"#feeds-body", "failing, serving the last good copy"},
		{"#feeds-body", "4× feed server answered with an error: 503"},
	}
	for _, c := range checks {
		if got := text(c.sel); !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want it to contain %q", c.sel, got, c.want)
		}
	}
	first := run(t, ctx, "first block rows", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#blocks-body tr.block-row td.incident")].slice(0, 4).map(td => td.textContent)`))
	if strings.Join(first, " ") != "INC-SCAN INC-C INC-B INC-A" {
		t.Errorf("block rows: got %v first, want the newest first", first)
	}
	// The upload's scan is marked as one; the download's (INC-SCAN) is not.
	marked := run(t, ctx, "upload markers", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#blocks-body tr.block-row")].filter(tr => tr.querySelector(".tag.upload")).map(tr => tr.querySelector("td.incident").textContent + " " + tr.querySelector(".tag.upload").textContent)`))
	if strings.Join(marked, ",") != "INC-UP upload" {
		t.Errorf("rows marked as an upload: got %q, want only INC-UP's", marked)
	}
	// Every resource the page loaded came from the admin listener.
	urls := run(t, ctx, "resources", chromedp.Evaluate[[]string](
		`performance.getEntriesByType("resource").map(e => e.name).concat([location.href])`))
	for _, u := range urls {
		if !strings.HasPrefix(u, base+"/") {
			t.Errorf("the page loaded %s, want only %s/...", u, base)
		}
	}
	screenshot(t, ctx, "console-desktop.png")

	// 2. The participation switch: it asks for the token, then POSTs.
	do2(t, ctx, "click the switch",
		chromedp.Click(chromedp.CSS("label.switch-row")),
		chromedp.WaitVisible(chromedp.CSS("#token-dialog")),
	)
	if parts.participation.Participation {
		t.Fatal("participation changed before the token was given")
	}
	if checked := run(t, ctx, "switch state", chromedp.Evaluate[bool](`document.getElementById("participation-switch").checked`)); checked {
		t.Error("the switch shows on before the server agreed")
	}
	screenshot(t, ctx, "console-token-dialog.png")
	do2(t, ctx, "enter the token",
		chromedp.SendKeys(chromedp.CSS("#token-input"), testToken),
		chromedp.Click(chromedp.CSS("#token-submit")),
		chromedp.WaitNotVisible(chromedp.CSS("#token-dialog")),
	)
	run(t, ctx, "wait for the switch", chromedp.Poll[bool](
		`document.getElementById("participation-state").textContent === "on" && document.getElementById("participation-switch").checked`,
		chromedp.WithPollingTimeout(10*time.Second)))
	parts.mu.Lock()
	got := parts.participation
	parts.mu.Unlock()
	if got != (Participation{Participation: true, Samples: "off"}) {
		t.Errorf("server state: got %+v, want on with samples off", got)
	}
	// The token is kept for the tab: the samples choice goes through at once.
	do2(t, ctx, "choose samples", chromedp.SetValue(chromedp.CSS("#samples"), "full"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("samples").dispatchEvent(new Event("change"))`))
	run(t, ctx, "wait for samples", chromedp.Poll[bool](`!document.getElementById("samples").disabled`,
		chromedp.WithPollingTimeout(10*time.Second)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		parts.mu.Lock()
		got = parts.participation
		parts.mu.Unlock()
		if got.Samples == "full" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the page's POST is in flight; nothing to inject here
	}
	if got != (Participation{Participation: true, Samples: "full"}) {
		t.Errorf("server state after samples: got %+v, want on with full samples", got)
	}

	// 3. Phone width: nothing sticks out sideways; the state survives a reload.
	do2(t, ctx, "phone width",
		chromedp.EmulateViewport(375, 740, chromedp.EmulateMobile),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("#blocks-body tr.block-row")),
		chromedp.WaitVisible(chromedp.CSS("#chart svg path.l-req")),
	)
	run(t, ctx, "wait for status", chromedp.Poll[bool](`document.getElementById("participation-state").textContent === "on"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if w := run(t, ctx, "page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
		t.Errorf("page width at 375px: got %d, want no horizontal scrolling", w)
	}
	if w := run(t, ctx, "card width", chromedp.Evaluate[float64](`document.getElementById("blocks").getBoundingClientRect().width`)); w > 375 || w < 300 {
		t.Errorf("card width at 375px: got %v, want the cards to fill the phone's width", w)
	}
	if got := text("#blocks-body"); !strings.Contains(got, "INC-SCAN") {
		t.Errorf("phone: got %q, want the incident IDs", got)
	}
	screenshot(t, ctx, "console-phone.png")
}
