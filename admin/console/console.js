// Picket admin console. Reads the admin API every few seconds. Everything
// that comes from traffic (hosts, URLs, rules) is set as text, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "picket-admin-token";
  const POLL_MS = 5000;
  const DEFAULT_STATEMENT =
    "Participation is voluntary and off by default. When it is on (KSN mode only), Picket sends anonymized " +
    "statistics: counters of requests, verdicts, blocks and scans, SHA-256 hashes of detected and unknown " +
    "executable files, hashed URL expressions of detections, the product version and a random installation ID. " +
    "Never client addresses, user names, cookies, headers, query strings, full URLs or bodies of clean traffic. " +
    "File samples are sent only when Samples allows it. In KPSN mode nothing is ever sent.";
  const VERDICT_COLORS = { clean: "#1f9d55", unknown: "#9aa5b5", unwanted: "#e09a1c", phishing: "#c2410c", malware: "#d8443c", other: "#6b7280" };
  const ACTION_COLORS = { allow: "#1f9d55", intercept: "#3a6ff7", tunnel: "#8aa4f8", warn: "#e09a1c", block: "#d8443c", error: "#6b7280", other: "#b0b7c3" };

  const $ = (id) => document.getElementById(id);
  let minutes = 180;
  let pending = null; // what to do once a token is entered
  let lastStatus = null;

  // --- API ---------------------------------------------------------------
  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  class HTTPError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  async function api(path, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (token()) headers.Authorization = "Bearer " + token();
    const res = await fetch(path, {
      method: opts.method || "GET", headers: headers, cache: "no-store", credentials: "omit",
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) throw new HTTPError(res.status, (data && data.error) || res.statusText);
    return data;
  }

  // withToken runs fn, asking for the token first when there is none and
  // again when the server refuses it.
  async function withToken(fn) {
    if (!token()) { askToken(fn); return; }
    try {
      await fn();
    } catch (e) {
      if (e.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        askToken(fn, "The token was refused.");
        return;
      }
      throw e;
    }
  }

  // --- token dialog --------------------------------------------------------
  function askToken(then, error) {
    pending = then || null;
    $("token-error").hidden = !error;
    $("token-error").textContent = error || "";
    $("token-dialog").hidden = false;
    $("token-input").value = "";
    $("token-input").focus();
  }

  function closeToken() {
    $("token-dialog").hidden = true;
    pending = null;
    updateTokenButton();
  }

  function updateTokenButton() {
    $("token-button").textContent = token() ? "Forget token" : "Enter token";
  }

  // --- rendering helpers -------------------------------------------------------
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmtInt(n) { return n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US"); }
  function fmtPct(r) { return (100 * (r || 0)).toFixed(1) + " %"; }
  function fmtBytes(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function fmtDuration(s) {
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    return m + "m " + (s % 60) + "s";
  }
  function fmtTime(iso) {
    const d = new Date(iso);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function kv(list, rows) {
    list.replaceChildren();
    for (const [k, v, dot] of rows) {
      list.append(el("dt", {}, k));
      const dd = el("dd");
      if (dot) dd.append(el("span", { class: "dot " + dot }));
      dd.append(document.createTextNode(v));
      list.append(dd);
    }
  }

  function mix(bar, legend, counts, colors) {
    bar.replaceChildren();
    legend.replaceChildren();
    const entries = Object.entries(counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const total = entries.reduce((s, [, n]) => s + n, 0);
    if (!total) { legend.append(el("li", { class: "muted" }, "nothing yet")); return; }
    for (const [k, n] of entries) {
      const c = colors[k] || colors.other;
      const seg = el("span", { title: k + ": " + n });
      seg.style.width = (100 * n / total) + "%";
      seg.style.background = c;
      bar.append(seg);
      const li = el("li");
      const sw = el("i");
      sw.style.background = c;
      li.append(sw, document.createTextNode(k + " " + fmtInt(n) + " (" + (100 * n / total).toFixed(1) + "%)"));
      legend.append(li);
    }
  }

  // --- status ------------------------------------------------------------
  function renderStatus(st) {
    lastStatus = st;
    $("version").textContent = st.version;
    const degraded = st.ready && st.degraded && st.degraded.length;
    $("ready").textContent = !st.ready ? "not ready" : degraded ? "degraded" : "ready";
    $("ready").className = "pill " + (!st.ready ? "bad" : degraded ? "warn" : "ok");
    $("ready").title = st.not_ready || (degraded ? st.degraded.join("\n") : "");
    $("uptime").textContent = "up " + fmtDuration(st.uptime_seconds);
    $("t-conns").textContent = st.open_connections === null ? "–" : fmtInt(st.open_connections);

    mix($("verdict-bar"), $("verdict-legend"), st.totals.verdicts, VERDICT_COLORS);
    mix($("action-bar"), $("action-legend"), st.totals.actions, ACTION_COLORS);

    const rows = [];
    const r = st.reputation;
    if (r) {
      rows.push(["Reputation", r.healthy ? "healthy (breaker closed)" : "breaker " + r.breaker, r.healthy ? "ok" : "bad"]);
      rows.push(["Lookups", fmtInt(r.lookups) + " · failures " + fmtInt(r.failures)]);
      rows.push(["Verdict cache", fmtPct(r.hit_ratio) + " hits · " + fmtInt(r.cached_urls) + " URLs · " + fmtInt(r.cached_prefixes) + " prefixes"]);
    } else {
      rows.push(["Reputation", "not configured", "warn"]);
    }
    for (const d of st.databases) rows.push(["Database " + d.name, "v" + d.version + " · " + fmtInt(d.entries) + " entries"]);
    if (st.ca) rows.push(["Certificate cache", fmtPct(st.ca.hit_ratio) + " hits · " + fmtInt(st.ca.cache_entries) + " leaves · " + fmtInt(st.ca.mints) + " minted"]);
    if (st.scanner) {
      const s = st.scanner;
      rows.push(["Scanner", fmtInt(s.scans) + " scans · " + fmtInt(s.malicious) + " malicious · " + fmtInt(s.errors) + " errors",
        s.errors ? "warn" : "ok"]);
      rows.push(["Scan memory", fmtBytes(s.memory_in_use)]);
      for (const e of s.engines || []) {
        const sigs = e.signatures ? " · signatures " + e.signatures + (e.signature_date ? " (" + e.signature_date.slice(0, 10) + ")" : "") : "";
        rows.push(["Engine " + e.name, e.healthy
          ? "healthy · " + (e.version || e.kind) + sigs + " · " + fmtInt(e.scans) + " scans · " + fmtInt(e.detections) + " detections · " + fmtInt(e.errors) + " errors"
          : "unhealthy: " + (e.error || "no answer") + " · " + e.address, e.healthy ? (e.errors ? "warn" : "ok") : "bad"]);
      }
    }
    rows.push(["Auto-bypassed", st.auto_bypassed.length ? st.auto_bypassed.join(", ") : "none", st.auto_bypassed.length ? "warn" : ""]);
    kv($("health-list"), rows);

    const sys = [["Mode", st.mode || "–"], ["Started", new Date(st.started).toLocaleString("en-GB")]];
    for (const l of st.listeners) sys.push(["Listener " + l.name, l.addr]);
    if (st.ca) sys.push(["CA fingerprint (SHA-256)", st.ca.fingerprint || "–"]);
    if (!st.ready) sys.push(["Not ready", st.not_ready, "bad"]);
    for (const d of st.degraded || []) sys.push(["Degraded", d, "warn"]);
    kv($("system-list"), sys);
    renderFeeds(st.feeds || []);

    $("flush-button").disabled = !st.endpoints.cache_flush;
    $("reload-button").disabled = !st.endpoints.reload;
    $("statement").textContent = st.participation_statement || DEFAULT_STATEMENT;
    renderParticipation(st.participation, st.endpoints.set_participation);
  }

  function renderParticipation(p, settable) {
    const sw = $("participation-switch");
    if (!p) {
      sw.checked = false;
      sw.disabled = true;
      $("samples").disabled = true;
      $("participation-state").textContent = "unavailable in this build";
      return;
    }
    sw.checked = p.participation;
    sw.disabled = !settable;
    sw.setAttribute("aria-checked", String(p.participation));
    $("participation-state").textContent = p.participation ? "on" : "off";
    $("samples").value = p.samples;
    $("samples").disabled = !settable || !p.participation;
  }

  // --- databases: the threat-feed sources and their freshness ------------
  function fmtAge(iso) {
    const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    return s < 60 ? "just now" : fmtDuration(s) + " ago";
  }
  function fmtIn(iso) {
    const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
    return s <= 0 ? "due" : "in " + fmtDuration(s);
  }

  function renderFeeds(feeds) {
    const body = $("feeds-body");
    body.replaceChildren();
    const stale = feeds.filter((f) => f.stale).length;
    const entries = feeds.reduce((n, f) => n + f.entries, 0);
    $("feeds-summary").textContent = feeds.length
      ? feeds.length + " sources · " + fmtInt(entries) + " entries" + (stale ? " · " + stale + " stale" : "") : "";
    if (!feeds.length) {
      const tr = el("tr");
      tr.append(el("td", { colspan: "7", class: "muted" }, "No feed sources (the reputation service is remote)."));
      body.append(tr);
      return;
    }
    for (const f of feeds) {
      const tr = el("tr", { class: "feed-row" });
      const src = el("td", { class: "src" });
      src.append(el("div", {}, f.name), el("div", { class: "u" }, f.url || f.path));
      tr.append(src);
      tr.append(el("td", { "data-label": "Format" }, f.format));
      tr.append(el("td", { class: "num", "data-label": "Entries" }, fmtInt(f.entries)));
      tr.append(el("td", { class: "num", "data-label": "Bad lines" }, fmtInt(f.bad_lines)));
      tr.append(el("td", { "data-label": "Last success" }, f.last_success ? fmtAge(f.last_success) : "never"));
      tr.append(el("td", { "data-label": "Next check" }, f.url && f.next_attempt ? fmtIn(f.next_attempt) : "–"));
      const state = el("td", { class: "state" });
      let word = "ok", dot = "ok";
      if (f.missing) { word = "no copy yet"; dot = "bad"; }
      else if (f.stale) { word = "stale"; dot = "bad"; }
      else if (f.failures) { word = "failing, serving the last good copy"; dot = "warn"; }
      state.append(el("span", { class: "dot " + dot }), document.createTextNode(word));
      if (f.failures && f.last_error) state.append(el("div", { class: "err" }, f.failures + "× " + f.last_error));
      tr.append(state);
      body.append(tr);
    }
  }

  // --- chart -------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function renderSeries(points) {
    const box = $("chart");
    const W = Math.max(box.clientWidth, 280), H = box.clientWidth < 480 ? 180 : 220;
    const L = 36, R = 8, T = 8, B = 20;
    const max = Math.max(4, ...points.map((p) => p.requests));
    const step = niceStep(max / 4), top = step * Math.ceil(max / step), lines = Math.round(top / step);
    const x = (i) => L + (points.length <= 1 ? 0 : (i * (W - L - R)) / (points.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none" });
    for (let k = 0; k <= lines; k++) {
      const v = step * k;
      root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const t = svg("text", { class: "axis", x: L - 4, y: y(v) + 4, "text-anchor": "end" });
      t.textContent = fmtShort(v);
      root.append(t);
    }
    const ticks = Math.min(6, points.length);
    for (let k = 0; k < ticks; k++) {
      const i = Math.round((k * (points.length - 1)) / Math.max(ticks - 1, 1));
      const d = new Date(points[i].t * 1000);
      const t = svg("text", { class: "axis", x: x(i), y: H - 4, "text-anchor": k === 0 ? "start" : k === ticks - 1 ? "end" : "middle" });
      t.textContent = d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
      root.append(t);
    }
    const line = (key) => points.map((p, i) => (i ? "L" : "M") + x(i).toFixed(1) + " " + y(p[key]).toFixed(1)).join(" ");
    if (points.length) {
      root.append(svg("path", { class: "a-req", d: line("requests") + " L" + x(points.length - 1) + " " + y(0) + " L" + x(0) + " " + y(0) + " Z" }));
    }
    root.append(svg("path", { class: "l-req", d: line("requests") }));
    root.append(svg("path", { class: "l-scan", d: line("scans") }));
    root.append(svg("path", { class: "l-blk", d: line("blocks") }));
    box.replaceChildren(root);
  }

  // renderTiles fills the "last minute" tiles: the requests that finished in
  // the last 60 seconds, a rolling window the server keeps (the chart's
  // points are calendar minutes: the last full one is up to two minutes
  // old, the current one only partial).
  function renderTiles(w) {
    w = w || {};
    $("t-rpm").textContent = fmtInt(w.requests || 0);
    $("t-bpm").textContent = fmtInt(w.blocks || 0);
    $("t-spm").textContent = fmtInt(w.scans || 0);
  }

  // niceStep is the smallest 1, 2 or 5 times a power of ten at least v.
  function niceStep(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function fmtShort(v) { return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k" : String(Math.round(v)); }

  // --- recent blocks ---------------------------------------------------------
  function renderBlocks(list) {
    const body = $("blocks-body");
    body.replaceChildren();
    $("blocks-count").textContent = list.length ? "last " + list.length : "";
    if (!list.length) {
      const tr = el("tr");
      tr.append(el("td", { colspan: "5", class: "muted" }, "No blocks yet."));
      body.append(tr);
      return;
    }
    for (const d of list) {
      const tr = el("tr", { class: "block-row" });
      tr.append(el("td", {}, fmtTime(d.time)));
      const u = el("td", { class: "url" });
      u.append(el("div", {}, d.host || "–"), el("div", { class: "u" }, d.url));
      tr.append(u);
      tr.append(el("td", {}, d.rule || d.stage || "–"));
      const v = el("td");
      v.append(el("span", { class: "tag" }, d.verdict || (d.scan ? d.scan.result : "rule")));
      // The scan was of what the client sent (an upload), not of the response.
      if (d.scan && d.scan.upload) v.append(" ", el("span", { class: "tag upload", title: "The scanned body was the client's upload" }, "upload"));
      if (d.scan && d.scan.threat) v.append(el("div", { class: "small muted" }, d.scan.threat));
      tr.append(v);
      tr.append(el("td", { class: "incident" }, d.incident || "–"));
      body.append(tr);
    }
  }

  // --- polling -------------------------------------------------------------
  function banner(msg) {
    $("banner").hidden = !msg;
    $("banner").textContent = msg || "";
  }

  let refreshing = false;
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      const [st, se, de] = await Promise.all([
        api("/api/v1/status"),
        api("/api/v1/series?minutes=" + Math.min(minutes, lastStatus ? lastStatus.history_minutes : minutes)),
        api("/api/v1/decisions?action=block&limit=20"),
      ]);
      renderStatus(st);
      renderSeries(se.points);
      renderTiles(se.last_minute);
      renderBlocks(de.decisions);
      banner("");
    } catch (e) {
      if (e.status === 401) {
        banner("This console is not on the Picket host: enter the admin token to see it.");
        if ($("token-dialog").hidden) askToken(refresh, token() ? "The token was refused." : "");
      } else {
        banner("Cannot reach Picket: " + e.message);
      }
    } finally {
      refreshing = false;
    }
  }

  // --- actions -------------------------------------------------------------
  async function setParticipation(on, samples) {
    const p = await api("/api/v1/participation", { method: "POST", body: { participation: on, samples: on ? samples : "off" } });
    renderParticipation(p, true);
    if (lastStatus) lastStatus.participation = p;
  }

  function onSwitch() {
    const sw = $("participation-switch");
    const want = sw.checked;
    // Show the confirmed state only: flip back until the server agrees.
    sw.checked = !want;
    const samples = $("samples").value;
    withToken(() => setParticipation(want, samples)).catch((e) => result("Participation: " + e.message, true));
  }

  function onSamples() {
    const samples = $("samples").value;
    withToken(() => setParticipation(true, samples)).catch((e) => result("Samples: " + e.message, true));
  }

  function result(msg, bad) {
    $("action-result").textContent = msg;
    $("action-result").className = "small " + (bad ? "error" : "muted");
  }

  function post(path, done) {
    return () => withToken(async () => {
      await api(path, { method: "POST" });
      result(done + " at " + new Date().toLocaleTimeString("en-GB"));
      refresh();
    }).catch((e) => result(e.message, true));
  }

  document.addEventListener("DOMContentLoaded", () => {
    updateTokenButton();
    $("statement").textContent = DEFAULT_STATEMENT;
    $("participation-switch").addEventListener("change", onSwitch);
    $("samples").addEventListener("change", onSamples);
    $("flush-button").addEventListener("click", post("/api/v1/cache/flush", "Caches flushed"));
    $("reload-button").addEventListener("click", post("/api/v1/reload", "Configuration reloaded"));
    $("token-button").addEventListener("click", () => {
      if (token()) { sessionStorage.removeItem(TOKEN_KEY); updateTokenButton(); } else askToken(null);
    });
    $("token-cancel").addEventListener("click", closeToken);
    $("token-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      const then = pending;
      closeToken();
      if (then) {
        try { await withToken(then); } catch (e) { result(e.message, true); }
      }
    });
    for (const b of document.querySelectorAll(".range button")) {
      b.addEventListener("click", () => {
        minutes = Number(b.dataset.minutes);
        for (const o of document.querySelectorAll(".range button")) o.classList.toggle("on", o === b);
        refresh();
      });
    }
    let resize = null;
    window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(refresh, 200); });
    refresh();
    setInterval(refresh, POLL_MS);
  });
})();
