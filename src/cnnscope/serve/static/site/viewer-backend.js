// The HTTP viewer's back-end seam (viewer.js: `window.cnnscopeBackend`), answered in the page: the same methods
// and answers as its /api/ calls, computed by the in-page back end (backend.js) over the site's own files. Pictures
// the page computes are handed over as blob: URLs (the page's policy allows its own files and blob: images only).
"use strict";


const KEEP_URLS = 128; // blob: URLs kept alive (a card holds about a dozen); older ones are revoked
const EXPLAIN_IDLE_MS = 150; // occlusion blocks the page while it runs: it starts once the image has stayed

const urls = [], prepared = new WeakMap();
let explainCalls = 0;

// How long the last interaction took in this browser, in data-*-ms attributes (benchmarks/bench_site.py reads them).
export function record(name, ms) {
  document.body.dataset[`${name}Ms`] = ms.toFixed(1);
}

// An ImageBitmap of the in-page back end as a blob: URL for viewer.js's <img> (a PNG, encoded at once by
// encodePNG: static/png.js, a plain script of the page).
async function bitmapURL(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height), ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const url = URL.createObjectURL(encodePNG(rgba, bitmap.width, bitmap.height));
  urls.push(url);
  if (urls.length > KEEP_URLS) URL.revokeObjectURL(urls.shift());
  return url;
}

// A drawing (the canvas as picture() took it) or an upload (a File) prepared once, as the HTTP viewer's server
// prepares pictures.
function prepare(backend, blob) {
  if (!prepared.has(blob)) {
    prepared.set(blob, createImageBitmap(blob).then((bitmap) => {
      const started = performance.now(), found = backend.prepare(bitmap);
      record("prepare", performance.now() - started);
      return found;
    }));
  }
  return prepared.get(blob);
}

// The model's raw input for `where`: {set, index} (a shipped test image), {blob} or {pixels}.
async function pixelsOf(backend, where) {
  if (where.pixels) return { pixels: where.pixels };
  if (where.blob) return prepare(backend, where.blob);
  const pixels = await backend.testPixels(Number(where.index));
  if (!pixels) throw new Error(`test image ${where.index} is not shipped with this page`);
  return { pixels };
}

// /api/sample: a shipped test image by index, or at random (of a class).
async function sample(backend, params) {
  const klass = params.class === null || params.class === undefined || params.class === "" ? null : Number(params.class);
  const found = await backend.sample({ index: Number(params.index) || 0, random: Boolean(params.random), klass });
  return { ...found, image: await bitmapURL(found.image) };
}

// /api/predict: a drawing or an upload, with what was done to it.
async function predict(backend, where) {
  const { pixels, notes = [], warnings = [] } = await pixelsOf(backend, where), started = performance.now();
  const prediction = await backend.predict(pixels);
  record("predict", performance.now() - started);
  return { ...prediction, image: await bitmapURL(prediction.image), notes, warnings };
}

// /api/activations: the grid's pixels (an ImageBitmap: createImageBitmap takes it as it takes a PNG blob) and meta.
async function maps(backend, params, where) {
  const { pixels } = await pixelsOf(backend, where);
  const { image, meta } = await backend.grid(pixels, { layer: params.layer, cols: Number(params.cols),
    scale: Boolean(Number(params.scale)), cmap: params.cmap });
  return { blob: image, meta };
}

async function units(backend, params, where) {
  return backend.units((await pixelsOf(backend, where)).pixels, params.layer);
}

async function card(backend, params, where) {
  const { pixels } = await pixelsOf(backend, where);
  const found = await backend.card(pixels, { layer: params.layer, map: Number(params.map), cmap: params.cmap });
  const top = await Promise.all(found.top.map(async (t) => ({ ...t, png: await bitmapURL(t.png) })));
  return { ...found, png: await bitmapURL(found.png), top };
}

async function explain(backend, method, where) {
  const mine = ++explainCalls;
  await new Promise((resolve) => setTimeout(resolve, EXPLAIN_IDLE_MS));
  if (mine !== explainCalls) throw new Error("a newer image was asked for"); // viewer.js drops it unseen
  const { pixels } = await pixelsOf(backend, where), started = performance.now();
  const found = await backend.explain(pixels, method);
  record("explain", performance.now() - started);
  return { ...found, png: await bitmapURL(found.png), heat: undefined };
}

// The object viewer.js calls, each method waiting for the in-page back end (`opened`: SiteBackend.open()).
export function viewerBackend(opened) {
  let current = null;
  opened.then((backend) => { current = backend; }, () => {});
  const use = (fn) => async (...args) => fn(await opened, ...args);
  return {
    info: use(async (backend) => backend.info),
    layers: use(async (backend) => ({ layers: backend.layers })),
    sample: use(sample), predict: use(predict), maps: use(maps), units: use(units), card: use(card),
    explain: use(explain),
    picture: (canvas) => createImageBitmap(canvas), // the drawing as it is now, without encoding it
    patternUrl: (found) => found.pattern_url,
    colormapUrl: (cmap) => current.colormapURL(cmap), // asked for once a grid is drawn: the back end is open
  };
}
