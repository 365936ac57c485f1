// "Why this class?": the occlusion heat map, computed in the page (no deletion test here: the HTTP viewer has it).
// One batch of occluded images blocks the page while it runs, so it starts only once the image has stayed the
// same for a moment (the prediction and the grid are painted first; a drawing in progress is not slowed down).
"use strict";

import { backend, recordTime } from "./app.js";
import { $, paint } from "./dom.js";

const IDLE_MS = 150;
let sequence = 0, timer = null;
const pct = (v) => `${(100 * v).toFixed(1)} %`;

export function explain(pixels) {
  const mine = ++sequence;
  $("explain-text").textContent = "computing…";
  clearTimeout(timer);
  timer = setTimeout(() => explainNow(pixels, mine), IDLE_MS);
}

async function explainNow(pixels, mine) {
  const text = $("explain-text"), started = performance.now();
  try {
    const e = await backend.explain(pixels, $("method").value);
    if (mine !== sequence) return; // a newer image was asked for meanwhile
    await paint($("explain-img"), e.png);
    const o = backend.info.occlusion;
    text.textContent = `${e.title}, class ${e.class_name} (${pct(e.probability)}): how much the class's score ` +
      `(its logit) drops when a ${o.window}×${o.window} patch around each pixel is blacked out (moved by ${o.stride} ` +
      `pixels, averaged over the patches that cover it). Red raises the score, blue lowers it.`;
    recordTime("explain", performance.now() - started);
  } catch (error) {
    if (mine === sequence) text.textContent = String(error.message || error);
  }
}

export function setupExplain(methods) {
  for (const m of methods) $("method").add(new Option(m.title, m.name));
}
