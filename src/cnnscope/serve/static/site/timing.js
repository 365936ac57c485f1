// The times of the page's interactions, measured from outside viewer.js by watching the page: draw -> prediction
// (the stroke's end to the frame that shows the new probabilities), a grid's refresh, a map's card; kept in
// data-*-ms attributes of <body> (benchmarks/bench_site.py reads them; the page shows nothing of it). data-ready is
// "1" once the back end is open and the first image is drawn.
"use strict";

import { record } from "./viewer-backend.js";

const since = { stroke: null, card: null, grid: null };

function onMutation(node, options, callback) {
  new MutationObserver(callback).observe(node, options);
}

function watchStroke() {
  document.getElementById("draw").addEventListener("pointerup", () => { since.stroke = performance.now(); });
  onMutation(document.getElementById("probs"), { childList: true }, () => {
    const started = since.stroke;
    if (started === null) return;
    since.stroke = null;
    requestAnimationFrame(() => record("stroke", performance.now() - started));
  });
}

function watchCard() {
  document.getElementById("grid").addEventListener("click", () => { since.card = performance.now(); });
  const body = document.getElementById("card-body");
  onMutation(body, { childList: true }, () => {
    if (since.card === null || !body.querySelector(".pattern")) return; // the last section with a wait before it
    record("card", performance.now() - since.card);
    since.card = null;
  });
}

// A layer's view drawn (the grid of a conv or pool layer, the units of a dense one) since the refresh began.
function watchGrid(opened) {
  onMutation(document.body, { attributes: true, attributeFilter: ["data-busy"] }, () => {
    if (document.body.dataset.busy === "1") since.grid = performance.now();
  });
  onMutation(document.getElementById("units"), { childList: true }, () => {
    if (since.grid !== null) record("grid", performance.now() - since.grid);
  });
  onMutation(document.getElementById("grid"), { attributes: true, attributeFilter: ["data-renders"] }, async () => {
    if (since.grid !== null) record("grid", performance.now() - since.grid);
    await opened;
    if (document.body.dataset.ready !== "1") {
      record("ready", performance.now()); // since the page's navigation started
      document.body.dataset.ready = "1";
    }
  });
}

export function watchTimes(opened) {
  watchStroke();
  watchCard();
  watchGrid(opened);
}
