// Numbers -> pixels in the page, as cnnscope.base.imaging draws them in Python: colour through a colour map's
// 256-entry table (exported from matplotlib at export time), the grid of maps as cnnscope.inspect.activation_grid
// tiles it, the series' standardise-and-clip display. Pure functions over typed arrays; no DOM.
"use strict";

export const EMPTY_RGB = [236, 238, 242]; // cnnscope.base.imaging.EMPTY_RGB: empty cells, unseen pixels
const f32 = Math.fround;

// The finite range of values (0..1 when none is finite), as colorize() takes it.
export function finiteRange(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return lo === Infinity ? [0, 1] : [lo, hi];
}

// colorize(values, table, vmin, vmax, symmetric) -> {rgba, vmin, vmax}: float32 arithmetic as numpy does it on a
// float32 array with Python float bounds; table index floor(norm·256) (256 -> 255) as matplotlib; NaN -> EMPTY_RGB.
export function colorize(values, table, vmin = null, vmax = null, symmetric = false) {
  if (vmin === null || vmax === null) {
    let [lo, hi] = finiteRange(values);
    if (symmetric) { hi = Math.max(Math.abs(lo), Math.abs(hi)); lo = -hi; }
    vmin = vmin === null ? lo : vmin;
    vmax = vmax === null ? hi : vmax;
  }
  const span = f32(vmax > vmin ? vmax - vmin : 1), low = f32(vmin);
  const rgba = new Uint8ClampedArray(values.length * 4);
  for (let i = 0; i < values.length; i++) {
    const v = values[i], o = 4 * i;
    rgba[o + 3] = 255;
    if (!Number.isFinite(v)) { rgba.set(EMPTY_RGB, o); continue; }
    const norm = Math.min(1, Math.max(0, f32(f32(v - low) / span)));
    const k = Math.min(255, Math.floor(f32(norm * 256)));
    rgba[o] = table[3 * k]; rgba[o + 1] = table[3 * k + 1]; rgba[o + 2] = table[3 * k + 2];
  }
  return { rgba, vmin, vmax };
}

// cnnscope.inspect.standardize_maps: per map (x − mean)/std·64 + 128 clipped to 0..255; a flat map is 128.
export function standardize(maps, n, size) {
  const out = new Float32Array(maps.length);
  for (let m = 0; m < n; m++) {
    const part = maps.subarray(m * size, (m + 1) * size);
    let sum = 0;
    for (const v of part) sum += v;
    const mean = sum / size;
    let sq = 0;
    for (const v of part) sq += (v - mean) * (v - mean);
    const std = Math.sqrt(sq / size);
    for (let i = 0; i < size; i++) {
      out[m * size + i] = std > 0 ? Math.min(255, Math.max(0, (part[i] - mean) / std * 64 + 128)) : 128;
    }
  }
  return out;
}

// cnnscope.inspect.activation_grid: maps (n, h, w) tiled `cols` per row into (rows·h, cols·w), NaN in empty cells.
export function tileMaps(maps, n, h, w, cols) {
  const rows = Math.ceil(n / cols);
  const grid = new Float32Array(rows * h * cols * w).fill(NaN);
  for (let m = 0; m < n; m++) {
    const r = Math.floor(m / cols), c = m % cols;
    for (let y = 0; y < h; y++) {
      const from = (m * h + y) * w, to = ((r * h + y) * cols + c) * w;
      grid.set(maps.subarray(from, from + w), to);
    }
  }
  return { grid, rows, width: cols * w, height: rows * h };
}

// cnnscope.views.panels.grid_panel without the PNG: the grid's pixels and the meta the viewer reads.
export function gridImage(maps, shape, cols, scale, table) {
  const [n, h, w] = shape;
  cols = Math.max(1, Math.min(cols, n));
  const shown = scale ? standardize(maps, n, h * w) : maps;
  const { grid, rows, width, height } = tileMaps(shown, n, h, w, cols);
  const { rgba, vmin, vmax } = scale ? colorize(grid, table, 0, 255) : colorize(grid, table);
  const [valueMin, valueMax] = finiteRange(maps);
  return { rgba, width, height, meta: { maps: n, rows, cols, height: h, width: w, min: vmin, max: vmax,
    "value-min": valueMin, "value-max": valueMax } };
}

// Raw pixels (H·W grey, or H·W·3 colour) as RGBA.
export function pictureRGBA(pixels, channels) {
  const n = pixels.length / channels, rgba = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) rgba[4 * i + c] = pixels[i * channels + (channels === 3 ? c : 0)];
    rgba[4 * i + 3] = 255;
  }
  return rgba;
}

// numpy's round (half to even), for values that must match Python's rounding exactly.
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
