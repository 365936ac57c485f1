// The drawing canvas: strokes in white on black, uploads and dropped pictures shown on it; what is drawn goes to
// the model as the HTTP viewer's drawings do (prepared as Python prepares pictures: prepare.js).
"use strict";

import { setDatasetImage, state, usePicture } from "./app.js";
import { $ } from "./dom.js";

const draw = { canvas: null, ctx: null, down: false, last: null, timer: null, drawing: true };

export function resetCanvas() {
  delete draw.canvas.dataset.showing;
  draw.ctx.fillStyle = "#000";
  draw.ctx.fillRect(0, 0, draw.canvas.width, draw.canvas.height);
}

// The data-set image being analysed fills the big canvas (a stroke on it starts a new drawing).
export function showOnCanvas(image, what) {
  if (state.source.kind !== "dataset") return;
  resetCanvas();
  draw.ctx.imageSmoothingEnabled = false;
  draw.ctx.drawImage(image, 0, 0, draw.canvas.width, draw.canvas.height);
  draw.canvas.dataset.showing = what;
  $("draw-hint").hidden = true;
}

function canvasPoint(event) {
  const rect = draw.canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * draw.canvas.width / rect.width,
    (event.clientY - rect.top) * draw.canvas.height / rect.height];
}

function strokeTo(point) {
  const ctx = draw.ctx;
  Object.assign(ctx, { strokeStyle: "#fff", fillStyle: "#fff", lineWidth: 19, lineCap: "round", lineJoin: "round" });
  ctx.beginPath();
  if (!draw.last) { ctx.arc(point[0], point[1], ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fill(); }
  else { ctx.moveTo(...draw.last); ctx.lineTo(...point); ctx.stroke(); }
  draw.last = point;
}

function scheduleUpdate(delay = 120) {
  clearTimeout(draw.timer);
  draw.timer = setTimeout(() => usePicture("drawing", draw.canvas, "drawing"), delay);
}

async function useUpload(file) {
  try {
    const bitmap = await createImageBitmap(file);
    resetCanvas();
    const s = Math.min(draw.canvas.width / bitmap.width, draw.canvas.height / bitmap.height);
    const w = bitmap.width * s, h = bitmap.height * s;
    draw.ctx.drawImage(bitmap, (draw.canvas.width - w) / 2, (draw.canvas.height - h) / 2, w, h);
    $("draw-hint").hidden = true;
    usePicture("upload", bitmap, file.name);
  } catch (error) {
    $("source-label").textContent = `${file.name}: not a picture this browser can read`;
  }
}

function listenStrokes(c) {
  c.addEventListener("pointerdown", (e) => {
    if (!draw.drawing) return; // colour models take pictures, not drawings
    e.preventDefault();
    if (state.source.kind !== "drawing") resetCanvas(); // a new drawing starts from a clean canvas
    c.setPointerCapture(e.pointerId);
    Object.assign(draw, { down: true, last: null });
    $("draw-hint").hidden = true;
    strokeTo(canvasPoint(e));
    state.source = { kind: "drawing", name: "drawing" };
    scheduleUpdate();
  });
  c.addEventListener("pointermove", (e) => {
    if (!draw.down) return;
    e.preventDefault();
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) strokeTo(canvasPoint(ev));
    scheduleUpdate();
  });
  const end = () => {
    if (!draw.down) return;
    Object.assign(draw, { down: false, last: null });
    state.timing.strokeEnd = performance.now(); // the stroke's end: where draw -> prediction is measured from
    scheduleUpdate(30);
  };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
}

export function setupDrawing(drawing) {
  draw.canvas = $("draw");
  draw.ctx = draw.canvas.getContext("2d", { willReadFrequently: true });
  draw.drawing = drawing;
  resetCanvas();
  listenStrokes(draw.canvas);
  $("clear").addEventListener("click", () => {
    resetCanvas();
    $("draw-hint").hidden = false;
    setDatasetImage(state.source.kind === "dataset" ? state.source.index : Number($("index").value) || 0);
  });
  $("upload").addEventListener("change", (e) => { if (e.target.files[0]) useUpload(e.target.files[0]); });
  const wrap = draw.canvas.parentElement;
  wrap.addEventListener("dragover", (e) => { e.preventDefault(); wrap.classList.add("dragover"); });
  wrap.addEventListener("dragleave", () => wrap.classList.remove("dragover"));
  wrap.addEventListener("drop", (e) => {
    e.preventDefault();
    wrap.classList.remove("dragover");
    if (e.dataTransfer.files[0]) useUpload(e.dataTransfer.files[0]);
  });
}
