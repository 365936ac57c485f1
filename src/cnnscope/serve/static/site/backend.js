// The static site's back end: the answers the HTTP viewer's /api/ endpoints give, computed in the page. The model
// runs in onnxruntime-web (its plain wasm build, one thread: no cross-origin isolation needed); what Python
// computed at export time (the run's description, the map cards' kernels, patterns and top images, the colour
// tables, the atlas of test images) is read from the site's own files. Nothing is fetched from anywhere else.
"use strict";

import * as ort from "../ort/ort.wasm.min.js";
import { gridImage, pictureRGBA } from "./render.js";
import { preparePicture } from "./prepare.js";
import { mapCard, TopImages } from "./cards.js";
import { occlusion } from "./occlusion.js";
import { SITE, cutTile, fetchOK, json, pngPixels, toBitmap } from "./files.js";

const f32 = Math.fround;

// cnnscope.data.Preprocessor: raw pixels (H, W[, C]) -> float32 (C, H, W), clipped and standardised in float32.
export function preprocess(pixels, p, shape) {
  const [c, h, w] = shape, out = new Float32Array(c * h * w);
  const at = (arr, ch, y, x) => {
    if (p.shape.length === 0) return arr[0];
    if (p.shape.length === 2) return arr[y * w + x];
    return p.shape[1] === 1 ? arr[ch] : arr[(ch * h + y) * w + x];
  };
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = pixels[(y * w + x) * c + ch];
        if (p.low) v = Math.min(Math.max(v, at(p.low, ch, y, x)), at(p.high, ch, y, x));
        out[(ch * h + y) * w + x] = f32(f32(v - at(p.mean, ch, y, x)) / at(p.scale, ch, y, x));
      }
    }
  }
  return out;
}

function keyOf(pixels) { // FNV-1a of the pixels: the cache key of one image's outputs
  let hash = 2166136261;
  for (const v of pixels) hash = Math.imul(hash ^ v, 16777619);
  return `${pixels.length}:${hash >>> 0}`;
}

export class SiteBackend {
  static async open() {
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = { mjs: new URL("ort/ort-wasm-simd-threaded.js", SITE).href,
      wasm: new URL("ort/ort-wasm-simd-threaded.wasm", SITE).href };
    const [info, layers, colormaps, cards, model] = await Promise.all([json("data/info.json"),
      json("data/layers.json"), json("data/colormaps.json"), json("data/cards.json"),
      fetchOK("model.onnx").then((r) => r.arrayBuffer())]);
    const session = await ort.InferenceSession.create(new Uint8Array(model), { executionProviders: ["wasm"] });
    const backend = new SiteBackend(info, layers.layers, colormaps, cards, session);
    await backend.loadAtlas();
    return backend;
  }

  constructor(info, layers, colormaps, cards, session) {
    Object.assign(this, { info, layers, colormaps, session });
    this.cards = Object.fromEntries(cards.layers.map((layer) => [layer.layer, layer]));
    this.shape = info.input_shape; // (C, H, W)
    this.cache = new Map();
    this.tops = new TopImages(cards, info.input_shape, (path) => pngPixels(path));
  }

  async loadAtlas() {
    this.atlas = await pngPixels(this.info.atlas.file);
  }

  get channels() { return this.shape[0]; }

  // --- running the model ------------------------------------------------------------------------------
  // The graph's outputs `names` for a batch of preprocessed images (n·C·H·W floats).
  async run(x, n, names) {
    const input = new ort.Tensor("float32", x, [n, ...this.shape]);
    const found = await this.session.run({ input }, names);
    return Object.fromEntries(names.map((name) => [name, { data: found[name].data, dims: found[name].dims }]));
  }

  // One image's raw pixels as the model's input (C·H·W floats).
  input(pixels) {
    return preprocess(pixels, this.info.preprocess, this.shape);
  }

  // Every output (probabilities, logits, each named layer) for one image's raw pixels, cached by content.
  async outputs(pixels) {
    const key = keyOf(pixels);
    if (!this.cache.has(key)) {
      const names = ["probabilities", "logits", ...this.info.layer_names];
      this.cache.set(key, this.run(this.input(pixels), 1, names));
      if (this.cache.size > 8) this.cache.delete(this.cache.keys().next().value);
    }
    return this.cache.get(key);
  }

  // --- the viewer's answers --------------------------------------------------------------------------
  image(pixels) {
    const [, h, w] = this.shape;
    return toBitmap(pictureRGBA(pixels, this.channels), w, h);
  }

  async predict(pixels) {
    const out = await this.outputs(pixels);
    const probabilities = Array.from(out.probabilities.data, (p) => Number(p.toFixed(6)));
    let best = 0;
    probabilities.forEach((p, k) => { if (p > probabilities[best]) best = k; });
    return { probabilities, predicted: best, predicted_name: this.info.class_names[best],
      class_names: this.info.class_names, pixels, image: await this.image(pixels) };
  }

  // A shipped test image: from the atlas, or from a map card's top images (its index anywhere in the test set).
  async testPixels(index) {
    const a = this.info.atlas;
    if (index >= 0 && index < a.count) {
      return cutTile(this.atlas, Math.floor(index / a.cols), index % a.cols, a.height, a.width, this.channels);
    }
    return this.tops.pixels(index);
  }

  async sample({ index = 0, random = false, klass = null } = {}) {
    const a = this.info.atlas;
    if (random) {
      const pool = a.indices.filter((i) => klass === null || a.labels[i] === klass);
      if (!pool.length) throw new Error(`the shipped test images hold no image of class ${klass}`);
      index = pool[Math.floor(Math.random() * pool.length)];
    }
    const pixels = await this.testPixels(index);
    if (!pixels) throw new Error(`test image ${index} is not shipped with this page (0 to ${a.count - 1} are)`);
    const label = index < a.count ? a.labels[index] : this.tops.label(index);
    return { set: "test", index, label, class_name: this.info.class_names[label], ...(await this.predict(pixels)) };
  }

  prepare(source) {
    return preparePicture(source, this.info.picture);
  }

  layerInfo(name) {
    const info = this.layers.find((l) => l.name === name);
    if (!info) throw new Error(`unknown layer '${name}'; valid: ${this.layers.map((l) => l.name).join(", ")}`);
    return info;
  }

  async maps(pixels, layer) {
    const out = (await this.outputs(pixels))[layer];
    return { data: out.data, shape: out.dims.slice(1) };
  }

  async grid(pixels, { layer, cols = 8, scale = false, cmap = "magma" }) {
    const { data, shape } = await this.maps(pixels, layer);
    const g = gridImage(data, shape, cols, scale, this.colormaps.tables[cmap]);
    return { image: await toBitmap(g.rgba, g.width, g.height), meta: g.meta };
  }

  colormapURL(cmap) { return new URL(this.colormaps.strips[cmap], SITE).href; }

  async units(pixels, layer) {
    const out = await this.outputs(pixels);
    const values = Array.from(out[layer].data, (v) => Number(v.toFixed(5)));
    const text = this.info.units[layer];
    const data = { ...text, values, min: Math.min(...values), max: Math.max(...values) };
    if (text.output) data.probabilities = Array.from(out.probabilities.data, (p) => Number(p.toFixed(6)));
    return data;
  }

  card(pixels, { layer, map, cmap = "magma" }) {
    return mapCard(this, pixels, layer, map, cmap);
  }

  explain(pixels, method = "occlusion") {
    if (method !== this.info.occlusion.name) {
      throw new Error(`unknown method '${method}'; this page computes ${this.info.occlusion.name}`);
    }
    return occlusion(this, pixels);
  }
}
