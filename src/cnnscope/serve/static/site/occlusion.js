// Occlusion in the page, as cnnscope.inspect.attribution.occlusion computes it with Captum: a window×window patch
// (moved by `stride`, the last one cut at the border) set to the baseline (a black image, preprocessed) in every
// channel; each pixel gets the mean drop of the predicted class's logit over the patches that cover it. All
// patches run as one batch. Window, stride and the baseline come from the exported info.
"use strict";

import { colorize } from "./render.js";
import { toBitmap } from "./files.js";

function starts(size, window, stride) {
  const count = Math.ceil((size - window) / stride) + 1;
  return Array.from({ length: count }, (_, k) => k * stride);
}

function occluded(x, blank, patches, shape, window) {
  const [c, h, w] = shape, size = c * h * w, batch = new Float32Array(patches.length * size);
  patches.forEach(([top, left], k) => {
    const part = batch.subarray(k * size, (k + 1) * size);
    part.set(x);
    for (let ch = 0; ch < c; ch++) {
      for (let y = top; y < Math.min(h, top + window); y++) {
        const row = (ch * h + y) * w;
        part.set(blank.subarray(row + left, row + Math.min(w, left + window)), row + left);
      }
    }
  });
  return batch;
}

// {heat (H·W), class} for one image's raw pixels.
export async function occlusionHeat(backend, pixels) {
  const { window, stride } = backend.info.occlusion;
  const shape = backend.shape, [, h, w] = shape;
  const x = backend.input(pixels), blank = Float32Array.from(backend.info.blank);
  const out = await backend.outputs(pixels), probs = out.probabilities.data, classes = probs.length;
  let cls = 0;
  for (let k = 1; k < classes; k++) if (probs[k] > probs[cls]) cls = k;
  const patches = starts(h, window, stride).flatMap((top) => starts(w, window, stride).map((left) => [top, left]));
  const logits = (await backend.run(occluded(x, blank, patches, shape, window), patches.length, ["logits"])).logits.data;
  const sum = new Float64Array(h * w), count = new Float64Array(h * w), base = out.logits.data[cls];
  patches.forEach(([top, left], k) => {
    const drop = base - logits[k * classes + cls];
    for (let y = top; y < Math.min(h, top + window); y++) {
      for (let xx = left; xx < Math.min(w, left + window); xx++) { sum[y * w + xx] += drop; count[y * w + xx] += 1; }
    }
  });
  return { heat: Float32Array.from(sum, (s, i) => (count[i] ? s / count[i] : 0)), cls, probability: probs[cls] };
}

// The HTTP viewer's /api/explain answer for occlusion (no deletion test in the page).
export async function occlusion(backend, pixels) {
  const { heat, cls, probability } = await occlusionHeat(backend, pixels);
  const [c, h, w] = backend.shape, method = backend.info.occlusion;
  const { rgba, vmin, vmax } = colorize(heat, backend.colormaps.tables.RdBu_r, null, null, method.signed);
  const about = `How much the class's score (its logit) drops when a ${method.window}×${method.window} patch around ` +
    `each pixel is blacked out (moved by ${method.stride} pixels, averaged over the patches that cover it); ` +
    "computed in this page, without the HTTP viewer's deletion test.";
  return { method: method.name, title: method.title, layer: null, class: cls, channels: c, channels_note: null,
    class_name: backend.info.class_names[cls], probability, png: await toBitmap(rgba, w, h), min: vmin, max: vmax,
    signed: method.signed, unseen_pixels: 0, deletion: null, about, heat };
}
