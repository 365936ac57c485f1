// A drawing or an uploaded picture -> the model's raw input, as cnnscope.data.picture_input prepares it in Python
// (the HTTP viewer's rule): grey as Pillow converts RGB to L, then mnist_format — light ink on dark (inverted when
// the border is light), background removed and contrast stretched, cropped to the ink, the longer side scaled to
// the style's box with Pillow's Lanczos (shrinking) or bicubic (enlarging) filter, placed by its centre of mass
// (Fashion-MNIST: its box) in the field. The settings (box, centring, field, style) come from the exported info.
// Colour models: the centre cropped to the model's aspect and scaled by the browser (Pillow's 8-bit resampling is
// not ported; see the site's README section).
"use strict";

import { roundHalfEven } from "./render.js";

const f32 = Math.fround;

// --- Pillow's resampling of mode "F" pictures (src/libImaging/Resample.c), double sums stored as float32 -------
const FILTERS = {
  lanczos: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  bicubic: { support: 2, fn: bicubic },
};

function sinc(x) {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function bicubic(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize, filterscale = Math.max(1, scale), support = filter.support * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = new Float64Array(Math.max(0, xmax));
    let ww = 0;
    for (let x = 0; x < xmax; x++) { k[x] = filter.fn((x + xmin - center + 0.5) * ss); ww += k[x]; }
    if (ww !== 0) for (let x = 0; x < xmax; x++) k[x] /= ww;
    out.push({ xmin, k });
  }
  return out;
}

// One pass along rows (horizontal) or columns (vertical) of a float32 (h, w) picture.
function pass(src, h, w, outSize, filter, horizontal) {
  const coeffs = coefficients(horizontal ? w : h, outSize, filter);
  const oh = horizontal ? h : outSize, ow = horizontal ? outSize : w;
  const out = new Float32Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const { xmin, k } = coeffs[horizontal ? x : y];
      let ss = 0;
      for (let i = 0; i < k.length; i++) ss += (horizontal ? src[y * w + xmin + i] : src[(xmin + i) * w + x]) * k[i];
      out[y * ow + x] = ss;
    }
  }
  return out;
}

// Image.fromarray(x, "F").resize((nw, nh), filter): horizontal pass first, each pass only when the size changes.
export function resizeF(src, h, w, nh, nw, filterName) {
  const filter = FILTERS[filterName];
  let x = src, cw = w;
  if (nw !== w) { x = pass(x, h, w, nw, filter, true); cw = nw; }
  if (nh !== h) x = pass(x, h, cw, nh, filter, false);
  return x;
}

// --- numpy's median and percentile (linear), on a copy ----------------------------------------------------
export function percentile(values, q) {
  const sorted = Float64Array.from(values).sort();
  const at = (q / 100) * (sorted.length - 1), lo = Math.floor(at), t = at - lo;
  const a = sorted[lo], b = sorted[Math.min(lo + 1, sorted.length - 1)], diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

// Pillow's RGB -> L (ITU-R 601-2 luma in 16-bit fixed point).
export function greyOf(rgba) {
  const n = rgba.length / 4, grey = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    grey[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
  }
  return grey;
}

function edgesOf(x, h, w) {
  const edges = [];
  for (let c = 0; c < w; c++) edges.push(x[c]);
  for (let c = 0; c < w; c++) edges.push(x[(h - 1) * w + c]);
  for (let r = 0; r < h; r++) edges.push(x[r * w]);
  for (let r = 0; r < h; r++) edges.push(x[r * w + w - 1]);
  return edges;
}

// --- mnist_format -----------------------------------------------------------------------------------------
function inkBox(x, h, w) {
  let top = h, bottom = -1, left = w, right = -1;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      if (x[r * w + c] > 0) { top = Math.min(top, r); bottom = Math.max(bottom, r); left = Math.min(left, c); right = Math.max(right, c); }
    }
  }
  return { top, left, height: bottom - top + 1, width: right - left + 1 };
}

function cropAndScale(x, h, w, box, notes) {
  const b = inkBox(x, h, w);
  const crop = new Float32Array(b.height * b.width);
  for (let r = 0; r < b.height; r++) crop.set(x.subarray((b.top + r) * w + b.left, (b.top + r) * w + b.left + b.width), r * b.width);
  notes.push(`cropped to the ink's bounding box (${b.width}×${b.height} px of ${w}×${h})`);
  const factor = box / Math.max(b.height, b.width);
  const nw = Math.max(1, roundHalfEven(b.width * factor)), nh = Math.max(1, roundHalfEven(b.height * factor));
  const scaled = resizeF(crop, b.height, b.width, nh, nw, factor < 1 ? "lanczos" : "bicubic");
  for (let i = 0; i < scaled.length; i++) scaled[i] = Math.min(1, Math.max(0, scaled[i]));
  notes.push(`scaled to ${nw}×${nh} px (longer side ${box} px)`);
  return { x: scaled, h: nh, w: nw };
}

// numpy's pairwise summation of a[lo, lo + n) (a loop below 8 values, 8 accumulators up to 128, halves at
// multiples of 8 beyond), each step rounded by `round`: a centre of mass that is a tie in exact arithmetic is
// decided by the float32 sum as in Python, so a symmetric picture lands on the same pixel.
function pairwiseSum(a, lo, n, round) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res = round(res + a[lo + i]);
    return res;
  }
  if (n <= 128) {
    const r = Array.from({ length: 8 }, (_, j) => round(a[lo + j]));
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = round(r[j] + a[lo + i + j]);
    let res = round(round(round(r[0] + r[1]) + round(r[2] + r[3])) + round(round(r[4] + r[5]) + round(r[6] + r[7])));
    for (; i < n; i++) res = round(res + a[lo + i]);
    return res;
  }
  const half = Math.floor(n / 2) - (Math.floor(n / 2) % 8);
  return round(pairwiseSum(a, lo, half, round) + pairwiseSum(a, lo + half, n - half, round));
}

// (cy, cx, total) as numpy gives them for x float32 (h, w): (yy * x).sum() / x.sum() with yy int64.
function centreOfMass(x, h, w) {
  const total = pairwiseSum(x, 0, x.length, f32), same = (v) => v;
  const sy = pairwiseSum(Float64Array.from(x, (v, i) => Math.floor(i / w) * v), 0, x.length, same);
  const sx = pairwiseSum(Float64Array.from(x, (v, i) => (i % w) * v), 0, x.length, same);
  return { cy: sy / total, cx: sx / total, total };
}

function place(s, centring, fh, fw, notes) {
  let top, left, how;
  const { cy, cx, total } = centreOfMass(s.x, s.h, s.w);
  if (centring === "mass" && total > 0) {
    top = roundHalfEven((fh - 1) / 2 - cy); left = roundHalfEven((fw - 1) / 2 - cx);
    how = "centre of mass";
  } else {
    top = Math.floor((fh - s.h) / 2); left = Math.floor((fw - s.w) / 2);
    how = "bounding box";
  }
  top = Math.min(Math.max(top, 0), fh - s.h); left = Math.min(Math.max(left, 0), fw - s.w);
  const out = new Float32Array(fh * fw);
  for (let r = 0; r < s.h; r++) out.set(s.x.subarray(r * s.w, (r + 1) * s.w), (top + r) * fw + left);
  notes.push(`placed in the ${fw}×${fh} field centred by its ${how}`);
  return out;
}

function stretch(x, background, ink) {
  const lo = f32(background), span = f32(ink - background);
  for (let i = 0; i < x.length; i++) {
    const v = Math.min(1, Math.max(0, f32(f32(x[i] - lo) / span)));
    x[i] = v < 0.1 ? 0 : v;
  }
}

// A grey picture (float32 h·w, 0..255) -> {pixels: Uint8Array of the field, notes, warnings}; throws an Error
// with the Python message when there is no ink.
export function mnistFormat(grey, h, w, settings) {
  const { box: styleBox, centring, height: fh, width: fw, noun } = settings;
  const box = fh === 28 && fw === 28 ? styleBox : Math.max(1, roundHalfEven(styleBox * Math.min(fh, fw) / 28));
  const x = Float32Array.from(grey), notes = [], warnings = [];
  let background = percentile(edgesOf(x, h, w), 50);
  if (background > 127) {
    for (let i = 0; i < x.length; i++) x[i] = 255 - x[i];
    background = 255 - background;
    notes.push(`inverted: dark ink on a light background (${settings.style === "mnist" ? "MNIST digits" : "Fashion-MNIST items"} are light on dark)`);
  }
  const ink = x.length > 400 ? percentile(x, 99.5) : Math.max(...x);
  if (ink - background < 16) {
    throw new Error(`no ${noun} found: the picture has (nearly) a single shade; give a picture of a ${noun} with clear contrast to its background`);
  }
  stretch(x, background, ink);
  if (background > 8 || ink < 247) notes.push(`removed the background level (${Math.round(background)}) and stretched the ink to full contrast`);
  const out = place(cropAndScale(x, h, w, box, notes), centring, fh, fw, notes);
  let mean = 0;
  for (const v of out) mean += v;
  mean /= out.length;
  if (mean > settings.max_mean) warnings.push(`warning: the prepared image is ${Math.round(100 * mean)}% ink, more than the data set's images: the model will see something unlike its data`);
  const pixels = new Uint8Array(out.length);
  for (let i = 0; i < out.length; i++) pixels[i] = roundHalfEven(f32(out[i] * 255));
  return { pixels, notes, warnings };
}

// --- colour models: the centre cropped to the model's aspect, scaled by the browser ------------------------
export function colourFormat(source, sw, sh, settings) {
  const { height: h, width: w } = settings;
  let cw = sw, ch = sh;
  if (sw * h > sh * w) cw = Math.max(1, Math.round(sh * w / h)); else if (sw * h < sh * w) ch = Math.max(1, Math.round(sw * h / w));
  const canvas = new OffscreenCanvas(w, h), ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, Math.floor((sw - cw) / 2), Math.floor((sh - ch) / 2), cw, ch, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data, pixels = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) pixels[3 * i + c] = rgba[4 * i + c];
  return { pixels, notes: [`cropped the centre to the model's aspect and scaled to ${w}×${h} px`], warnings: [] };
}

// Any drawable (a canvas, an ImageBitmap of an upload) -> the model's raw input, as the HTTP viewer prepares it.
export function preparePicture(source, settings, maxSide = 1024) {
  const sw = source.width, sh = source.height;
  if (settings.channels === 3) return colourFormat(source, sw, sh, settings);
  const s = Math.min(1, maxSide / Math.max(sw, sh)), w = Math.max(1, Math.round(sw * s)), h = Math.max(1, Math.round(sh * s));
  const canvas = new OffscreenCanvas(w, h), ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff"; // transparency on white, as Python flattens dark ink
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(source, 0, 0, w, h);
  return mnistFormat(greyOf(ctx.getImageData(0, 0, w, h).data), h, w, settings);
}
