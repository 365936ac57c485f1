// cnnscope dashboard: the runs table and overlaid curves of the selected runs. No dependencies, no build step
// (common.js, loaded first, holds the helpers it shares with the viewer: $, el, svg, fmt).
// Every name and value from the server goes into the page as text (el(), svg(), textContent), never as markup.
"use strict";

const POLL_MS = 2000;
const COLOURS = ["#5b3fd6", "#e4572e", "#17a398", "#f2a541", "#3f88c5", "#d1495b", "#66a182", "#8d6a9f",
  "#2e4057", "#c28a00"];
const DIGITS = 4; // accuracies in the table and the studies: 4 decimals tell 0.01 % apart
const state = {
  runs: [], differing: [], tag: null, sort: "name", dir: "asc", filter: "", selected: new Set(),
  colours: new Map(), histories: new Map(), studies: new Map(), compares: new Map(), firstLoad: true, polls: 0,
};

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 600 ? `${value.toFixed(1)} s` : `${(value / 60).toFixed(1)} min`;
}

function runPath(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

async function getTagged(url, tag) {
  const headers = tag ? { "If-None-Match": tag } : {};
  const response = await fetch(url, { headers, cache: "no-store" });
  if (response.status === 304) return null;
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return { tag: response.headers.get("ETag"), data: await response.json() };
}

// --- the table -------------------------------------------------------------------------------
function columns() {
  return [["select", ""], ["name", "name"], ["status", "status"], ["dataset", "dataset"], ["model", "model"],
    ...state.differing.map((k) => [`setting:${k}`, k]), ["test_accuracy", "test acc"],
    ["best_val_accuracy", "best val acc"], ["epochs", "epochs"], ["seconds", "time"]];
}

function valueOf(entry, key) {
  if (key.startsWith("setting:")) return (entry.settings || {})[key.slice(8)];
  return entry[key];
}

function compare(a, b) {
  const x = valueOf(a, state.sort);
  const y = valueOf(b, state.sort);
  if (x === null || x === undefined) return 1;
  if (y === null || y === undefined) return -1;
  const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
  return state.dir === "asc" ? order : -order;
}

function matches(entry) {
  const words = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return true;
  const settings = Object.entries(entry.settings || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  const text = [entry.name, entry.kind, entry.status, entry.dataset, entry.model, settings].join(" ").toLowerCase();
  return words.every((w) => text.includes(w));
}

function renderHead() {
  const head = $("runs-head");
  head.replaceChildren();
  for (const [key, label] of columns()) {
    const th = el("th", { "data-key": key }, label);
    if (key === state.sort) th.setAttribute("data-dir", state.dir);
    if (key !== "select") {
      th.addEventListener("click", () => {
        state.dir = state.sort === key && state.dir === "asc" ? "desc" : "asc";
        state.sort = key;
        renderTable();
      });
    }
    head.append(th);
  }
}

function statusCell(entry) {
  const td = el("td");
  const span = el("span", { class: `status status-${entry.status}` }, entry.status);
  if (entry.reason) span.title = entry.reason;
  td.append(span);
  return td;
}

function runRow(entry) {
  const tr = el("tr", { class: entry.study ? "run trial" : "run", "data-name": entry.name, "data-status": entry.status });
  const box = el("input", { type: "checkbox", "aria-label": "show its curves" });
  box.checked = state.selected.has(entry.name);
  box.addEventListener("change", () => toggle(entry.name, box.checked));
  const pick = el("td");
  pick.append(box);
  if (state.selected.has(entry.name)) {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colourOf(entry.name);
    pick.append(swatch);
  }
  const name = el("td");
  name.append(el("a", { href: `/runs/${runPath(entry.name)}/`, title: "open in the single-run viewer" }, entry.name));
  tr.append(pick, name, statusCell(entry), el("td", {}, entry.dataset), el("td", {}, entry.model));
  for (const key of state.differing) tr.append(el("td", { class: "num" }, fmt((entry.settings || {})[key], 6)));
  const epochs = entry.epochs_planned ? `${entry.epochs}/${entry.epochs_planned}` : fmt(entry.epochs);
  tr.append(el("td", { class: "num" }, fmt(entry.test_accuracy, DIGITS)),
    el("td", { class: "num" }, fmt(entry.best_val_accuracy, DIGITS)),
    el("td", { class: "num" }, epochs), el("td", { class: "num" }, seconds(entry.seconds)));
  return tr;
}

function studyRow(entry) {
  const tr = el("tr", { class: "study", "data-name": entry.name, "data-status": entry.status });
  const best = entry.best ? `best ${entry.best.metric} ${fmt(entry.best.value, DIGITS)} (${entry.best.name})` : "no trial finished";
  tr.append(el("td"), el("td", {}, `${entry.name} (study)`), statusCell(entry), el("td", {}, entry.dataset),
    el("td", {}, entry.model));
  const cell = el("td", { colspan: String(state.differing.length + 4) },
    `${entry.completed}/${entry.trials} trials completed · ${best}`);
  tr.append(cell);
  return tr;
}

function renderTable() {
  renderHead();
  const shown = state.runs.filter(matches).sort(compare);
  const body = $("runs-body");
  body.replaceChildren(...shown.map((e) => (e.kind === "study" ? studyRow(e) : runRow(e))));
  const runs = state.runs.filter((e) => e.kind === "run").length;
  $("count").textContent = `${shown.length} shown · ${runs} runs`;
}

// --- selection and histories -------------------------------------------------------------------
function colourOf(name) {
  if (!state.colours.has(name)) {
    const used = new Set(state.colours.values());
    state.colours.set(name, COLOURS.find((c) => !used.has(c)) || COLOURS[state.colours.size % COLOURS.length]);
  }
  return state.colours.get(name);
}

function toggle(name, on) {
  if (on) state.selected.add(name); else { state.selected.delete(name); state.colours.delete(name); }
  renderTable();
  drawCharts();
  pollHistories();
}

function defaultSelection() {
  const runs = state.runs.filter((e) => e.kind === "run");
  const running = runs.filter((e) => e.status === "running");
  const chosen = running.length ? running : [...runs].sort((a, b) => (b.updated || 0) - (a.updated || 0)).slice(0, 3);
  for (const e of chosen.slice(0, 6)) state.selected.add(e.name);
}

async function pollHistories() {
  for (const name of [...state.selected]) {
    if (!state.runs.some((e) => e.name === name)) { state.selected.delete(name); continue; }
    const known = state.histories.get(name);
    const url = `/api/runs/${runPath(name)}/history`;
    try {
      const answer = await getTagged(url, known ? known.tag : null);
      if (answer) {
        state.histories.set(name, { tag: answer.tag, history: answer.data.history || {} });
        drawCharts();
      }
    } catch (error) {
      showError(`${name}: ${error.message}`);
    }
  }
}

// --- charts ----------------------------------------------------------------------------------
function smooth(values, weight) {
  if (!weight) return values;
  let last = null;
  return values.map((v) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return v;
    last = last === null ? v : last * weight + v * (1 - weight);
    return last;
  });
}

function seriesOf(history, chart) {
  const epochs = history.epoch || [];
  const x = epochs.map(Number);
  if (chart === "lr") {
    const lr = history.lr || [];
    const perEpoch = epochs.length ? lr.length / epochs.length : 1;
    return [{ kind: "train", x: lr.map((_, i) => (i + 1) / (perEpoch || 1)), y: lr }];
  }
  const key = chart === "loss" ? (history.data_loss ? "data_loss" : "loss") : "accuracy";
  const val = chart === "loss" ? (history.val_data_loss ? "val_data_loss" : "val_loss") : "val_accuracy";
  return [{ kind: "train", x, y: history[key] || [] }, { kind: "val", x, y: history[val] || [] }];
}

function scaled(lo, hi, a, b, log) {
  if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
  const span = hi - lo || 1;
  return (v) => a + ((log ? Math.log10(v) : v) - lo) / span * (b - a);
}

function drawAxes(node, xs, ys, box, log) {
  const [x0, x1, y0, y1] = box;
  node.append(svg("line", { class: "axis", x1: x0, y1: y1, x2: x1, y2: y1 }), svg("line", { class: "axis", x1: x0, y1: y0, x2: x0, y2: y1 }));
  for (let i = 0; i <= 4; i += 1) {
    const t = i / 4;
    const value = log ? 10 ** (Math.log10(ys[0]) + t * (Math.log10(ys[1]) - Math.log10(ys[0]))) : ys[0] + t * (ys[1] - ys[0]);
    const y = y1 - t * (y1 - y0);
    node.append(svg("line", { class: "grid", x1: x0, y1: y, x2: x1, y2: y }), svg("text", { x: 4, y: y + 3 }, fmt(value, 3)));
  }
  epochTicks(node, xs, box);
}

function epochTicks(node, xs, box) {
  // epochs are whole numbers: ticks only there (at most about 6)
  const [x0, x1, , y1] = box;
  const lo = Math.ceil(xs[0]); const hi = Math.floor(xs[1]);
  const step = Math.max(1, Math.ceil((hi - lo + 1) / 6));
  for (let v = lo; v <= hi; v += step) {
    const x = x0 + (xs[1] === xs[0] ? 0.5 : (v - xs[0]) / (xs[1] - xs[0])) * (x1 - x0);
    node.append(svg("text", { x: x - 3, y: y1 + 14, "data-epoch-tick": v }, String(v)));
  }
}

// Each selected run's training and validation series of one chart, smoothed; only points a log axis can show.
function chartLines(chart, log) {
  const weight = Number($("smooth").value);
  const lines = [];
  for (const name of state.selected) {
    const known = state.histories.get(name);
    if (!known) continue;
    for (const s of seriesOf(known.history, chart)) {
      const y = smooth(s.y, weight);
      const points = s.x.map((x, i) => [x, y[i]]).filter(([, v]) => typeof v === "number" && Number.isFinite(v) && (!log || v > 0));
      lines.push({ name, kind: s.kind, points });
    }
  }
  return lines;
}

function drawChart(chart) {
  const node = $(`chart-${chart}`);
  node.replaceChildren();
  const log = $("logscale").checked && chart !== "accuracy";
  const lines = chartLines(chart, log);
  const all = lines.flatMap((l) => l.points);
  node.setAttribute("data-curves", String(lines.filter((l) => l.points.length).length));
  if (!all.length) {
    node.append(svg("text", { x: 180, y: 130 }, state.selected.size ? "no epoch finished yet" : "select runs in the table"));
    return;
  }
  let [xlo, xhi] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [ylo, yhi] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (xlo === xhi) { xlo -= 0.5; xhi += 0.5; }
  if (ylo === yhi) { ylo = log ? ylo / 2 : ylo - 0.5; yhi = log ? yhi * 2 : yhi + 0.5; }
  const box = [50, 470, 10, 235];
  drawAxes(node, [xlo, xhi], [ylo, yhi], box, log);
  const sx = scaled(xlo, xhi, box[0], box[1], false);
  const sy = scaled(ylo, yhi, box[3], box[2], log);
  for (const line of lines) drawLine(node, line, chart, sx, sy);
}

function drawLine(node, line, chart, sx, sy) {
  if (!line.points.length) return;
  const d = line.points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
  const path = svg("path", { class: `curve ${line.kind}`, d, stroke: colourOf(line.name), "data-run": line.name,
    "data-series": line.kind, "data-points": line.points.length });
  path.append(svg("title", {}, `${line.name} (${line.kind === "val" ? "validation" : "training"})`));
  node.append(path);
  if (chart === "lr") return;
  for (const [x, y] of line.points) {
    node.append(svg("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: line.points.length > 1 ? 2 : 4, fill: colourOf(line.name),
      "data-run": line.name, "data-epoch": x }));
  }
}

function drawCharts() {
  for (const chart of ["loss", "accuracy", "lr"]) drawChart(chart);
  const legend = $("legend");
  legend.replaceChildren(...[...state.selected].map((name) => {
    const item = el("span");
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colourOf(name);
    const known = state.histories.get(name);
    item.append(swatch, document.createTextNode(`${name} (${known ? (known.history.epoch || []).length : "…"} epochs)`));
    return item;
  }));
}

// --- studies ---------------------------------------------------------------------------------
function metricOf(row, metric) {
  if (typeof row.value === "number") return row.value; // what the sweep chose on (results.json)
  const value = metric === "test_accuracy" ? row.test_accuracy : row.best_val_accuracy; // a study written before
  return typeof value === "number" ? value : null;
}

function testOf(row, study) {
  // the test accuracy beside the validation value: reported only (a study chosen on the test set shows none apart)
  if (study.selected_on !== "validation" || study.metric === "val_loss") return null;
  return typeof row.test_accuracy === "number" ? row.test_accuracy : null;
}

function xAxis(points, param, study) {
  const numeric = points.every((p) => typeof p[0] === "number");
  const cats = numeric ? [] : [...new Set(points.map((p) => String(p[0])))];
  const xv = (v) => (numeric ? v : cats.indexOf(String(v)));
  const xs = points.map((p) => xv(p[0]));
  const drawnLog = (study.log_params || []).includes(param);
  const log = numeric && Math.min(...xs) > 0 && (drawnLog || (!study.log_params && Math.max(...xs) / Math.min(...xs) > 20));
  const xlo = Math.min(...xs); const xhi = Math.max(...xs) === xlo ? (log ? xlo * 10 : xlo + 1) : Math.max(...xs);
  const pad = numeric ? 0 : 0.5;
  const integer = numeric && points.every((p) => Number.isInteger(p[0]));
  return { numeric, cats, xv, log, integer, sx: scaled(log ? xlo : xlo - pad, log ? xhi : xhi + pad, 40, 290, log), xlo, xhi };
}

function xTicks(node, axis) {
  if (!axis.numeric) { axis.cats.forEach((c, i) => node.append(svg("text", { x: axis.sx(i) - 10, y: 186 }, c))); return; }
  let ticks = [axis.xlo, axis.xhi];
  if (axis.log) {
    const decades = [];
    for (let e = Math.ceil(Math.log10(axis.xlo)); e <= Math.floor(Math.log10(axis.xhi)); e += 1) decades.push(10 ** e);
    ticks = decades.length >= 2 ? decades : ticks;
  } else if (axis.integer) {
    const step = Math.max(1, Math.ceil((axis.xhi - axis.xlo) / 5));
    ticks = [];
    for (let v = axis.xlo; v <= axis.xhi; v += step) ticks.push(v); // whole numbers only
  }
  for (const v of ticks) node.append(svg("text", { x: axis.sx(v) - 8, y: 186, "data-tick": v }, fmt(v, 3)));
}

function scatter(rows, param, study) {
  const metric = study.metric;
  const node = svg("svg", { viewBox: "0 0 300 200", class: "chart", "data-param": param });
  const points = rows.map((r) => [r.params[param], metricOf(r, metric), r.name, testOf(r, study)])
    .filter((p) => p[1] !== null && p[0] !== null && p[0] !== undefined);
  const axis = points.length ? xAxis(points, param, study) : null;
  node.append(svg("text", { x: 40, y: 196 }, param + (axis && axis.log ? " (log scale)" : "")));
  if (!points.length) { node.append(svg("text", { x: 60, y: 100 }, "no finished trial")); return node; }
  node.setAttribute("data-log", String(axis.log));
  const ys = points.flatMap((p) => (p[3] === null ? [p[1]] : [p[1], p[3]]));
  let [ylo, yhi] = [Math.min(...ys), Math.max(...ys)];
  if (ylo === yhi) { ylo -= 0.01; yhi += 0.01; }
  const sy = scaled(ylo, yhi, 175, 10, false);
  node.append(svg("text", { x: 2, y: 14 }, fmt(yhi, 3)), svg("text", { x: 2, y: 175 }, fmt(ylo, 3)));
  xTicks(node, axis);
  for (const [x, y, name, test] of points) {
    const cx = axis.sx(axis.xv(x)).toFixed(1);
    if (test !== null) {
      const cross = svg("path", { d: `M${cx - 3},${sy(test) - 3}l6,6m0,-6l-6,6`, stroke: "#e07b00", "stroke-width": 1.5, "data-test": test });
      cross.append(svg("title", {}, `${name}: test accuracy ${fmt(test, DIGITS)} (reported only, not chosen on)`));
      node.append(cross);
    }
    const dot = svg("circle", { cx, cy: sy(y).toFixed(1), r: 4, fill: "#5b3fd6", "fill-opacity": 0.7 });
    dot.append(svg("title", {}, `${name}: ${param} = ${x}, ${metric} ${fmt(y, DIGITS)}`));
    node.append(dot);
  }
  return node;
}

function studyBest(study) {
  const best = el("p");
  best.append(document.createTextNode("best trial: "));
  best.append(el("a", { href: `/runs/${runPath(study.best.name)}/` }, study.best.name));
  const onTest = study.selected_on === "test";
  best.append(document.createTextNode(` · chosen by ${study.best.metric} ${fmt(study.best.value, DIGITS)} on ` +
    (onTest ? "the test set" : "validation") + (onTest ? "" :
      ` · validation accuracy ${fmt(study.val_accuracy, DIGITS)} · test accuracy ${fmt(study.test_accuracy, DIGITS)} ` +
      "(reported only)")));
  return best;
}

function renderStudy(name, detail) {
  const box = el("div", { class: "study", "data-study": name });
  const study = detail.study;
  box.append(el("h3", {}, `${name} · ${study.completed}/${study.trials} trials · metric ${study.metric} (${study.direction}) · chosen on ${study.selected_on || "?"}`));
  if (study.warning) box.append(el("p", { class: "error study-warning" }, `warning: ${study.warning}`));
  if (study.best) box.append(studyBest(study));
  const plots = el("div", { class: "study-plots" });
  for (const param of detail.params) plots.append(scatter(detail.trials, param, study));
  if (!detail.params.length) plots.append(el("p", { class: "muted small" }, "the trials do not differ in any setting yet"));
  if (detail.params.length && study.selected_on === "validation") {
    plots.append(el("p", { class: "muted small" }, "dots: the value chosen on (validation); orange crosses: test accuracy, reported only"));
  }
  box.append(plots);
  box.append(comparePanel(name, study.completed));
  return box;
}

// --- a study's compare matrix (GET /api/studies/NAME/compare) ----------------------------------
const IMAGE_CHOICES = [100, 500, 1000, 2000];

function comparePanel(name, completed) {
  let panel = state.compares.get(name);
  if (!panel) {
    panel = { layer: "", images: 500, completed: null, asked: 0, node: el("div", { class: "compare", "data-compare": name }) };
    const bar = el("div", { class: "toolbar" });
    const layer = el("select", { "aria-label": "layer to compare" });
    const images = el("select", { "aria-label": "test images to compare on" });
    for (const n of IMAGE_CHOICES) images.append(el("option", { value: String(n) }, `${n} test images`));
    images.value = String(panel.images);
    layer.addEventListener("change", () => { panel.layer = layer.value; loadCompare(name, panel); });
    images.addEventListener("change", () => { panel.images = Number(images.value); loadCompare(name, panel); });
    panel.title = el("h3", { "data-role": "title" }, "compare matrix");
    bar.append(panel.title, layer, images);
    panel.select = layer;
    panel.status = el("p", { class: "muted small", "data-role": "status" });
    panel.found = el("p", { class: "small", "data-role": "found" });
    panel.chart = svg("svg", { class: "heatmap", viewBox: "0 0 10 10", "data-role": "matrix" });
    panel.notes = el("ul", { class: "notes small" });
    panel.node.append(bar, panel.status, panel.chart, panel.found, panel.notes);
    state.compares.set(name, panel);
  }
  if (panel.completed !== completed) { panel.completed = completed; loadCompare(name, panel); }
  return panel.node;
}

async function loadCompare(name, panel) {
  const asked = ++panel.asked;
  const params = new URLSearchParams({ images: String(panel.images) });
  if (panel.layer) params.set("layer", panel.layer);
  panel.node.dataset.state = "loading";
  panel.status.textContent = `computing the matrix over ${panel.images} test images…`;
  let data;
  try {
    const response = await fetch(`/api/studies/${runPath(name)}/compare?${params}`, { cache: "no-store" });
    data = await response.json();
    if (!response.ok) throw new Error(data.error || String(response.status));
  } catch (error) {
    if (asked !== panel.asked) return;
    panel.node.dataset.state = "error";
    panel.status.textContent = `compare: ${error.message}`;
    return;
  }
  if (asked === panel.asked) showCompare(panel, data);
}

function showCompare(panel, data) {
  const layers = data.layers || [];
  if (layers.length && panel.select.options.length !== layers.length) {
    panel.select.replaceChildren(...layers.map((l) => el("option", { value: l }, l)));
  }
  if (data.layer) { panel.select.value = data.layer; panel.layer = data.layer; }
  // "seeds" only when the trials differ in seed and in nothing else that sets their initial weights
  panel.title.textContent = data.kind === "seeds" ? "seeds' compare matrix" : "trials' compare matrix";
  panel.notes.replaceChildren(...(data.notes || []).map((n) => el("li", {}, n)));
  panel.chart.replaceChildren();
  if (!data.matrix) {
    panel.node.dataset.state = "note";
    panel.status.textContent = data.note || "no matrix";
    panel.found.textContent = "";
    return;
  }
  panel.node.dataset.state = "ready";
  const base = data.baseline;
  const init = (value) => (base ? ` (${value} at initialisation)` : "");
  const r = (value) => (typeof value === "number" ? value.toFixed(3) : "–");
  panel.status.textContent = `${data.layer}: mean matched correlation between the completed trials ` +
    `${r(data.mean_correlation)}${init(base ? r(base.mean_correlation) : "")}, over ${data.images} ` +
    `test images (${fmt(data.seconds, 1)} s). ` + (base ? "Above the diagonal: trained; below: the same trials " +
    "at their initial weights (the baseline)." : "No baseline: a trial lacks its initial weights.");
  drawHeatmap(panel.chart, data.runs, data.matrix, base ? base.matrix : null);
  const others = data.runs.length - 1;
  const first = `${data.found_by_all} of ${data.maps} maps${init(base ? base.found_by_all : "")} of the first ` +
    `trial (${data.runs[0]})`;
  panel.found.textContent = `${first} are found by every other trial (r > ${data.threshold})` +
    (others > 1 ? "" : " (only one other trial so far)");
}

// viridis at 0, 0.25, 0.5, 0.75, 1: a scale on which 0.91 and 1.00 differ as much as 0.1 and 0.2 would
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function heat(value, low) {
  if (value === null || value === undefined) return "#eceef2";
  const t = Math.max(0, Math.min(1, (value - low) / (1 - low))) * (VIRIDIS.length - 1);
  const k = Math.min(Math.floor(t), VIRIDIS.length - 2);
  const mix = (i) => Math.round(VIRIDIS[k][i] + (VIRIDIS[k + 1][i] - VIRIDIS[k][i]) * (t - k));
  return `rgb(${mix(0)},${mix(1)},${mix(2)})`;
}

function heatLow(values) {
  // the scale's bottom: the smallest value shown, rounded down to a tenth (1.0 is always the top)
  const finite = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v) && v < 1);
  return finite.length ? Math.min(0.9, Math.floor(Math.min(...finite) * 10) / 10) : 0;
}

function drawHeatmap(node, runs, matrix, baseline) {
  const n = runs.length;
  const cell = 52;
  const left = 110;
  const top = 24;
  const shown = matrix.map((row, i) => row.map((v, j) => (baseline && j < i ? baseline[i][j] : v)));
  const low = heatLow(shown.flat());
  node.setAttribute("viewBox", `0 0 ${left + n * cell + 90} ${top + Math.max(n * cell, 150) + 4}`);
  node.setAttribute("width", String(left + n * cell + 90));
  const label = (name) => { const parts = name.split("/"); return parts[parts.length - 1] || name; };
  runs.forEach((run, i) => {
    const row = svg("text", { x: left - 6, y: top + i * cell + cell / 2 + 4, "text-anchor": "end" }, label(run));
    row.append(svg("title", {}, run));
    const col = svg("text", { x: left + i * cell + cell / 2, y: top - 8, "text-anchor": "middle" }, label(run));
    col.append(svg("title", {}, run));
    node.append(row, col);
  });
  shown.forEach((values, i) => values.forEach((value, j) => node.append(...heatCell(runs, i, j, value, low,
    baseline && j < i, { left, top, cell }))));
  drawLegend(node, left + n * cell + 14, top, low);
}

function heatCell(runs, i, j, value, low, initial, box) {
  const x = box.left + j * box.cell;
  const y = box.top + i * box.cell;
  const rect = svg("rect", { x, y, width: box.cell - 2, height: box.cell - 2, fill: heat(value, low), "data-i": i,
    "data-j": j, "data-value": value === null ? "" : value, "data-initial": initial ? "1" : "0" });
  const what = initial ? "at initialisation" : "trained";
  rect.append(svg("title", {}, `${runs[i]} vs ${runs[j]}, ${what}: ${value === null ? "no map varies" : fmt(value, 3)}`));
  const dark = value === null || (value - low) / (1 - low) < 0.6;
  const text = svg("text", { x: x + box.cell / 2 - 1, y: y + box.cell / 2 + 3, "text-anchor": "middle",
    class: dark ? "on-dark" : "" }, value === null ? "–" : value.toFixed(2));
  return [rect, text];
}

function drawLegend(node, x, top, low) {
  // the colour scale: 20 steps from `low` (bottom) to 1.0 (top), with three values written beside it
  const steps = 20;
  const height = 120;
  const legend = svg("g", { "data-role": "legend" });
  for (let k = 0; k < steps; k++) {
    const value = 1 - (k + 0.5) * (1 - low) / steps;
    legend.append(svg("rect", { x, y: top + k * height / steps, width: 14, height: height / steps + 0.5,
      fill: heat(value, low) }));
  }
  for (const value of [1, (1 + low) / 2, low]) {
    const y = top + (1 - value) / (1 - low) * height;
    legend.append(svg("text", { x: x + 18, y: y + 4 }, value.toFixed(2)));
  }
  legend.append(svg("text", { x, y: top + height + 16 }, "mean r"));
  node.append(legend);
}

async function pollStudies() {
  const studies = state.runs.filter((e) => e.kind === "study");
  $("studies").hidden = !studies.length;
  for (const entry of studies) {
    const known = state.studies.get(entry.name);
    try {
      const answer = await getTagged(`/api/studies/${runPath(entry.name)}`, known ? known.tag : null);
      if (answer) state.studies.set(entry.name, { tag: answer.tag, detail: answer.data });
    } catch (error) { showError(`${entry.name}: ${error.message}`); }
  }
  $("studies-body").replaceChildren(...studies.filter((e) => state.studies.has(e.name))
    .map((e) => renderStudy(e.name, state.studies.get(e.name).detail)));
}

// --- polling ---------------------------------------------------------------------------------
function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

async function pollRuns() {
  const answer = await getTagged("/api/runs", state.tag);
  if (!answer) return false;
  state.tag = answer.tag;
  state.runs = answer.data.runs;
  state.differing = answer.data.differing;
  $("root-name").textContent = answer.data.root;
  const notes = answer.data.notes || [];
  $("notes").hidden = !notes.length;
  $("notes").replaceChildren(...notes.map((n) => el("li", {}, n)));
  if (state.firstLoad) { defaultSelection(); state.firstLoad = false; }
  renderTable();
  return true;
}

async function poll() {
  try {
    const changed = await pollRuns();
    await pollHistories();
    if (changed) await pollStudies();
    showError("");
    $("live").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    showError(`cannot reach the server: ${error.message}`);
    $("live").textContent = "disconnected";
  }
  state.polls += 1;
  document.body.dataset.polls = String(state.polls);
  setTimeout(poll, POLL_MS);
}

function start() {
  $("filter").addEventListener("input", () => { state.filter = $("filter").value; renderTable(); });
  $("smooth").addEventListener("input", () => { $("smooth-value").textContent = $("smooth").value; drawCharts(); });
  $("logscale").addEventListener("change", drawCharts);
  drawCharts();
  poll();
}

document.addEventListener("DOMContentLoaded", start);
