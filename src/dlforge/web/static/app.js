// dlforge web platform: datasets (versions, class distribution, sample browser, clean/split),
// runs (live curves, events, parameters, report) and run comparison. Plain DOM, no framework:
// every piece of data goes into the page as text nodes or attribute values, never as HTML.
"use strict";

const state = { view: null, compare: new Set(), browse: null, runTimer: null };
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
const PAGE = 48;

// ---------------------------------------------------------------- helpers
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svgEl(tag, attrs = {}, text = null) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}

async function api(url, options = {}) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map(d => d.msg).join("; ") : body.detail;
    throw new Error(body.error || detail || r.statusText);
  }
  return body;
}

const q = encodeURIComponent;
function fmt(v) {
  if (typeof v !== "number") return v ?? "-";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5 ? v.toFixed(4) : v.toExponential(3);
}
function when(iso) { return iso ? new Date(iso).toLocaleString() : "-"; }
function badge(text, cls) { return el("span", { class: `badge ${cls}` }, text); }
function setView(...nodes) { document.getElementById("view").replaceChildren(...nodes); }
function table(headers, rows, attrs = {}) {
  return el("table", attrs, el("thead", {}, el("tr", {}, headers.map(h => el("th", {}, h)))), el("tbody", {}, rows));
}

// ---------------------------------------------------------------- sidebar lists (polled)
async function refreshLists() {
  const [ds, runs] = await Promise.all([api("/api/datasets"), api("/api/runs")]);
  const cur = state.view || {};
  document.getElementById("datasets").replaceChildren(...ds.datasets.map(d => el("li", {
    "data-name": d.name, class: cur.kind === "dataset" && cur.id === d.name ? "active" : null,
    onclick: () => go(`dataset/${q(d.name)}`),
  }, el("span", { class: "name" }, d.name), el("span", { class: "sub" }, `v${d.latest.split("@").pop()} · ${d.counts.active}`))));
  document.getElementById("runs").replaceChildren(...runs.runs.slice().reverse().map(r => {
    const box = el("input", { type: "checkbox", title: "select for comparison", onclick: ev => ev.stopPropagation(),
      onchange: ev => { ev.target.checked ? state.compare.add(r.run) : state.compare.delete(r.run); updateCompareButton(); } });
    box.checked = state.compare.has(r.run);
    return el("li", { "data-run": r.run, class: cur.kind === "run" && cur.id === r.run ? "active" : null,
      onclick: () => go(`run/${q(r.run)}`) }, box, el("span", { class: "name", title: r.run }, r.run),
      el("span", { class: "sub" }, badge(r.status, `status-${r.status}`)));
  }));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function updateCompareButton() {
  const b = document.getElementById("compare-btn");
  b.disabled = state.compare.size < 2;
  b.textContent = `Compare selected (${state.compare.size})`;
}

// ---------------------------------------------------------------- dataset view
async function showDataset(name, number) {
  const log = await api(`/api/datasets/${q(name)}`);
  const versions = log.versions;
  const latest = versions[versions.length - 1];
  const current = versions.find(v => v.number === number) || latest;
  const result = el("div", { id: "action-result" });
  const val = el("input", { type: "number", id: "split-val", min: 0, max: 0.9, step: 0.05, value: 0.1 });
  const test = el("input", { type: "number", id: "split-test", min: 0, max: 0.9, step: 0.05, value: 0.1 });
  const seed = el("input", { type: "number", id: "split-seed", min: 0, step: 1, value: 0 });
  const act = (what, fn) => async ev => {
    ev.target.disabled = true;
    result.replaceChildren(el("div", { class: "result" }, `${what}…`));
    try {
      const res = await fn();
      const extra = what === "clean" ? `excluded ${res.excluded} of ${res.checked} samples`
        : `splits ${Object.entries(res.counts).map(([k, n]) => `${k} ${n}`).join(", ")}`;
      const number = Number(res.version.split("@").pop());
      history.replaceState(null, "", `#dataset/${q(name)}/${number}`);  // no hashchange: we render it here
      await showDataset(name, number);
      document.getElementById("action-result").replaceChildren(
        el("div", { class: "result ok" }, `${what}: created ${res.version} — ${extra}`));
    } catch (e) {
      result.replaceChildren(el("div", { class: "result error" }, `${what} failed: ${e.message}`));
      ev.target.disabled = false;
    }
  };
  const post = (path, body) => api(`/api/datasets/${q(name)}/${path}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body ?? {}) });
  const actions = el("div", { class: "card" },
    el("div", { class: "row" },
      el("button", { id: "clean-btn", onclick: act("clean", () => post("clean")) }, "Clean"),
      el("span", { class: "muted" }, "exclude unreadable, duplicate and conflicting samples"),
      el("span", { style: "flex:1" }),
      el("label", {}, "val ", val), el("label", {}, "test ", test), el("label", {}, "seed ", seed),
      el("button", { id: "split-btn", class: "primary", onclick: act("split", () => post("split",
        { val: Number(val.value), test: Number(test.value), seed: Number(seed.value) })) }, "Split")),
    el("div", { class: "muted" }, `Both act on the latest version (${latest.version}) and create a new one.`),
    result);

  const rows = versions.slice().reverse().map(v => el("tr", {
    class: `click${v.number === current.number ? " active" : ""}`, "data-version": v.number,
    onclick: () => go(`dataset/${q(name)}/${v.number}`),
  }, el("td", {}, `v${v.number}`), el("td", {}, v.parent ? `v${v.parent}` : "-"), el("td", {}, v.operation),
  el("td", {}, v.message), el("td", {}, v.author ?? "-"), el("td", {}, when(v.created_at)),
  el("td", { class: "num" }, v.counts.active), el("td", { class: "num" }, v.counts.excluded),
  el("td", {}, Object.entries(v.counts.splits).map(([k, n]) => `${k} ${n}`).join(", "))));

  const overview = await api(`/api/datasets/${q(name)}/versions/${current.number}`);
  setView(
    el("h2", {}, `Dataset ${name}`),
    el("p", { class: "muted" }, `task ${latest.task ?? "-"} · ${latest.classes.length} classes · ${versions.length} versions`),
    actions,
    el("h3", {}, "Versions"),
    el("div", { class: "card" }, table(["version", "parent", "operation", "message", "author", "time", "active", "excluded", "splits"],
      rows, { id: "versions" })),
    el("h3", {}, `Version ${current.version}`),
    el("div", { class: "card" }, distribution(overview), reviewLine(overview.review)),
    el("h3", {}, "Samples"),
    sampleBrowser(name, current.number, overview));
}

function distribution(ov) {
  const d = ov.distribution;
  const classes = Object.keys(d.counts);
  if (!classes.length) return el("p", { class: "muted" }, "No labelled samples.");
  const max = Math.max(1, ...classes.flatMap(c => d.splits.map(s => d.counts[c][s] || 0)));
  const rows = classes.map(c => el("tr", {}, el("td", {}, c), d.splits.map(s => {
    const n = d.counts[c][s] || 0;
    return el("td", {}, el("span", { class: "bar", style: `width:${Math.round(60 * n / max)}px` }), n);
  })));
  return el("div", {}, el("div", { class: "muted" }, `class distribution (${d.basis} per split)`),
    table(["class", ...d.splits], rows, { id: "distribution" }));
}

function reviewLine(review) {
  const entries = Object.entries(review);
  if (!entries.length) return null;
  return el("p", {}, "review: ", entries.map(([k, n]) => [badge(`${k} ${n}`, `review-${k}`), " "]));
}

function sampleBrowser(name, number, ov) {
  const b = { name, number, split: "", label: "", review: "", offset: 0 };
  state.browse = b;
  const pick = (key, options) => {
    const s = el("select", { id: `filter-${key}`, onchange: () => { b[key] = s.value; b.offset = 0; loadSamples(); } },
      el("option", { value: "" }, `all ${key === "label" ? "classes" : key === "split" ? "splits" : "review states"}`),
      options.map(o => el("option", { value: o }, o)));
    return s;
  };
  const grid = el("div", { class: "grid", id: "samples" });
  const pager = el("span", { id: "pager", class: "muted" });
  const prev = el("button", { onclick: () => { b.offset = Math.max(0, b.offset - PAGE); loadSamples(); } }, "‹ prev");
  const next = el("button", { id: "next-page", onclick: () => { b.offset += PAGE; loadSamples(); } }, "next ›");
  Object.assign(b, { grid, pager, prev, next });
  loadSamples();
  return el("div", {}, el("div", { class: "row", style: "margin-bottom:8px" },
    pick("split", ov.distribution.splits), pick("label", ov.classes), pick("review", ["unreviewed", "accepted", "rejected", "needs_review"]),
    el("span", { style: "flex:1" }), prev, pager, next), grid);
}

async function loadSamples() {
  const b = state.browse;
  const params = new URLSearchParams({ offset: b.offset, limit: PAGE });
  for (const k of ["split", "label", "review"]) if (b[k]) params.set(k, b[k]);
  const page = await api(`/api/datasets/${q(b.name)}/versions/${b.number}/samples?${params}`);
  if (state.browse !== b) return;  // the user moved on while this page loaded
  b.pager.textContent = page.total ? `${b.offset + 1}–${b.offset + page.samples.length} of ${page.total}` : "no samples";
  b.prev.disabled = b.offset === 0;
  b.next.disabled = b.offset + PAGE >= page.total;
  b.grid.replaceChildren(...page.samples.map(sampleCard));
}

function sampleCard(s) {
  const labels = [...new Set(s.annotations.filter(a => a.label !== null).map(a => a.label))];
  const reviews = [...new Set(s.annotations.map(a => a.review).filter(r => r && r !== "unreviewed"))];
  const media = s.media_type === "image" ? thumbnail(s) : el("div", { class: "snippet" }, s.snippet ?? "");
  return el("div", { class: "sample", "data-uid": s.uid, title: s.name }, media,
    el("div", { class: "name" }, s.name),
    el("div", {}, labels.join(", ") || el("span", { class: "muted" }, "unlabelled"), " ",
      s.split ? el("span", { class: "muted" }, `· ${s.split}`) : null),
    reviews.map(r => badge(r, `review-${r}`)));
}

function thumbnail(s) {
  const SIDE = 136;
  const w = s.width || SIDE, h = s.height || SIDE;
  const scale = SIDE / Math.max(w, h);
  const box = el("div", { class: "thumb", style: `width:${Math.round(w * scale)}px;height:${Math.round(h * scale)}px` });
  const img = el("img", { src: `/api/blobs/${s.sha256}`, alt: s.name, loading: "lazy", class: scale > 2 ? "pixelated" : null });
  box.append(img);
  // Boxes, and the boxes and outlines of polygons and instance masks (data.bbox, data.points: image pixels).
  const shapes = s.annotations.filter(a => a.data && (Array.isArray(a.data.bbox) || (a.kind === "polygon" && a.data.points)));
  if (shapes.length) {
    // The overlay's viewBox is the image in pixels, so the geometry scales with the thumbnail.
    const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" });
    const stroke = Math.max(w, h) / SIDE * 1.5;
    for (const a of shapes) {
      const style = { fill: "none", stroke: COLORS[Math.abs(hash(a.label || "")) % COLORS.length], "stroke-width": stroke };
      const g = svgEl("g", {});
      g.append(svgEl("title", {}, `${a.kind} ${a.label ?? "?"} (${a.review})`));
      if (a.kind === "polygon" && a.data.points) {
        for (const ring of a.data.points) {
          const pts = [];
          for (let i = 0; i + 1 < ring.length; i += 2) pts.push(`${ring[i]},${ring[i + 1]}`);
          g.append(svgEl("polygon", { points: pts.join(" "), class: "outline", ...style }));
        }
      }
      if (Array.isArray(a.data.bbox)) {
        const [x1, y1, x2, y2] = a.data.bbox;
        g.append(svgEl("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1, class: "bbox", ...style,
          "stroke-dasharray": a.kind === "box" ? "none" : `${stroke * 2} ${stroke}` }));
      }
      svg.append(g);
    }
    box.append(svg);
  }
  return box;
}

function hash(s) { let h = 0; for (const c of s) h = (h * 31 + c.charCodeAt(0)) | 0; return h; }

// ---------------------------------------------------------------- charts
function lineChart(title, series, { W = 440, H = 220 } = {}) {
  series = series.filter(s => s.points.length);
  if (!series.length) return null;
  const L = 56, R = 12, T = 22, B = 30;
  const xs = series.flatMap(s => s.points.map(p => p[0])), ys = series.flatMap(s => s.points.map(p => p[1]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => L + (W - L - R) * (x - x0) / ((x1 - x0) || 1);
  const sy = y => H - B - (H - T - B) * (y - y0) / ((y1 - y0) || 1);
  const svg = svgEl("svg", { width: W, height: H, class: "chart", "data-title": title });
  svg.append(svgEl("text", { x: L, y: 14, "font-weight": "600" }, title));
  for (let i = 0; i <= 4; i++) {  // horizontal grid with value labels
    const y = y0 + (y1 - y0) * i / 4;
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), stroke: "#eceef2" }));
    svg.append(svgEl("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end", fill: "#6b7280" }, fmt(y)));
  }
  svg.append(svgEl("text", { x: L, y: H - 8, fill: "#6b7280" }, `step ${x0}`));
  svg.append(svgEl("text", { x: W - R, y: H - 8, "text-anchor": "end", fill: "#6b7280" }, `${x1}`));
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const line = svgEl("polyline", { points: s.points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
      fill: "none", stroke: color, "stroke-width": 1.6 });
    line.append(svgEl("title", {}, `${s.name}: last ${fmt(s.points[s.points.length - 1][1])}`));
    svg.append(line);
    if (s.points.length === 1) svg.append(svgEl("circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: color }));
    svg.append(svgEl("text", { x: W - R, y: 14 + 13 * i, "text-anchor": "end", fill: color }, s.name));
  });
  return svg;
}

function runCharts(history) {
  const names = Object.keys(history);
  const pick = f => names.filter(f).map(n => ({ name: n, points: history[n] }));
  const isLoss = n => n.endsWith("loss");
  return [
    lineChart("loss", pick(isLoss)),
    lineChart("learning rate", pick(n => n === "lr" || n.endsWith("/lr"))),
    lineChart("validation metrics", pick(n => n.startsWith("val/") && !isLoss(n))),
    lineChart("gradient norm", pick(n => n === "train/grad_norm")),
    lineChart("cross-validation", pick(n => n.startsWith("cv/"))),
  ].filter(Boolean);
}

// ---------------------------------------------------------------- run view
async function showRun(id) {
  const r = await api(`/api/runs/${q(id)}`);
  if (state.view?.kind !== "run" || state.view.id !== id) return;
  const sm = r.summary || {};
  const [dsName, dsVer] = (r.data || "").split("@");
  const facts = [
    ["status", badge(r.status, `status-${r.status}`)],
    ["task", r.task],
    ["data", r.data ? el("a", { href: `#dataset/${q(dsName)}${dsVer ? "/" + q(dsVer) : ""}`, id: "data-link" }, r.data) : "-"],
    [sm.monitor ? `best ${sm.monitor}` : "best", fmt(sm.best_metric)],
    ["best epoch", fmt(sm.best_epoch)], ["epochs", fmt(sm.epochs_done)], ["steps", fmt(sm.steps)],
    ["train seconds", fmt(sm.train_seconds)], ["stop reason", sm.stop_reason ?? "-"],
    ["started", when(r.created_at)], ["finished", when(r.finished_at)],
  ];
  const charts = runCharts(r.history);
  const params = Object.entries(r.params).sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, typeof v === "string" ? v : JSON.stringify(v))));
  const events = r.events.map(e => el("li", { class: `level-${e.level}` },
    el("b", {}, e.kind), ` [${e.level}] step ${e.step ?? "-"} · ${when(e.time)}: `, e.message));
  setView(
    el("h2", { "data-run": r.run }, `Run ${r.run}`),
    el("div", { class: "row", style: "margin-bottom:10px" },
      r.report ? el("a", { href: r.report, target: "_blank", id: "report-link" }, "Evaluation report ↗") : el("span", { class: "muted" }, "no evaluation report yet"),
      sm.message ? el("span", { class: "muted" }, sm.message) : null),
    el("div", { class: "kv" }, facts.map(([k, v]) => el("div", {}, el("span", { class: "muted" }, k), el("b", {}, v)))),
    el("h3", {}, "Curves"),
    charts.length ? el("div", { class: "charts", id: "charts" }, charts) : el("p", { class: "muted" }, "No metrics logged yet."),
    el("h3", {}, `Events (${r.events.length})`),
    el("div", { class: "card" }, events.length ? el("ul", { class: "events", id: "events" }, events) : el("span", { class: "muted" }, "none")),
    el("h3", {}, "Hyperparameters"),
    el("div", { class: "card" }, table(["parameter", "value"], params, { id: "params" })));
  // Follow a live run; a finished one stays as it is.
  clearTimeout(state.runTimer);
  if (r.status === "running" || r.status === "created") state.runTimer = setTimeout(() => showRun(id).catch(showError), 2000);
}

// ---------------------------------------------------------------- compare view
async function showCompare(ids) {
  const c = await api(`/api/compare?${ids.map(i => `runs=${q(i)}`).join("&")}`);
  const cell = v => (v === undefined || v === null ? "-" : typeof v === "object" ? JSON.stringify(v) : fmt(v));
  const rows = [
    el("tr", {}, el("th", {}, "task"), c.runs.map(r => el("td", {}, c.task[r]))),
    el("tr", {}, el("th", {}, "status"), c.runs.map(r => el("td", {}, badge(c.status[r], `status-${c.status[r]}`)))),
    el("tr", {}, el("th", {}, "data"), c.runs.map(r => el("td", {}, c.data[r] ?? "-"))),
    el("tr", {}, el("th", {}, "monitor"), c.runs.map(r => el("td", {}, c.monitor[r] ?? "-"))),
    el("tr", {}, el("th", { colspan: c.runs.length + 1 }, `parameters that differ (${Object.keys(c.params).length})`)),
    Object.entries(c.params).map(([k, vals]) => el("tr", { class: "param" }, el("td", {}, k), c.runs.map(r => el("td", {}, cell(vals[r]))))),
    el("tr", {}, el("th", { colspan: c.runs.length + 1 }, "metrics")),
    Object.entries(c.metrics).map(([k, vals]) => {
      // Only best_metric has a known direction: the monitor's (losses go down).
      const nums = c.runs.map(r => vals[r]).filter(v => typeof v === "number");
      const lower = Object.values(c.monitor).some(m => m && m.endsWith("loss"));
      const best = k === "best_metric" && nums.length ? (lower ? Math.min(...nums) : Math.max(...nums)) : null;
      return el("tr", { class: "metric" }, el("td", {}, k),
        c.runs.map(r => el("td", { class: vals[r] === best ? "best" : null }, cell(vals[r]))));
    }),
  ];
  const details = await Promise.all(c.runs.map(r => api(`/api/runs/${q(r)}`)));
  const overlay = name => lineChart(name, details.map(d => ({ name: d.run, points: d.history[name] || [] })), { W: 520 });
  const monitored = [...new Set(Object.values(c.monitor).filter(Boolean))];
  const names = [...new Set(["train/loss", ...monitored])];
  setView(
    el("h2", {}, `Compare ${c.runs.length} runs`),
    el("div", { class: "card" }, el("table", { id: "compare" },
      el("thead", {}, el("tr", {}, el("th", {}), c.runs.map(r => el("th", {}, el("a", { href: `#run/${q(r)}` }, r))))),
      el("tbody", {}, rows))),
    el("h3", {}, "Curves"),
    el("div", { class: "charts" }, names.map(overlay).filter(Boolean)));
}

// ---------------------------------------------------------------- routing
function go(hash) { if (location.hash.slice(1) === hash) route(); else location.hash = hash; }

function showError(e) {
  setView(el("h2", {}, "Error"), el("div", { class: "result error" }, e.message));
}

async function route() {
  clearTimeout(state.runTimer);
  const [kind, a, b] = location.hash.slice(1).split("/").map(decodeURIComponent);
  state.view = kind ? { kind, id: a } : null;
  refreshLists().catch(() => {});
  try {
    if (kind === "dataset") await showDataset(a, b ? Number(b) : null);
    else if (kind === "run") await showRun(a);
    else if (kind === "compare") await showCompare(a.split(","));
  } catch (e) { showError(e); }
}

document.getElementById("compare-btn").addEventListener("click", () => go(`compare/${[...state.compare].map(q).join(",")}`));
window.addEventListener("hashchange", route);
route();
updateCompareButton();
// The lists poll so new datasets and runs (and their status) appear while you watch.
setInterval(() => refreshLists().catch(e => { document.getElementById("updated").textContent = "offline: " + e.message; }), 2000);
