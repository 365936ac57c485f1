// cnnscope's viewer as a static page: the HTTP viewer's page and behaviour, with its back end in the page
// (backend.js: onnxruntime-web and the files exported with the site) instead of /api/. No build step, no network
// beyond the site's own files.
"use strict";

import { SiteBackend } from "./backend.js";
import { cardState, closeCard, openCard, setupCard, stepCard } from "./card-view.js";
import { $, el, fmt, paint, showError } from "./dom.js";
import { setupDrawing, showOnCanvas } from "./drawing.js";
import { explain, setupExplain } from "./explain-view.js";
import { showFacts } from "./facts.js";

const GAP = 3; // pixels between maps in the grid

export const state = {
  info: null, layers: [], layer: null, cmap: "magma", cols: 8, wantCols: 8, scale: false,
  source: { kind: "dataset", set: "test", index: 0 }, // or {kind: "drawing" | "upload", name}
  pixels: null, // the model's raw input (Uint8Array) of the image looked at
  input: null, // that input as a drawable
  notes: null, // {kind, notes, warnings} of the last picture prepared
  timing: {},
};
export let backend = null;

const layerInfo = (name) => state.layers.find((l) => l.name === name);

// Latest-wins: every refresh gets a number; answers to older refreshes are dropped.
let sequence = 0, inflight = false, pending = false;

export async function refresh() {
  if (inflight) { pending = true; return; }
  inflight = true;
  document.body.dataset.busy = "1";
  const mine = ++sequence;
  try {
    await refreshNow(mine);
    showError(null);
  } catch (error) {
    showError(error);
  } finally {
    inflight = false;
    document.body.dataset.busy = "0";
    if (pending) { pending = false; refresh(); }
  }
}

async function refreshNow(mine) {
  const src = state.source, started = performance.now();
  const prediction = src.kind === "dataset" ? await backend.sample({ index: src.index }) : await backend.predict(state.pixels);
  if (mine !== sequence) return;
  state.pixels = prediction.pixels;
  state.input = prediction.image;
  showPrediction(prediction);
  recordTime("predict", performance.now() - started);
  const strokeEnd = src.kind === "drawing" ? state.timing.strokeEnd : null;
  if (strokeEnd) { // draw -> prediction: to the frame that shows it
    state.timing.strokeEnd = null;
    requestAnimationFrame(() => recordTime("stroke", performance.now() - strokeEnd));
  }
  if (src.kind === "dataset") { state.notes = null; showOnCanvas(prediction.image, `test image ${src.index}`); }
  showNotes();
  await showLayer();
  recordTime("grid", performance.now() - started);
  showTiming();
  explain(state.pixels); // in the background, once the image stays: the grid does not wait for the heat map
  const card = cardState();
  if (card) openCard(card.layer, card.map, true);
}

async function showLayer() {
  const info = layerInfo(state.layer);
  showGrid(info.grid);
  if (!info.grid) { drawUnits(await backend.units(state.pixels, state.layer)); return; }
  const { image, meta } = await backend.grid(state.pixels, { layer: state.layer, cols: state.cols, scale: state.scale,
    cmap: state.cmap });
  drawGrid(image, meta);
}

// How long the last interaction took in this browser: shown, and kept in data-*-ms attributes for measurements.
export function recordTime(name, ms) {
  state.timing[name] = ms;
  document.body.dataset[`${name}Ms`] = ms.toFixed(1);
}

function showTiming() {
  const t = state.timing, parts = [];
  if (t.prepare !== undefined && state.source.kind !== "dataset") parts.push(`picture ${t.prepare.toFixed(0)} ms`);
  parts.push(`prediction ${t.predict.toFixed(0)} ms`, `grid ${t.grid.toFixed(0)} ms`);
  $("timing").textContent = `in this browser: ${parts.join(" · ")}`;
}

// --- prediction -------------------------------------------------------------------------------
function smoothingNote() {
  const cap = state.info.confidence_cap;
  if (typeof cap !== "number") return "";
  return ` (of at most about ${(100 * cap).toFixed(1)} %: trained with label smoothing ${state.info.label_smoothing}, ` +
    "which aims the true class at that, not at 100 %)";
}

function showTruth(p) {
  const truth = p.label, box = $("true-label");
  if (truth !== undefined) {
    const ok = truth === p.predicted;
    box.replaceChildren("true class ", el("b", {}, String(p.class_names[truth])), ok ? " ✓" : " ✗");
    box.style.color = ok ? "var(--good)" : "var(--bad)";
  } else {
    box.textContent = state.source.kind === "upload" ? "uploaded picture" : "your drawing";
    box.style.color = "";
  }
}

function showPrediction(p) {
  paint($("input-img"), p.image);
  $("pred-label").textContent = p.predicted_name;
  $("pred-conf").textContent = `${(100 * p.probabilities[p.predicted]).toFixed(1)} % confident` + smoothingNote();
  showTruth(p);
  $("probs").replaceChildren(...p.probabilities.map((value, k) => {
    const name = String(p.class_names[k]);
    return el("div", { class: "prob" + (k === p.predicted ? " best" : "") + (k === p.label ? " truth" : "") },
      el("span", { class: "name", title: name }, name),
      el("span", { class: "bar" }, el("span", { class: "fill", style: { width: `${(100 * value).toFixed(2)}%` } })),
      el("span", { class: "pct" }, `${(100 * value).toFixed(1)}%`));
  }));
}

// What was done to an uploaded or drawn picture, and warnings when it is far from the data set's images.
function showNotes() {
  const n = state.notes, box = $("notes");
  const warnings = n ? n.warnings : [], notes = n && n.kind === "upload" ? n.notes : [];
  box.replaceChildren(...warnings.map((w) => el("li", { class: "warn" }, String(w))),
    ...notes.map((text) => el("li", {}, String(text))));
  box.hidden = !warnings.length && !notes.length;
}

// --- the activation grid ----------------------------------------------------------------------
let gridLayout = null;

function gridSize(meta) {
  const canvas = $("grid");
  const width = canvas.parentElement.clientWidth;
  const maxHeight = Math.max(360, window.innerHeight - 260); // keep the whole grid on screen when possible
  const byWidth = (width - GAP * (meta.cols - 1)) / meta.cols;
  const byHeight = (maxHeight - GAP * (meta.rows - 1)) / meta.rows * meta.width / meta.height;
  const cell = Math.max(4, Math.floor(Math.min(byWidth, byHeight, 160)));
  const cellH = Math.round(cell * meta.height / meta.width);
  return { cell, cellH, cssW: meta.cols * cell + GAP * (meta.cols - 1), cssH: meta.rows * cellH + GAP * (meta.rows - 1) };
}

function drawGrid(bitmap, meta) {
  const canvas = $("grid"), { cell, cellH, cssW, cssH } = gridSize(meta), dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
  canvas.style.width = `${cssW}px`; canvas.style.height = `${cssH}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, cssW, cssH);
  for (let m = 0; m < meta.maps; m++) {
    const r = Math.floor(m / meta.cols), c = m % meta.cols;
    ctx.drawImage(bitmap, c * meta.width, r * meta.height, meta.width, meta.height, c * (cell + GAP), r * (cellH + GAP), cell, cellH);
  }
  const card = cardState();
  if (card && card.layer === state.layer) {
    const r = Math.floor(card.map / meta.cols), c = card.map % meta.cols;
    ctx.strokeStyle = "#5b3fd6"; ctx.lineWidth = 2;
    ctx.strokeRect(c * (cell + GAP) - 1, r * (cellH + GAP) - 1, cell + 2, cellH + 2);
  }
  gridLayout = { cell, cellH, meta };
  canvas.dataset.renders = String(Number(canvas.dataset.renders) + 1);
  describeLayer(meta);
}

function describeLayer(meta) {
  const info = layerInfo(state.layer), shape = info.output_shape;
  const rf = info.geometry ? info.geometry.size.join("×") : "–";
  $("layer-info").replaceChildren(el("b", {}, String(info.name)), " ", el("span", { class: "muted" }, `(${info.type})`),
    ` · ${shape[0]} maps of ${shape[1]}×${shape[2]} · receptive field ${rf} px · values ` +
    `${fmt(meta["value-min"])} … ${fmt(meta["value-max"])}`);
  $("cbar").style.backgroundImage = `url("${backend.colormapURL(state.cmap)}")`;
  $("cbar-min").textContent = state.scale ? "−2σ" : fmt(meta.min);
  $("cbar-max").textContent = state.scale ? "+2σ" : fmt(meta.max);
}

function mapAt(event) {
  if (!gridLayout) return null;
  const rect = $("grid").getBoundingClientRect();
  const x = event.clientX - rect.left, y = event.clientY - rect.top;
  const { cell, cellH, meta } = gridLayout;
  const c = Math.floor(x / (cell + GAP)), r = Math.floor(y / (cellH + GAP));
  if (x - c * (cell + GAP) > cell || y - r * (cellH + GAP) > cellH || c < 0 || c >= meta.cols) return null;
  const m = r * meta.cols + c;
  return m >= 0 && m < meta.maps ? { map: m, x, y } : null;
}

// --- a dense layer: one bar per unit; the output layer: logits and probabilities per class --------
function showGrid(on) {
  for (const id of ["grid", "cbar-row", "grid-note"]) $(id).hidden = !on;
  $("units").hidden = on;
}

function unitBars(values, names, format, signed) {
  const peak = Math.max(...values.map((v) => Math.abs(v || 0))) || 1;
  return values.map((v, k) => {
    const width = (signed ? 50 : 100) * Math.abs(v || 0) / peak;
    const seg = { left: `${signed && v < 0 ? 50 - width : signed ? 50 : 0}%`, width: `${width}%` };
    return el("div", { class: "r" }, el("span", {}, String(names[k])),
      el("span", { class: signed ? "axis" : "axis plain" }, el("span", { class: `seg ${v >= 0 ? "pos" : "neg"}`, style: seg })),
      el("span", { class: "v" }, format(v)));
  });
}

function drawUnits(u) {
  const box = $("units"), signed = u.min < 0;
  const head = el("p", {}, el("b", {}, String(u.layer)), ` (${u.type}${u.output ? ", the output layer" : ""}) · ` +
    `${u.units} units${u.stage ? ` (${u.stage})` : ""} · values ${fmt(u.min)} … ${fmt(u.max)}`);
  const names = u.output ? u.class_names : u.values.map((_, k) => `unit ${k}`);
  const logits = el("div", { class: "readout units-bars" }, ...unitBars(u.values, names, (v) => fmt(v), signed));
  $("layer-info").replaceChildren();
  if (!u.output) { box.replaceChildren(head, logits); return; }
  const probs = el("div", { class: "readout units-bars" },
    ...unitBars(u.probabilities, names, (v) => `${(100 * v).toFixed(1)} %`, false));
  box.replaceChildren(head, el("div", { class: "pair" },
    el("section", {}, el("h3", {}, "logits (the layer's output)"), logits),
    el("section", {}, el("h3", {}, `probabilities (${u.activation} of the logits)`), probs)),
  el("p", { class: "muted small" }, u.activation === "softmax"
    ? `The softmax turns the logits into probabilities that sum to 1; chance is ${(100 / names.length).toFixed(0)} %.`
    : "The sigmoid turns each logit into a probability of its own class."));
}

// --- images -----------------------------------------------------------------------------------
// A shipped test image: 0 … atlas size − 1 by the index box, any index a card's top images hold by a click.
export function setDatasetImage(index, clamp = true) {
  const size = state.info.sets.test;
  index = Number(index) || 0;
  if (clamp) index = Math.max(0, Math.min(size - 1, index));
  state.source = { kind: "dataset", set: "test", index };
  $("index").value = index;
  $("source-label").textContent = "";
  $("draw-hint").hidden = false;
  refresh();
}

// A drawing or an upload, prepared as the HTTP viewer prepares pictures (prepare.js).
export function usePicture(kind, source, name) {
  const started = performance.now();
  try {
    const { pixels, notes, warnings } = backend.prepare(source);
    recordTime("prepare", performance.now() - started);
    state.source = { kind, name };
    state.pixels = pixels;
    state.notes = { kind, notes, warnings };
    $("source-label").textContent = kind === "upload" ? `showing ${name}` : "showing your drawing";
    refresh();
  } catch (error) {
    showError(error);
  }
}

// --- setup ------------------------------------------------------------------------------------
function describeRun(info) {
  const hasAcc = info.test_accuracy !== null && info.test_accuracy !== undefined;
  $("run-info").replaceChildren("run ", el("b", {}, String(info.run)),
    ` · ${info.dataset} · ${Number(info.params).toLocaleString()} parameters` +
    (info.epochs ? ` · ${info.epochs} epochs` : "") + (hasAcc ? " · test accuracy " : ""),
    hasAcc ? el("b", {}, `${(100 * info.test_accuracy).toFixed(2)} %`) : null);
  document.title = `cnnscope viewer · ${info.run}`;
}

function fillControls(info) {
  const noun = info.noun === "item" ? "item" : "digit";
  if (info.drawing) {
    $("draw-hint").replaceChildren(noun === "item" ? "draw or upload an item" : "draw a digit here", el("br"),
      el("small", {}, "or drop a picture"));
  } else {
    $("draw-hint").replaceChildren("drop a picture here", el("br"), el("small", {}, "or use Upload picture…"));
    $("draw").classList.add("no-draw");
    $("clear").textContent = "Back to data set";
  }
  $("set").add(new Option(`test (${info.sets.test.toLocaleString()} of ${info.test_images.toLocaleString()})`, "test"));
  info.class_names.forEach((name, k) => $("klass").add(new Option(`${k}: ${name}`, k)));
  for (const l of state.layers.filter((x) => x.grid || x.kind === "dense")) {
    $("layer").add(new Option(`${l.name}  (${l.output_shape.join("×")})`, l.name));
  }
  for (const name of info.colormaps) $("cmap").add(new Option(name, name));
  $("index").max = info.sets.test - 1;
}

// The columns asked for (the slider) are kept: a layer with fewer maps shows fewer, the next one as many again
// (a dense layer, which has no maps, changes nothing).
function setCols(value) {
  const maps = layerInfo(state.layer).maps;
  if (!maps) return;
  state.wantCols = value;
  $("cols").max = Math.min(32, maps);
  state.cols = Math.min(value, maps);
  $("cols").value = state.cols;
  $("cols-value").textContent = state.cols;
}

function listen() {
  $("layer").addEventListener("change", (e) => { state.layer = e.target.value; closeCard(); setCols(state.wantCols); refresh(); });
  $("cmap").addEventListener("change", (e) => { state.cmap = e.target.value; refresh(); });
  $("scale").addEventListener("change", (e) => { state.scale = e.target.checked; refresh(); });
  $("cols").addEventListener("input", (e) => { setCols(Number(e.target.value)); refresh(); });
  $("index").addEventListener("change", (e) => setDatasetImage(e.target.value));
  $("prev").addEventListener("click", () => setDatasetImage((state.source.index || 0) - 1));
  $("next").addEventListener("click", () => setDatasetImage((state.source.index || 0) + 1));
  $("random").addEventListener("click", async () => {
    try {
      const klass = $("klass").value === "" ? null : Number($("klass").value);
      setDatasetImage((await backend.sample({ random: true, klass })).index);
    } catch (error) { showError(error); }
  });
  const grid = $("grid"), tip = $("grid-tip");
  grid.addEventListener("click", (e) => { const hit = mapAt(e); if (hit) openCard(state.layer, hit.map); });
  grid.addEventListener("pointermove", (e) => {
    const hit = mapAt(e);
    tip.hidden = !hit;
    if (!hit) return;
    tip.textContent = `map ${hit.map}`;
    Object.assign(tip.style, { left: `${hit.x + 12}px`, top: `${hit.y + 12}px` });
  });
  grid.addEventListener("pointerleave", () => { tip.hidden = true; });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "Escape") closeCard();
    else if (e.key === "ArrowLeft") cardState() ? stepCard(-1) : setDatasetImage((state.source.index || 0) - 1);
    else if (e.key === "ArrowRight") cardState() ? stepCard(1) : setDatasetImage((state.source.index || 0) + 1);
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(refresh, 150); });
}

async function start() {
  try {
    backend = await SiteBackend.open();
  } catch (error) {
    $("run-info").textContent = "the model could not be loaded";
    showError(error);
    throw error;
  }
  state.info = backend.info;
  state.layers = backend.layers;
  state.layer = state.info.grid_layers[0];
  describeRun(state.info);
  fillControls(state.info);
  setCols(8);
  listen();
  setupDrawing(state.info.drawing);
  setupExplain(state.info.methods);
  setupCard();
  showFacts().catch(showError);
  await refresh();
  recordTime("ready", performance.now()); // since the page's navigation started
  document.body.dataset.ready = "1";
  return backend;
}

export const ready = start();
