// cryptovol signal dashboard: fetch the JSON views, draw them, poll the live ones.
"use strict";

const POLL_MS = 5000;
const layoutBase = { margin: { l: 50, r: 50, t: 24, b: 40 }, font: { size: 11 }, legend: { orientation: "h" } };
const config = { displaylogo: false, responsive: true };
let championChanges = [];

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

function setState(id, view) {
  const el = document.getElementById(id);
  el.dataset.state = view.state;
  const msg = el.querySelector(".message");
  if (msg) msg.textContent = view.state === "ready" ? "" : (view.message || view.state);
}

function isoZ(t) { const d = new Date(t); return isNaN(d) ? t : d.toISOString(); }

function pct(x) { return x === null || x === undefined ? "n/a" : (100 * x).toFixed(1) + "%"; }

async function loadChampion() {
  const c = await getJSON("/api/champion");
  document.getElementById("champion").textContent = c.state === "ready"
    ? `champion v${c.version} (${c.kind}), decision threshold ${c.decision_threshold.toFixed(3)}`
    : "champion: none yet";
}

function shapesFor(times, first, last) {
  // only the champion changes inside the chart's window (the live demo's clock and data agree;
  // a replayed recording's do not, and a far-away line would squash the chart)
  return times.filter(t => first && t >= first && t <= last).map(t => ({ type: "line", xref: "x", yref: "paper", x0: t, x1: t, y0: 0, y1: 1,
                           line: { color: "#0b5", width: 1.5, dash: "dot" } }));
}

async function loadSignal() {
  const v = await getJSON("/api/signal?minutes=30");
  setState("signal", v);
  document.getElementById("signal-source").textContent = v.source
    ? `source: ${v.source}; last ${v.minutes} min up to ${v.window_end}` : "";
  const box = document.getElementById("signal-charts");
  for (const [product, s] of Object.entries(v.products || {})) {
    let div = document.getElementById("signal-" + product);
    if (!div) {
      div = document.createElement("div");
      div.id = "signal-" + product; div.className = "plot signal-plot"; box.appendChild(div);
    }
    const traces = [
      { x: s.pt, y: s.probability, name: "spike probability", line: { color: "#d62728" }, yaxis: "y" },
      { x: s.t, y: s.realized_vol_bps, name: "realized vol 60 s (bps)", line: { color: "#1f77b4" }, yaxis: "y2" },
      { x: s.alerts, y: s.alerts.map(() => 1.0), name: "alert", mode: "markers",
        marker: { color: "#d62728", symbol: "triangle-down", size: 7 }, yaxis: "y" },
    ];
    const layout = { ...layoutBase, title: { text: product, font: { size: 13 } },
                     yaxis: { title: "probability", range: [0, 1.05] },
                     yaxis2: { title: "rv (bps)", overlaying: "y", side: "right" },
                     shapes: shapesFor(championChanges.map(isoZ), s.t[0], s.t[s.t.length - 1]) };
    Plotly.react(div, traces, layout, config);
  }
}

async function loadTimeline() {
  const v = await getJSON("/api/timeline");
  setState("timeline", v);
  const events = v.events || [];
  championChanges = events.filter(e => e.champion_change).map(e => e.time);
  const kinds = [...new Set(events.map(e => e.kind))];
  const traces = kinds.map(k => {
    const ev = events.filter(e => e.kind === k);
    return { x: ev.map(e => e.time), y: ev.map(() => k), text: ev.map(e => e.title), mode: "markers",
             name: k, marker: { size: 10, symbol: k.includes("champion") || k === "registry" ? "star" : "circle" } };
  });
  if (events.length) {
    Plotly.react("timeline-plot", traces, { ...layoutBase, margin: { l: 130, r: 20, t: 10, b: 30 },
                                            showlegend: false }, config);
  }
  document.getElementById("timeline-events").innerHTML = events.slice(-50).reverse().map(e =>
    `<div class="${e.champion_change ? "champ" : "sev-" + e.severity}">${e.time} · ${e.kind} · ${e.title}</div>`
  ).join("");
}

let thresholdTable = [];

function showThreshold() {
  const slider = document.getElementById("threshold");
  const row = thresholdTable[Number(slider.value)];
  if (!row) return;
  document.getElementById("th-value").textContent = row.threshold.toFixed(2);
  document.getElementById("precision").textContent = pct(row.precision);
  document.getElementById("recall").textContent = pct(row.recall);
  document.getElementById("alert-rate").textContent = pct(row.alert_rate);
  document.getElementById("alerts").textContent = String(row.alerts);
  if (document.getElementById("pr-curve").data) {
    Plotly.restyle("pr-curve", { x: [[row.recall]], y: [[row.precision]] }, [1]);
  }
}

async function loadEvaluation() {
  const v = await getJSON("/api/evaluation");
  setState("evaluation", v);
  setState("threshold-section", v);
  if (v.state !== "ready") return;
  document.getElementById("evaluation-info").textContent =
    `${v.rows} held-out rows (${v.held_out}; ${v.window[0]} → ${v.window[1]}), base rate ${pct(v.base_rate)}, ` +
    `PR-AUC ${v.pr_auc === null ? "n/a" : v.pr_auc.toFixed(3)}`;
  Plotly.react("pr-curve", [
    { x: v.pr_curve.recall, y: v.pr_curve.precision, name: "champion", line: { color: "#d62728" } },
    { x: [], y: [], name: "slider threshold", mode: "markers", marker: { size: 12, color: "#000" } },
    { x: [0, 1], y: [v.base_rate, v.base_rate], name: "base rate", line: { dash: "dot", color: "#888" } },
  ], { ...layoutBase, xaxis: { title: "recall", range: [0, 1] }, yaxis: { title: "precision", range: [0, 1.05] } },
  config);
  Plotly.react("calibration", [
    { x: v.calibration.predicted, y: v.calibration.observed, name: "champion", mode: "lines+markers" },
    { x: [0, 1], y: [0, 1], name: "perfect", line: { dash: "dot", color: "#888" } },
  ], { ...layoutBase, xaxis: { title: "predicted probability" }, yaxis: { title: "observed frequency" } }, config);
  thresholdTable = v.thresholds;
  const slider = document.getElementById("threshold");
  slider.disabled = false;
  slider.value = String(Math.round(100 * v.decision_threshold));
  document.getElementById("threshold-note").textContent =
    `starts at the champion's decision threshold ${v.decision_threshold.toFixed(3)} (chosen on validation)`;
  showThreshold();
}

async function loadDrift() {
  const v = await getJSON("/api/drift");
  setState("drift", v);
  if (v.state !== "ready") return;
  const rows = [
    ["generated", v.generated_at], ["dataset drift", String(v.dataset_drift)],
    ["drift share", v.drift_share === null ? "n/a" : v.drift_share.toFixed(2)],
    ["drifted columns", (v.drifted_columns || []).join(", ") || "none"],
    ["rows (reference / current)", `${v.n_reference} / ${v.n_current}`],
  ];
  if (v.live_pr_auc && v.live_pr_auc.pr_auc !== undefined) rows.push(["live PR-AUC", String(v.live_pr_auc.pr_auc)]);
  document.getElementById("drift-body").innerHTML =
    "<table>" + rows.map(r => `<tr><td>${r[0]}</td><td>${r[1]}</td></tr>`).join("") + "</table>";
}

async function loadBacktest() {
  const v = await getJSON("/api/backtest");
  setState("backtest", v);
  if (v.state !== "ready") return;
  document.getElementById("backtest-verdicts").innerHTML = v.sections.flatMap(s =>
    s.verdict.map(line => `<li><b>${s.title}</b> (${s.hours.toFixed(2)} h): ${line}</li>`)).join("");
  document.getElementById("backtest-charts").innerHTML = v.charts.map(c =>
    `<img class="chart" alt="${c}" src="/charts/${c}">`).join("");
}

async function safe(fn, id) {
  try { await fn(); } catch (e) {
    if (id) setState(id, { state: "error", message: String(e) });
  }
}

async function refreshLive() {
  await safe(loadTimeline, "timeline");
  await safe(loadSignal, "signal");
  document.getElementById("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
}

document.getElementById("threshold").addEventListener("input", showThreshold);
(async () => {
  await safe(loadChampion);
  await refreshLive();
  await Promise.all([safe(loadEvaluation, "evaluation"), safe(loadDrift, "drift"), safe(loadBacktest, "backtest")]);
  setInterval(refreshLive, POLL_MS);
})();
