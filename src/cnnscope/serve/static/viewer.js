// cnnscope viewer: one page, no build step, no dependencies (common.js, loaded first, holds the helpers it shares
// with the dashboard: $, el, svg, fmt, pct). Every request goes through one object, `backend`: the /api/ endpoints
// of `cnnscope serve` here. Every text that comes from the run, a file, a request or the model goes in as text
// (el(), svg(), textContent, attribute setters): this file never parses HTML, so a run or class named like markup
// shows as that markup.
"use strict";

const GAP = 3; // pixels between maps in the grid

const state = {
  info: null,
  layers: [],
  layer: null,
  cmap: "magma",
  cols: 8,
  wantCols: 8, // the columns asked for: a layer with fewer maps shows fewer, the next one as many again
  scale: false,
  // the image being looked at: a data-set image, or a drawing/upload (sent as a picture, then as its pixels)
  source: { kind: "dataset", set: "test", index: 0 },
  pixels: null, // base64 of the model's input pixels (H×W, or H×W×3 for colour models), once known
  drawing: true, // whether the canvas takes drawings (one-channel models)
  notes: null, // {notes, warnings} of the last picture sent (upload or drawing)
  gridMeta: null,
  card: null, // {layer, map}
};

// --- the back end -----------------------------------------------------------------------------
// Every request of the page goes through `backend`. Here it is the HTTP API of `cnnscope serve`; a page that
// computes in the browser (the static site, or the notebook widget, serve/static/widget.js) sets
// window.cnnscopeBackend, before this file loads, to an object with the same methods giving the same answers
// (patternUrl and colormapUrl may answer a promise of the URL). `where` names the image: {set, index} (a data-set
// image), {blob} (a picture to prepare) or {pixels} (base64 of the model's input, as an earlier answer gave it). A
// back end may also have `picture(canvas)`: the drawing as it takes it (default: a PNG blob), and leave out an
// explanation's deletion test.
const backend = window.cnnscopeBackend || httpBackend();

function httpBackend() {
  const json = async (url, options) => (await api(url, options)).json();
  return {
    info: () => json("/api/info"),
    layers: () => json("/api/layers"),
    sample: (params) => json(`/api/sample?${qs(params)}`), // by index, class or at random, with its prediction
    predict: (where) => json("/api/predict", { method: "POST", ...pictureBody(where) }),
    maps: async (params, where) => gridAnswer(await api(...request("/api/activations", params, where))),
    units: (params, where) => json(...request("/api/units", params, where)),
    explain: (method, where) => json(...request("/api/explain", { method }, where)),
    card: (params, where) => json(...request("/api/card", params, where)),
    patternUrl: (card) => `/api/pattern?${qs({ layer: card.layer, map: card.map })}`,
    colormapUrl: (cmap) => `/api/colormap?${qs({ cmap })}`,
  };
}

// [url, fetch options] of a call about `where`: a GET naming the data-set image, or a POST of the picture.
function request(path, params, where) {
  if (where.set !== undefined) return [`${path}?${qs({ ...where, ...params })}`, {}];
  return [`${path}?${qs(params)}`, { method: "POST", ...pictureBody(where) }];
}

// A picture goes up as multipart; afterwards its pixels (the model's input) are enough.
function pictureBody(where) {
  if (!where.blob) return { headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pixels: where.pixels }) };
  const form = new FormData();
  form.append("image", where.blob, "drawing.png");
  return { body: form };
}

// The grid's PNG and its geometry and value range (X-Grid-* headers).
async function gridAnswer(response) {
  const meta = {};
  for (const key of ["maps", "rows", "cols", "height", "width", "min", "max", "value-min", "value-max"]) {
    meta[key] = Number(response.headers.get(`X-Grid-${key}`)); // header names are case-insensitive
  }
  return { blob: await response.blob(), meta };
}

function qs(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined)).toString();
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

// --- small helpers ----------------------------------------------------------------------------
function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; return; }
  box.textContent = String(error.message || error);
  box.hidden = false;
}

function gridParams() {
  return { layer: state.layer, cols: state.cols, scale: state.scale ? 1 : 0, cmap: state.cmap };
}

function layerInfo(name) { return state.layers.find((l) => l.name === name); }

// The image being looked at, for the back end; `picture`: a drawing or upload not sent yet goes up as its blob.
function where(picture = false) {
  const src = state.source;
  if (src.kind === "dataset") return { set: src.set, index: src.index };
  return picture && src.blob ? { blob: src.blob } : { pixels: state.pixels };
}

// Latest-wins: every refresh gets a number; answers to older refreshes are dropped.
let sequence = 0;
let inflight = false;
let pending = false;

async function refresh() {
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
  const src = state.source, image = where(true);
  const dense = !layerInfo(state.layer).grid; // a dense layer's units (the output layer: logits, probabilities)
  const [prediction, view] = await Promise.all([
    src.kind === "dataset" ? backend.sample(image) : backend.predict(image),
    dense ? backend.units(gridParams(), image) : backend.maps(gridParams(), image),
  ]);
  if (mine !== sequence) return; // a newer refresh was started meanwhile
  state.pixels = prediction.pixels;
  if (src.kind === "dataset") state.notes = null;
  else if (src.blob) state.notes = { kind: src.kind, notes: prediction.notes || [], warnings: prediction.warnings || [] };
  if (src.kind !== "dataset") src.blob = null;
  showNotes(prediction.warning);
  showPrediction(prediction);
  if (src.kind === "dataset") showOnCanvas(prediction.image, `${src.set} image ${src.index}`);
  explain(true); // in the background: the grid does not wait for the heat map
  showGrid(!dense);
  if (dense) { drawUnits(view); return; }
  state.gridMeta = view.meta;
  await drawGrid(view.blob, view.meta);
  if (state.card) openCard(state.card.layer, state.card.map, true);
}

// --- prediction -------------------------------------------------------------------------------
function smoothingNote() {
  const cap = state.info && state.info.confidence_cap;
  if (typeof cap !== "number") return "";
  return ` (of at most about ${pct(cap)}: trained with label smoothing ${state.info.label_smoothing}, ` +
    "which aims the true class at that, not at 100 %)";
}

function showPrediction(p) {
  $("input-img").src = p.image;
  $("pred-label").textContent = p.predicted_name;
  $("pred-conf").textContent = `${pct(p.probabilities[p.predicted])} confident` + smoothingNote();
  const truth = p.label;
  const truthBox = $("true-label");
  if (truth !== undefined) {
    const ok = truth === p.predicted;
    truthBox.replaceChildren("true class ", el("b", {}, p.class_names[truth]), ok ? " ✓" : " ✗");
    truthBox.style.color = ok ? "var(--good)" : "var(--bad)";
  } else {
    truthBox.textContent = state.source.kind === "upload" ? "uploaded picture" : "your drawing";
    truthBox.style.color = "";
  }
  $("probs").replaceChildren(...p.probabilities.map((value, k) => {
    const name = String(p.class_names[k]);
    const width = `${(100 * (value || 0)).toFixed(2)}%`;
    return el("div", { class: "prob" + (k === p.predicted ? " best" : "") + (k === truth ? " truth" : "") },
      el("span", { class: "name", title: name }, name),
      el("span", { class: "bar" }, el("span", { class: "fill", style: { width } })),
      el("span", { class: "pct" }, value === null ? "–" : `${(100 * value).toFixed(1)}%`));
  }));
}

// What was done to an uploaded or drawn picture, and warnings when it is far from the data set's images.
function showNotes(serverWarning) {
  const box = $("notes");
  const n = state.notes;
  const warnings = [...(n ? n.warnings : []), ...(serverWarning ? [serverWarning] : [])];
  const notes = n && n.kind === "upload" ? n.notes : [];
  box.replaceChildren(...warnings.map((w) => el("li", { class: "warn" }, w)), ...notes.map((text) => el("li", {}, text)));
  box.hidden = !warnings.length && !notes.length;
}

// --- why this class: a heat map by the chosen attribution method, with its deletion test -----------
// The deletion test ranks the pixels three ways (the method, brightness alone: no model, random) and the method
// passes when its deletion AUC is below the brightness ranking's (the answer's `criterion` says it exactly).
let explainSequence = 0;
const RANKINGS = { method: ["#5b3fd6", "method"], brightness: ["#e08a00", "brightness"], random: ["#8a8a8a", "random"] };

async function explain(newImage = false) {
  const mine = ++explainSequence;
  const method = $("method").value;
  const text = $("explain-text");
  if (!method) return;
  if (newImage) for (const option of $("method").options) option.textContent = option.dataset.title || option.textContent;
  text.textContent = "computing…";
  $("explain-verdict").hidden = true; // never a verdict of another image or method while this one computes
  $("explain-curves").replaceChildren();
  try {
    const e = await backend.explain(method, where());
    if (mine !== explainSequence) return; // a newer image or method was asked for meanwhile
    $("explain-img").src = e.png;
    if (e.deletion) showVerdict(e); // a back end may give the heat map alone (the static site's occlusion)
    text.textContent = explainWords(e);
  } catch (error) {
    if (mine === explainSequence) text.textContent = String(error.message || error);
  }
}

// The verdict in a badge, beside the method's name in the selector (so each method tried on this image keeps
// its verdict), and the deletion and insertion curves of the three rankings.
function showVerdict(e) {
  const d = e.deletion, passes = d.verdict === "passes";
  const badge = $("explain-verdict");
  badge.textContent = passes ? "passes" : "fails";
  badge.className = `verdict ${passes ? "pass" : "fail"}`;
  badge.title = d.criterion;
  badge.hidden = false;
  const option = [...$("method").options].find((o) => o.value === e.method);
  if (option) {
    option.dataset.title = option.dataset.title || option.textContent;
    option.textContent = `${option.dataset.title} · ${passes ? "passes" : "fails"}`;
  }
  $("explain-curves").replaceChildren(curvePlot(d, "deletion"), curvePlot(d, "insertion"));
}

function explainWords(e) {
  if (!e.deletion) {
    return `${e.title}, class ${e.class_name} (${pct(e.probability)}). ${e.about || ""}` +
      (e.signed ? " Red raises the score, blue lowers it." : "");
  }
  const d = e.deletion, r = d.rankings, top = Math.round(100 * d.fractions[d.fractions.length - 1]);
  const auc = (kind) => `${r.method[`${kind}_auc`].toFixed(3)} (brightness ${r.brightness[`${kind}_auc`].toFixed(3)}, ` +
    `random ${r.random[`${kind}_auc`].toFixed(3)})`;
  return `${e.title}, class ${e.class_name} (${pct(d.probability)}). Blanking 0–${top} % of the pixels in its order ` +
    `gives a deletion AUC of ${auc("deletion")}; inserting them into a black image an insertion AUC of ` +
    `${auc("insertion")}. It ${d.passes ? "passes" : "FAILS"}: ${d.criterion.replace(/^passes: /, "passing means ")}.` +
    (d.beats_random ? "" : " It does not even beat random pixels.") +
    (e.unseen_pixels ? ` Grey: the ${e.unseen_pixels} pixels no cell of ${e.layer} sees.` : "") +
    (e.signed ? " Red raises the score, blue lowers it." : "") +
    (e.channels_note ? ` Colour: ${e.channels_note}.` : "");
}

// A small SVG chart: the class probability along each ranking's deletion (or insertion) curve.
function curvePlot(d, kind) {
  const W = 150, H = 90, L = 22, B = 14;
  const fMax = d.fractions[d.fractions.length - 1];
  const x = (f) => L + (W - L - 4) * f / fMax, y = (p) => 4 + (H - B - 8) * (1 - p);
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: `curves ${kind}`, role: "img",
    "aria-label": `${kind} curves: class probability against the share of pixels ${kind === "deletion" ? "blanked" : "inserted"}` });
  plot.append(svg("line", { x1: L, y1: y(0), x2: W - 4, y2: y(0), class: "axis" }),
    svg("line", { x1: L, y1: y(0), x2: L, y2: y(1), class: "axis" }),
    svg("text", { x: L - 3, y: y(1) + 4, "text-anchor": "end" }, "1"),
    svg("text", { x: L - 3, y: y(0), "text-anchor": "end" }, "0"),
    svg("text", { x: (L + W) / 2, y: H - 2, "text-anchor": "middle" }, `${kind} 0–${Math.round(100 * fMax)} %`));
  for (const [name, [colour, label]] of Object.entries(RANKINGS)) {
    const row = d.rankings[name];
    const points = row[kind].map((p, i) => `${x(d.fractions[i]).toFixed(1)},${y(p).toFixed(1)}`).join(" ");
    plot.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": name === "method" ? 2.2 : 1.3 },
      svg("title", {}, `${label}: AUC ${row[`${kind}_auc`].toFixed(3)}`)));
  }
  return plot;
}

// --- the activation grid ----------------------------------------------------------------------
let gridLayout = null;

// Cell sizes that fit the grid's width and, when possible, the window's height; the canvas sized for them.
function sizeGrid(canvas, meta) {
  const width = canvas.parentElement.clientWidth;
  const maxHeight = Math.max(360, window.innerHeight - 260); // keep the whole grid on screen when possible
  const byWidth = (width - GAP * (meta.cols - 1)) / meta.cols;
  const byHeight = (maxHeight - GAP * (meta.rows - 1)) / meta.rows * meta.width / meta.height;
  const cell = Math.max(4, Math.floor(Math.min(byWidth, byHeight, 160)));
  const cssW = meta.cols * cell + GAP * (meta.cols - 1);
  const cellH = Math.round(cell * meta.height / meta.width);
  const cssH = meta.rows * cellH + GAP * (meta.rows - 1);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, cssW, cssH);
  return { ctx, cell, cellH };
}

async function drawGrid(blob, meta) {
  const bitmap = await createImageBitmap(blob);
  const canvas = $("grid");
  const { ctx, cell, cellH } = sizeGrid(canvas, meta);
  for (let m = 0; m < meta.maps; m++) {
    const r = Math.floor(m / meta.cols), c = m % meta.cols;
    ctx.drawImage(bitmap, c * meta.width, r * meta.height, meta.width, meta.height,
      c * (cell + GAP), r * (cellH + GAP), cell, cellH);
  }
  if (state.card && state.card.layer === state.layer) {
    const m = state.card.map, r = Math.floor(m / meta.cols), c = m % meta.cols;
    ctx.strokeStyle = "#5b3fd6";
    ctx.lineWidth = 2;
    ctx.strokeRect(c * (cell + GAP) - 1, r * (cellH + GAP) - 1, cell + 2, cellH + 2);
  }
  gridLayout = { cell, cellH, meta };
  canvas.dataset.renders = String(Number(canvas.dataset.renders) + 1);
  showLayerInfo(meta);
}

function showLayerInfo(meta) {
  const info = layerInfo(state.layer);
  const shape = info.output_shape;
  const rf = info.geometry ? info.geometry.size.join("×") : "–";
  $("layer-info").replaceChildren(el("b", {}, info.name), " ", el("span", { class: "muted" }, `(${info.type})`),
    ` · ${shape[0]} maps of ${shape[1]}×${shape[2]} · receptive field ${rf} px · values ` +
    `${fmt(meta["value-min"])} … ${fmt(meta["value-max"])}`);
  // a URL, or a promise of one (a back end without a server answers with a data URI once it has the picture)
  Promise.resolve(backend.colormapUrl(state.cmap)).then((src) => { $("cbar").style.backgroundImage = `url(${src})`; },
    () => { $("cbar").style.backgroundImage = ""; });
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

// One row per value: its name, a bar (signed: from the middle, red above zero, blue below) and the value.
function unitBars(values, names, format, signed) {
  const peak = Math.max(...values.map((v) => Math.abs(v || 0))) || 1;
  return values.map((v, k) => {
    const width = (signed ? 50 : 100) * Math.abs(v || 0) / peak;
    const seg = { left: `${signed && v < 0 ? 50 - width : signed ? 50 : 0}%`, width: `${width}%` };
    return el("div", { class: "r" }, el("span", {}, names[k]),
      el("span", { class: signed ? "axis" : "axis plain" }, el("span", { class: `seg ${v >= 0 ? "pos" : "neg"}`, style: seg })),
      el("span", { class: "v" }, format(v)));
  });
}

function drawUnits(u) {
  const box = $("units");
  const head = el("p", {}, el("b", {}, u.layer), ` (${u.type}${u.output ? ", the output layer" : ""}) · ` +
    `${u.units} units${u.stage ? ` (${u.stage})` : ""} · values ${fmt(u.min)} … ${fmt(u.max)}`);
  const names = u.output ? u.class_names : u.values.map((_, k) => `unit ${k}`);
  const logits = el("div", { class: "readout units-bars" }, ...unitBars(u.values, names, (v) => fmt(v), u.min < 0));
  $("layer-info").replaceChildren();
  if (!u.output) { box.replaceChildren(head, logits); return; }
  const probs = el("div", { class: "readout units-bars" }, ...unitBars(u.probabilities, names, pct, false));
  box.replaceChildren(head, el("div", { class: "pair" },
    el("section", {}, el("h3", {}, "logits (the layer's output)"), logits),
    el("section", {}, el("h3", {}, `probabilities (${u.activation} of the logits)`), probs)),
  el("p", { class: "muted small" }, u.activation === "softmax"
    ? `The softmax turns the logits into probabilities that sum to 1; chance is ${(100 / names.length).toFixed(0)} %.`
    : "The sigmoid turns each logit into a probability of its own class."));
}

// --- drawing and uploads ----------------------------------------------------------------------
const draw = { canvas: null, ctx: null, down: false, last: null, timer: null };

// The data-set image being analysed fills the big canvas (a stroke on it starts a new drawing).
async function showOnCanvas(uri, what) {
  const img = await loadImage(uri);
  if (state.source.kind !== "dataset") return; // the user started drawing meanwhile
  resetCanvas();
  draw.ctx.imageSmoothingEnabled = false;
  draw.ctx.drawImage(img, 0, 0, draw.canvas.width, draw.canvas.height);
  draw.canvas.dataset.showing = what;
  $("draw-hint").hidden = true;
}

function resetCanvas() {
  delete draw.canvas.dataset.showing;
  draw.ctx.fillStyle = "#000";
  draw.ctx.fillRect(0, 0, draw.canvas.width, draw.canvas.height);
}

function canvasPoint(event) {
  const rect = draw.canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * draw.canvas.width / rect.width,
    (event.clientY - rect.top) * draw.canvas.height / rect.height];
}

function strokeTo(point) {
  const ctx = draw.ctx;
  ctx.strokeStyle = "#fff";
  ctx.fillStyle = "#fff";
  ctx.lineWidth = 19;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (!draw.last) {
    ctx.beginPath(); ctx.arc(point[0], point[1], ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fill();
  } else {
    ctx.beginPath(); ctx.moveTo(...draw.last); ctx.lineTo(...point); ctx.stroke();
  }
  draw.last = point;
}

// The drawing goes to the back end as its `picture(canvas)` makes it (an in-page back end takes the pixels as
// they are), else as a PNG blob encoded at once (png.js; canvas.toBlob waits for idle time, up to a second).
function scheduleDrawingUpdate(delay = 120) {
  clearTimeout(draw.timer);
  draw.timer = setTimeout(async () => {
    const { width, height } = draw.canvas;
    const blob = await (backend.picture ? backend.picture(draw.canvas)
      : encodePNG(draw.ctx.getImageData(0, 0, width, height).data, width, height, true)); // white ink on black
    state.source = { kind: "drawing", blob };
    $("source-label").textContent = "showing your drawing";
    refresh();
  }, delay);
}

function startStroke(e) {
  if (!state.drawing) return; // colour models take pictures, not drawings
  e.preventDefault();
  if (state.source.kind !== "drawing") resetCanvas(); // a new drawing starts from a clean canvas
  draw.canvas.setPointerCapture(e.pointerId);
  draw.down = true;
  draw.last = null;
  $("draw-hint").hidden = true;
  strokeTo(canvasPoint(e));
  state.source = { kind: "drawing", blob: null };
  scheduleDrawingUpdate();
}

function continueStroke(e) {
  if (!draw.down) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) strokeTo(canvasPoint(ev));
  scheduleDrawingUpdate();
}

function setupDrawing() {
  draw.canvas = $("draw");
  draw.ctx = draw.canvas.getContext("2d");
  resetCanvas();
  const c = draw.canvas;
  c.addEventListener("pointerdown", startStroke);
  c.addEventListener("pointermove", continueStroke);
  const end = () => { if (draw.down) { draw.down = false; draw.last = null; scheduleDrawingUpdate(30); } };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", () => {
    resetCanvas();
    $("draw-hint").hidden = false;
    setDatasetImage(state.source.kind === "dataset" ? state.source.index : Number($("index").value) || 0);
  });
  $("upload").addEventListener("change", (e) => { if (e.target.files[0]) useUpload(e.target.files[0]); });
  const wrap = c.parentElement;
  wrap.addEventListener("dragover", (e) => { e.preventDefault(); wrap.classList.add("dragover"); });
  wrap.addEventListener("dragleave", () => wrap.classList.remove("dragover"));
  wrap.addEventListener("drop", (e) => {
    e.preventDefault();
    wrap.classList.remove("dragover");
    if (e.dataTransfer.files[0]) useUpload(e.dataTransfer.files[0]);
  });
}

function useUpload(file) {
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    resetCanvas();
    const s = Math.min(draw.canvas.width / img.width, draw.canvas.height / img.height);
    const w = img.width * s, h = img.height * s;
    draw.ctx.drawImage(img, (draw.canvas.width - w) / 2, (draw.canvas.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  img.src = url;
  $("draw-hint").hidden = true;
  state.source = { kind: "upload", blob: file };
  $("source-label").textContent = `showing ${file.name}`;
  refresh();
}

// `exact`: an index the back end named (a card's top image), used as it is (a static page ships only some images).
function setDatasetImage(index, set, exact = false) {
  const size = state.info.sets[set || state.source.set || "test"];
  index = exact ? Number(index) : Math.max(0, Math.min(size - 1, Number(index) || 0));
  state.source = { kind: "dataset", set: set || $("set").value, index };
  $("index").value = index;
  $("source-label").textContent = "";
  $("draw-hint").hidden = false;
  resetCanvas();
  refresh();
}

// --- the map card -----------------------------------------------------------------------------
async function openCard(layer, map, quiet = false) {
  state.card = { layer, map };
  $("card").hidden = false;
  $("card-backdrop").hidden = false;
  const info = layerInfo(layer);
  $("card-title").textContent = `${layer} · map ${map} of ${info.output_shape[0]}`;
  if (!quiet) $("card-body").replaceChildren(el("div", { class: "spinner" }, "computing…"));
  let card;
  try {
    card = await backend.card({ layer, map, cmap: state.cmap }, where());
  } catch (error) {
    $("card-body").replaceChildren(el("p", { class: "error" }, error.message));
    return;
  }
  if (!state.card || state.card.layer !== layer || state.card.map !== map) return;
  renderCard(card);
}

function closeCard() {
  state.card = null;
  $("card").hidden = true;
  $("card-backdrop").hidden = true;
}

function section(title, ...children) {
  return el("section", { class: "card-section" }, el("h3", {}, title), ...children);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image(); img.onload = () => resolve(img); img.onerror = reject; img.src = src;
  });
}

function rfRect(rf, pos, size) { // the input patch seen by output position pos, clipped to the image
  const top = rf.offset[0] + pos[0] * rf.jump[0], left = rf.offset[1] + pos[1] * rf.jump[1];
  const t = Math.max(0, top), l = Math.max(0, left);
  const b = Math.min(size[0], top + rf.size[0]), r = Math.min(size[1], left + rf.size[1]);
  return { top: t, left: l, height: b - t, width: r - l };
}

async function paintWithRect(canvas, src, rf, pos, size, px) {
  const img = await loadImage(src);
  canvas.width = size[1] * px; canvas.height = size[0] * px;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  if (pos) {
    const r = rfRect(rf, pos, size);
    ctx.fillStyle = "rgba(91, 63, 214, 0.22)";
    ctx.fillRect(r.left * px, r.top * px, r.width * px, r.height * px);
    ctx.strokeStyle = "#b7a6ff"; ctx.lineWidth = Math.max(2, px / 3);
    ctx.strokeRect(r.left * px, r.top * px, r.width * px, r.height * px);
  }
}

// A dead map (0 at every position of every test image) is said first: nothing below describes a detector.
function deadNotice(card) {
  return el("p", { class: "error dead" }, `Dead map: 0 everywhere on all ${card.test_images} test images. ` +
    "Its pattern, top images and read-out describe no detector.");
}

async function renderCard(card) {
  const body = $("card-body");
  body.replaceChildren();
  if (card.dead) body.appendChild(deadNotice(card));
  await mapSection(body, card);
  if (card.kernel) await kernelSection(body, card.kernel);
  else if (card.pool) body.appendChild(poolSection(card));
  body.appendChild(patternSection(card));
  if (card.top && card.top.length && !card.dead) body.appendChild(topSection(card));
  if (card.readout) body.appendChild(readoutSection(card.readout));
}

// 1. the map enlarged, and the input patch (receptive field) that a position of it sees: click or hover to move it
async function mapSection(body, card) {
  const size = state.info.input_shape.slice(1), inputSrc = $("input-img").src;
  const rf = card.receptive_field, [h, w] = card.shape;
  const big = el("canvas", { class: "map-big" }), rfCanvas = el("canvas", { class: "rf-input" });
  const posText = el("span", { class: "pos" });
  body.appendChild(section("Map and receptive field", el("div", { class: "pair" },
    el("figure", {}, big, el("figcaption", {}, `${h}×${w} map · ${fmt(card.min)} … ${fmt(card.max)}, mean ` +
      `${fmt(card.mean)} · `, posText)),
    el("figure", {}, rfCanvas, el("figcaption", {}, `The input patch (${rf.size.join("×")} px) that the marked ` +
      "position sees. Click or hover the map to move it.")))));
  const mapImg = await loadImage(card.png);
  const px = Math.max(1, Math.floor(230 / Math.max(h, w)));
  const showPos = async (pos) => {
    big.width = w * px; big.height = h * px;
    const ctx = big.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(mapImg, 0, 0, big.width, big.height);
    ctx.strokeStyle = "#7df0c8"; ctx.lineWidth = 2;
    ctx.strokeRect(pos[1] * px + 1, pos[0] * px + 1, px - 2, px - 2);
    posText.textContent = `(${pos[0]}, ${pos[1]}) = ${fmt(card.values[pos[0]][pos[1]])}`;
    await paintWithRect(rfCanvas, inputSrc, rf, pos, size, 8);
  };
  const posFromEvent = (e) => {
    const rect = big.getBoundingClientRect();
    return [Math.min(h - 1, Math.max(0, Math.floor((e.clientY - rect.top) / rect.height * h))),
      Math.min(w - 1, Math.max(0, Math.floor((e.clientX - rect.left) / rect.width * w)))];
  };
  big.addEventListener("pointermove", (e) => showPos(posFromEvent(e)));
  big.addEventListener("click", (e) => showPos(posFromEvent(e)));
  await showPos(card.peak);
}

// 2. a conv map's kernel: its weights on each input channel (and on a colour model's first layer, as one picture)
async function kernelSection(body, k) {
  const canvas = el("canvas", { class: "kernels" });
  const inputs = k.input === "input" ? (k.rgb_png ? "colour channels (red, green, blue)" : "input channel(s)")
    : `maps of ${k.input}`;
  body.appendChild(section("Kernel", canvas, el("p", {}, `The ${k.height}×${k.width} weights applied to each of ` +
    `the ${k.channels} ${inputs} (blue negative, red positive, ±${fmt(k.max)}); bias ${fmt(k.bias)}.`)));
  const kimg = await loadImage(k.png);
  const cell = Math.max(10, Math.min(k.channels <= 4 ? 96 : 48, Math.floor((480 - 4 * (k.cols - 1)) / k.cols)));
  canvas.width = k.cols * cell + 4 * (k.cols - 1);
  canvas.height = k.rows * cell + 4 * (k.rows - 1);
  canvas.style.width = `${canvas.width}px`;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  for (let i = 0; i < k.channels; i++) {
    const r = Math.floor(i / k.cols), c = i % k.cols;
    ctx.drawImage(kimg, c * k.width, r * k.height, k.width, k.height, c * (cell + 4), r * (cell + 4), cell, cell);
  }
  if (k.rgb_png) { // a colour model's first layer: the three kernels as one RGB picture (mid-grey = 0)
    const rgbImg = el("img", { class: "pixelated kernel-rgb", src: k.rgb_png, alt: "the filter as one RGB picture",
      width: cell, height: Math.round(cell * k.height / k.width) });
    canvas.parentElement.appendChild(el("p", {}, rgbImg, " the red, green and blue kernels as one RGB " +
      "picture, scaled together (mid-grey = 0): the colour this filter responds to."));
  }
}

// 2'. a pool map's rule (pooling has no weights)
function poolSection(card) {
  return section("Pooling", el("p", {}, `Each value is the ${card.pool.kind} of a ${card.pool.size.join("×")} ` +
    `window (stride ${card.pool.stride.join("×")}) of map ${card.map} of ${card.pool.input}: pooling has no weights.`));
}

// 3. the maximising pattern (computed lazily by the back end, then cached)
function patternSection(card) {
  if (!card.pattern_url) return section("Maximising pattern", el("p", {}, "Not available in this installation."));
  const words = "An input found by gradient ascent that makes this map as large as possible.";
  const img = el("img", { class: "pattern pixelated", alt: "pattern" });
  const note = el("p", {}, `computing… ${words}`);
  img.onload = () => { note.textContent = words; };
  img.onerror = () => { note.textContent = "could not compute the pattern"; };
  Promise.resolve(backend.patternUrl(card)).then((src) => { img.src = src; }, img.onerror); // a URL or its promise
  return section("Maximising pattern", el("div", { class: "pair" }, img, note));
}

// 4. the test images in which this map peaks highest, each with the receptive field of its peak; click to open one
function topSection(card) {
  const size = state.info.input_shape.slice(1);
  const tops = el("div", { class: "tops" });
  for (const t of card.top) {
    const canvas = el("canvas");
    const item = el("div", { class: "top-item" }, canvas, el("span", {}, `#${t.index} · ${t.class_name}`),
      el("span", { class: "muted" }, fmt(t.value)));
    item.addEventListener("click", () => { $("set").value = "test"; setDatasetImage(t.index, "test", true); });
    tops.appendChild(item);
    paintWithRect(canvas, t.png, card.receptive_field, t.position, size, 4);
  }
  return section("Top-activating test images", tops, el("p", {}, "The test images whose strongest response in " +
    "this map is largest; the box is the receptive field of that strongest position. Click one to look at it."));
}

// 5. how the map feeds each class (the last conv layer and what follows it)
function readoutSection(ro) {
  const rows = unitBars(ro.values, ro.class_names, (v) => `${v >= 0 ? "+" : ""}${fmt(v)}`, true);
  return section("How it feeds each class", el("div", { class: "readout" }, ...rows),
    el("p", {}, "Gradient of each class logit with respect to this map's spatial mean (the map rising by one " +
      `unit everywhere), averaged over ${ro.images} test images, through the dense head.`));
}

// --- setup ------------------------------------------------------------------------------------
function showRunInfo(info) {
  const hasAcc = info.test_accuracy !== null && info.test_accuracy !== undefined;
  $("run-info").replaceChildren("run ", el("b", {}, info.run),
    ` · ${info.dataset} · ${Number(info.params).toLocaleString()} parameters` +
    (info.epochs ? ` · ${info.epochs} epochs` : "") + (hasAcc ? " · test accuracy " : ""),
    hasAcc ? el("b", {}, `${(100 * info.test_accuracy).toFixed(2)} %`) : null);
  document.title = `cnnscope viewer · ${info.run}`;
  const [h, w] = info.input_shape.slice(1);
  $("input-img").setAttribute("alt", `the model's ${h}×${w} input` + (info.channels === 3 ? " (colour)" : ""));
}

// The big canvas takes drawings for one-channel models only; a colour model's pictures are uploaded or dropped.
function setupCanvasWords(info) {
  state.drawing = info.drawing !== false;
  const item = info.noun === "item";
  if (state.drawing) {
    $("draw-hint").replaceChildren(item ? "draw or upload an item" : "draw a digit here", el("br"),
      el("small", {}, "or drop a picture"));
    $("draw").setAttribute("aria-label", `drawing canvas: draw ${item ? "an item" : "a digit"}`);
  } else {
    $("draw-hint").replaceChildren("drop a picture here", el("br"), el("small", {}, "or use Upload picture…"));
    $("draw").setAttribute("aria-label", "picture area: drop a picture");
    $("draw").classList.add("no-draw");
    $("clear").textContent = "Back to data set";
  }
}

function fillSelectors(info) {
  for (const [name, n] of Object.entries(info.sets)) $("set").add(new Option(`${name} (${n.toLocaleString()})`, name));
  info.class_names.forEach((name, k) => $("klass").add(new Option(`${k}: ${name}`, k)));
  for (const l of state.layers.filter((x) => x.grid || x.kind === "dense")) {
    $("layer").add(new Option(`${l.name}  (${l.output_shape.join("×")})`, l.name));
  }
  for (const name of info.colormaps) $("cmap").add(new Option(name, name));
  for (const m of info.methods || []) $("method").add(new Option(m.title, m.name));
}

function setCols(cols) {
  state.cols = cols;
  $("cols").value = cols;
  $("cols-value").textContent = cols;
}

function setupToolbar() {
  $("layer").addEventListener("change", (e) => {
    state.layer = e.target.value;
    if (state.card) closeCard();
    const maps = layerInfo(state.layer).maps; // none for a dense layer: the columns asked for stay as they are
    if (maps) { $("cols").max = Math.min(32, maps); setCols(Math.min(state.wantCols, maps)); }
    refresh();
  });
  $("cmap").addEventListener("change", (e) => { state.cmap = e.target.value; refresh(); });
  $("method").addEventListener("change", () => explain());
  $("scale").addEventListener("change", (e) => { state.scale = e.target.checked; refresh(); });
  $("cols").addEventListener("input", (e) => { state.wantCols = Number(e.target.value); setCols(state.wantCols); refresh(); });
}

function setupImagePicker() {
  $("index").addEventListener("change", (e) => setDatasetImage(e.target.value));
  $("set").addEventListener("change", (e) => setDatasetImage(0, e.target.value));
  $("prev").addEventListener("click", () => setDatasetImage((state.source.index || 0) - 1));
  $("next").addEventListener("click", () => setDatasetImage((state.source.index || 0) + 1));
  $("random").addEventListener("click", async () => {
    try {
      const sample = await backend.sample({ set: $("set").value, random: 1, class: $("klass").value || null });
      setDatasetImage(sample.index);
    } catch (error) { showError(error); }
  });
}

function setupGridEvents() {
  const grid = $("grid"), tip = $("grid-tip");
  grid.addEventListener("click", (e) => { const hit = mapAt(e); if (hit) openCard(state.layer, hit.map); });
  grid.addEventListener("pointermove", (e) => {
    const hit = mapAt(e);
    if (!hit) { tip.hidden = true; return; }
    tip.hidden = false;
    tip.textContent = `map ${hit.map}`;
    tip.style.left = `${hit.x + 12}px`;
    tip.style.top = `${hit.y + 12}px`;
  });
  grid.addEventListener("pointerleave", () => { tip.hidden = true; });
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(refresh, 150); });
}

// The card's buttons, and the keyboard: Escape closes the card, the arrows step through maps (card open) or images.
function setupCardKeys() {
  const step = (d) => {
    if (!state.card) return;
    const n = layerInfo(state.card.layer).output_shape[0];
    openCard(state.card.layer, (state.card.map + d + n) % n);
  };
  $("card-close").addEventListener("click", closeCard);
  $("card-backdrop").addEventListener("click", closeCard);
  $("card-prev").addEventListener("click", () => step(-1));
  $("card-next").addEventListener("click", () => step(1));
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "Escape") closeCard();
    else if (e.key === "ArrowLeft") state.card ? step(-1) : setDatasetImage((state.source.index || 0) - 1);
    else if (e.key === "ArrowRight") state.card ? step(1) : setDatasetImage((state.source.index || 0) + 1);
  });
}

async function init() {
  try {
    const [info, layers] = await Promise.all([backend.info(), backend.layers()]);
    state.info = info;
    state.layers = layers.layers;
    showRunInfo(info);
    setupCanvasWords(info);
    fillSelectors(info);
    state.layer = info.grid_layers[0];
    state.cols = Math.min(8, layerInfo(state.layer).maps);
  } catch (error) {
    showError(error);
    return;
  }
  setupDrawing();
  setupToolbar();
  setupImagePicker();
  setupGridEvents();
  setupCardKeys();
  $("cols").max = Math.min(32, layerInfo(state.layer).maps);
  setCols(state.cols);
  refresh();
}

document.addEventListener("DOMContentLoaded", init);
