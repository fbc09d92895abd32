// dlforge web platform: lists datasets and runs, shows a run's curves live (polls the JSON API).
"use strict";
let selected = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.onclick = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error((await r.json()).error || r.statusText);
  return r.json();
}

function fmt(v) { return typeof v === "number" ? v.toFixed(4) : (v ?? "-"); }

async function refreshLists() {
  const [ds, runs] = await Promise.all([getJSON("/api/datasets"), getJSON("/api/runs")]);
  const dt = document.querySelector("#datasets tbody");
  dt.replaceChildren(...ds.datasets.map(d => el("tr", { class: "click", "data-name": d.name, onclick: () => select("dataset", d.name) },
    el("td", {}, d.name), el("td", {}, d.latest), el("td", {}, d.task ?? "-"), el("td", {}, d.counts.active),
    el("td", {}, JSON.stringify(d.counts.splits)))));
  const rt = document.querySelector("#runs tbody");
  rt.replaceChildren(...runs.runs.slice().reverse().map(r => el("tr", { class: "click", "data-run": r.run, onclick: () => select("run", r.run) },
    el("td", {}, r.run), el("td", {}, r.task), el("td", { class: "status-" + r.status }, r.status), el("td", {}, r.data ?? "-"),
    el("td", {}, r.summary.monitor ? `${r.summary.monitor}=${fmt(r.summary.best_metric)}` : "-"))));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function lineChart(series, title) {
  const W = 420, H = 180, P = 30;
  const pts = series.flatMap(s => s.points);
  if (!pts.length) return el("div");
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || 1, y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => P + (W - 2 * P) * (x - x0) / ((x1 - x0) || 1);
  const sy = y => H - P - (H - 2 * P) * (y - y0) / ((y1 - y0) || 1);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  const colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];
  series.forEach((s, i) => {
    const path = document.createElementNS(ns, "polyline");
    path.setAttribute("points", s.points.map(p => `${sx(p[0])},${sy(p[1])}`).join(" "));
    path.setAttribute("fill", "none"); path.setAttribute("stroke", colors[i % colors.length]); path.setAttribute("stroke-width", "1.5");
    svg.append(path);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", P + 4); label.setAttribute("y", 14 + 12 * i); label.setAttribute("font-size", "11");
    label.setAttribute("fill", colors[i % colors.length]); label.textContent = s.name;
    svg.append(label);
  });
  const ax = document.createElementNS(ns, "text");
  ax.setAttribute("x", W - P); ax.setAttribute("y", H - 8); ax.setAttribute("font-size", "10"); ax.setAttribute("text-anchor", "end");
  ax.textContent = `${title}: ${fmt(y0)} .. ${fmt(y1)}`;
  svg.append(ax);
  return svg;
}

async function showRun(id) {
  const r = await getJSON(`/api/runs/${id}`);
  document.getElementById("detail-title").textContent = `Run ${r.run} (${r.status})`;
  const h = r.history;
  const charts = [];
  const losses = Object.keys(h).filter(k => k.endsWith("loss"));
  if (losses.length) charts.push(lineChart(losses.map(k => ({ name: k, points: h[k] })), "loss"));
  const vals = Object.keys(h).filter(k => k.startsWith("val/") && !k.endsWith("loss"));
  if (vals.length) charts.push(lineChart(vals.map(k => ({ name: k, points: h[k] })), "validation"));
  const params = el("table", {}, ...Object.entries(r.params).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, JSON.stringify(v)))));
  const events = el("ul", {}, ...r.events.map(e => el("li", {}, `[${e.level}] step ${e.step ?? "-"} ${e.kind}: ${e.message}`)));
  document.getElementById("detail-body").replaceChildren(el("div", {}, ...charts), el("h3", {}, "Parameters"), params,
    el("h3", {}, "Events"), events);
}

async function showDataset(name) {
  const d = await getJSON(`/api/datasets/${encodeURIComponent(name)}`);
  document.getElementById("detail-title").textContent = `Dataset ${name}`;
  const rows = d.versions.slice().reverse().map(v => el("tr", {}, el("td", {}, v.number), el("td", {}, v.parent ?? "-"),
    el("td", {}, v.operation), el("td", {}, v.counts.active), el("td", {}, JSON.stringify(v.counts.splits)), el("td", {}, v.message)));
  document.getElementById("detail-body").replaceChildren(el("table", { id: "versions" },
    el("tr", {}, ...["version", "parent", "operation", "samples", "splits", "message"].map(t => el("th", {}, t))), ...rows));
}

function select(kind, id) { selected = { kind, id }; render(); }

async function render() {
  try {
    await refreshLists();
    if (selected?.kind === "run") await showRun(selected.id);
    if (selected?.kind === "dataset") await showDataset(selected.id);
  } catch (e) {
    document.getElementById("updated").textContent = "error: " + e.message;
  }
}

render();
setInterval(render, 2000);  // live status: runs update while they train
