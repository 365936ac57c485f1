// "Why this class?": the occlusion heat map, computed in the page (no deletion test here: the HTTP viewer has it).
"use strict";

import { backend, recordTime } from "./app.js";
import { $, paint } from "./dom.js";

let sequence = 0;
const pct = (v) => `${(100 * v).toFixed(1)} %`;

export async function explain(pixels) {
  const mine = ++sequence, text = $("explain-text"), started = performance.now();
  text.textContent = "computing…";
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
