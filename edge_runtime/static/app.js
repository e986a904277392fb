// The ramanedge dashboard: polls /api/state once a second and draws what the daemon reports.
// No library, nothing fetched from the internet; every value goes into the page as text (textContent).
"use strict";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const text = (id, v) => { $(id).textContent = v === null || v === undefined || v === "" ? "–" : String(v); };

function fmt(v, digits) {
  return typeof v === "number" ? v.toFixed(digits) : "–";
}

function niceTicks(lo, hi, n) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(t);
  return out;
}

function drawSpectrum(canvas, axis, y, colour, ylabel) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  if (!axis || axis.length < 2) return;
  const pad = { l: 62, r: 8, t: 8, b: 30 };
  const x0 = Math.min(...axis), x1 = Math.max(...axis);
  let y0 = Math.min(...y), y1 = Math.max(...y);
  if (y1 === y0) { y1 += 1; y0 -= 1; }
  const px = (x) => pad.l + (x - x0) / (x1 - x0) * (w - pad.l - pad.r);
  const py = (v) => h - pad.b - (v - y0) / (y1 - y0) * (h - pad.t - pad.b);
  g.strokeStyle = "#ccc"; g.fillStyle = "#667"; g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
  g.textAlign = "center"; g.textBaseline = "top";
  for (const t of niceTicks(x0, x1, Math.max(2, Math.floor(w / 90)))) {
    g.beginPath(); g.moveTo(px(t), pad.t); g.lineTo(px(t), h - pad.b); g.stroke();
    g.fillText(String(Math.round(t)), px(t), h - pad.b + 3);
  }
  g.textAlign = "right"; g.textBaseline = "middle";
  for (const t of niceTicks(y0, y1, 4)) {
    g.beginPath(); g.moveTo(pad.l, py(t)); g.lineTo(w - pad.r, py(t)); g.stroke();
    g.fillText(Math.abs(t) >= 1e4 ? t.toExponential(0) : String(+t.toFixed(2)), pad.l - 4, py(t));
  }
  g.textAlign = "center"; g.textBaseline = "bottom";
  g.fillText("Raman shift (cm\u207b\u00b9)", (pad.l + w - pad.r) / 2, h);
  g.save();
  g.translate(2, (pad.t + h - pad.b) / 2); g.rotate(-Math.PI / 2);
  g.textAlign = "center"; g.textBaseline = "top";
  g.fillText(ylabel || "intensity (as received)", 0, 0);
  g.restore();
  g.strokeStyle = colour; g.lineWidth = 1.4; g.beginPath();
  for (let i = 0; i < axis.length; i++) {
    const X = px(axis[i]), Y = py(y[i]);
    if (i === 0) g.moveTo(X, Y); else g.lineTo(X, Y);
  }
  g.stroke();
}

function row(cells, cls, id) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  if (id !== undefined) tr.dataset.id = String(id);
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c === null || c === undefined ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function renderDl(dl, pairs) {
  dl.replaceChildren();
  if (pairs.length === 0) pairs = [["none", ""]];
  for (const [k, v] of pairs) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    dl.append(dt, dd);
  }
}

let lastLatestId = null;
let lastState = null;

function render(s) {
  lastState = s;
  const st = $("status");
  st.textContent = s.ready ? "serving" : (s.stopping ? "stopping" : "not ready");
  st.className = "pill " + (s.ready ? "ok" : "bad");
  const m = s.model || {};
  text("model-name", m.model ? m.model.split("/").pop() : null);
  text("model-sha", m.model_sha256 ? m.model_sha256.slice(0, 16) + "…" : null);
  $("model-sha").title = m.model_sha256 || "";
  text("model-classes", m.classes ? m.classes.join(", ") : null);
  text("model-validated", m.validated ? "yes" : (m.validation ? "no: " + m.validation : null));
  $("model-validated").className = m.validated ? "ok" : "bad";
  text("provider", m.provider);
  const u = s.model_updates || {};
  text("model-updates", u.watching ? `${u.accepted || 0} swapped, ${u.rejected || 0} rejected` : "not watched");
  const rej = $("model-rejected");
  if (u.last_rejected) {
    rej.hidden = false;
    rej.textContent = "last rejected update: " + u.last_rejected.reason;
  } else {
    rej.hidden = true;
  }

  const k = s.stats || {};
  text("throughput", fmt(k.throughput_per_s, 1));
  text("lat-p50", k.latency_ms ? fmt(k.latency_ms.p50, 1) : null);
  text("lat-p95", k.latency_ms ? fmt(k.latency_ms.p95, 1) : null);
  const stg = k.latency_ms_by_stage || {};
  text("lat-model-p50", stg.inference ? fmt(stg.inference.p50, 2) : null);
  text("lat-model-p95", stg.inference ? fmt(stg.inference.p95, 2) : null);
  text("lat-queue-p50", stg.queue ? fmt(stg.queue.p50, 1) : null);
  text("lat-queue-p95", stg.queue ? fmt(stg.queue.p95, 1) : null);
  const dw = k.drift_window;
  const dwe = $("drift-window");
  if (!dw) {
    dwe.textContent = "not available (the model carries no drift model)";
    dwe.className = "muted";
  } else {
    dwe.textContent = `${dw.flagged} of last ${dw.of} flagged (expected ${fmt(100 * dw.expected_rate, 1)}%)`
      + (dw.alarm ? ": ALARM, more than chance" : "");
    dwe.className = dw.alarm ? "bad" : "";
  }
  text("processed", s.processed);
  text("queue", k.queue_depth);
  renderDl($("errors-by-kind"), Object.entries(k.errors_by_kind || {}));
  text("quarantined", s.quarantined);
  const ul = $("recent-errors");
  ul.replaceChildren();
  for (const e of (s.recent_errors || []).slice(0, 8)) {
    const li = document.createElement("li");
    li.textContent = `#${e.id} ${e.input_ref} (${e.error_kind}): ${e.error}`;
    ul.appendChild(li);
  }

  const su = $("sources");
  su.replaceChildren();
  for (const src of s.sources || []) {
    const li = document.createElement("li");
    const state = src.state || (src.folder_missing ? "folder missing" : (src.events_via ? "watching" : ""));
    const c = src.calibration;
    li.textContent = `${src.url} ${state ? "(" + state + ")" : ""}: ` + (c
      ? `calibrated with ${c.standard}, RMS ${fmt(c.rms_cm1, 2)} cm⁻¹, ${c.matched} peaks, sha256 ${String(c.sha256).slice(0, 12)}…`
      : "no wavenumber calibration");
    li.dataset.calibration = c ? String(c.sha256) : "";
    su.appendChild(li);
  }

  const tb = $("results");
  tb.replaceChildren();
  for (const r of s.recent || []) {
    tb.appendChild(row([r.id, r.input_ref, r.status === "ok" ? r.class : r.error_kind,
      r.status === "ok" ? fmt(r.confidence, 3) : "", r.unknown ? "yes" : "", r.drift ? "yes" : "",
      fmt(r.total_ms, 1)], r.status === "ok" ? "" : "error", r.id));
    const why = r.explain || {};
    const cells = tb.lastChild.children;
    cells[4].title = why.unknown || "";
    cells[5].title = why.drift || "";
  }

  const L = s.latest;
  if (L && L.record) {
    const r = L.record;
    text("latest-class", r.class);
    text("latest-confidence", fmt(r.confidence, 3));
    text("latest-unknown", r.unknown ? "UNKNOWN" : (r.unknown === false ? "known" : "n/a"));
    $("latest-unknown").className = "big " + (r.unknown ? "bad" : (r.unknown === false ? "ok" : "muted"));
    text("latest-drift", r.drift ? "DRIFT" : (r.drift === false ? "no drift" : "n/a"));
    $("latest-drift").className = "big " + (r.drift ? "bad" : (r.drift === false ? "ok" : "muted"));
    const why = r.explain || {};
    text("latest-unknown-why", why.unknown);
    $("latest-unknown-why").className = r.unknown ? "bad" : "";
    text("latest-drift-why", why.drift);
    $("latest-drift-why").className = r.drift ? "bad" : "";
    text("latest-latency", `latency: model ${fmt(r.inference_ms, 2)} ms (batch of ${r.batch_size || "–"}), `
      + `preprocessing ${fmt(r.preprocess_ms, 2)} ms, reading ${fmt(r.read_ms, 2)} ms, queueing ${fmt(r.queue_ms, 1)} ms; `
      + `end-to-end ${fmt(r.total_ms, 1)} ms`);
    text("latest-ref", r.input_ref);
    $("latest-id").textContent = "record #" + r.id;
    $("latest").dataset.id = String(r.id);
    if (r.id !== lastLatestId) {
      lastLatestId = r.id;
      drawSpectrum($("spectrum"), L.axis, L.intensities, r.unknown ? "#c62828" : "#2457c5");
    }
  }
}

async function poll() {
  try {
    const resp = await fetch("/api/state", { cache: "no-store" });
    if (resp.status === 401) {
      // the session cookie is missing or the daemon's token changed: "/" shows the token form
      window.location.assign("/");
      return;
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    $("conn").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    $("status").textContent = "daemon unreachable";
    $("status").className = "pill bad";
  }
  setTimeout(poll, POLL_MS);
}

window.addEventListener("resize", () => {
  const L = lastState && lastState.latest;
  if (L) drawSpectrum($("spectrum"), L.axis, L.intensities, L.record.unknown ? "#c62828" : "#2457c5");
});
poll();
