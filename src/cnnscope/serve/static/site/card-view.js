// A map's card, drawn as the HTTP viewer draws it: the map enlarged with its receptive field on the input, the
// kernel or pooling rule, the maximising pattern, the top test images and the class read-out.
"use strict";

import { backend, recordTime, setDatasetImage, state } from "./app.js";
import { $, drawable, el, fmt } from "./dom.js";

let current = null; // {layer, map} of the open card

export const cardState = () => current;

export async function openCard(layer, map, quiet = false) {
  const started = performance.now();
  current = { layer, map };
  $("card").hidden = false;
  $("card-backdrop").hidden = false;
  const n = state.layers.find((l) => l.name === layer).output_shape[0];
  $("card-title").textContent = `${layer} · map ${map} of ${n}`;
  if (!quiet) $("card-body").replaceChildren(el("div", { class: "spinner" }, "computing…"));
  let card;
  try {
    card = await backend.card(state.pixels, { layer, map, cmap: state.cmap });
  } catch (error) {
    $("card-body").replaceChildren(el("p", { class: "error" }, String(error.message)));
    return;
  }
  if (!current || current.layer !== layer || current.map !== map) return;
  await renderCard(card);
  recordTime("card", performance.now() - started);
}

export function closeCard() {
  current = null;
  $("card").hidden = true;
  $("card-backdrop").hidden = true;
}

export function stepCard(d) {
  if (!current) return;
  const n = state.layers.find((l) => l.name === current.layer).output_shape[0];
  openCard(current.layer, (current.map + d + n) % n);
}

function section(title, ...children) {
  return el("section", { class: "card-section" }, el("h3", {}, title), ...children);
}

function rfRect(rf, pos, size) { // the input patch seen by output position pos, clipped to the image
  const top = rf.offset[0] + pos[0] * rf.jump[0], left = rf.offset[1] + pos[1] * rf.jump[1];
  const t = Math.max(0, top), l = Math.max(0, left);
  const b = Math.min(size[0], top + rf.size[0]), r = Math.min(size[1], left + rf.size[1]);
  return { top: t, left: l, height: b - t, width: r - l };
}

async function paintWithRect(canvas, src, rf, pos, size, px) {
  const img = await drawable(src);
  canvas.width = size[1] * px; canvas.height = size[0] * px;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  if (!pos) return;
  const r = rfRect(rf, pos, size);
  ctx.fillStyle = "rgba(91, 63, 214, 0.22)";
  ctx.fillRect(r.left * px, r.top * px, r.width * px, r.height * px);
  ctx.strokeStyle = "#b7a6ff"; ctx.lineWidth = Math.max(2, px / 3);
  ctx.strokeRect(r.left * px, r.top * px, r.width * px, r.height * px);
}

// 1. the map enlarged + its receptive field on the input
async function mapSection(card, size) {
  const rf = card.receptive_field, [h, w] = card.shape;
  const big = el("canvas", { class: "map-big" }), rfCanvas = el("canvas", { class: "rf-input" });
  const posText = el("span", { class: "pos" });
  const mapImg = await drawable(card.png), px = Math.max(1, Math.floor(230 / Math.max(h, w)));
  const showPos = async (pos) => {
    big.width = w * px; big.height = h * px;
    const ctx = big.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(mapImg, 0, 0, big.width, big.height);
    ctx.strokeStyle = "#7df0c8"; ctx.lineWidth = 2;
    ctx.strokeRect(pos[1] * px + 1, pos[0] * px + 1, px - 2, px - 2);
    posText.textContent = `(${pos[0]}, ${pos[1]}) = ${fmt(card.values[pos[0]][pos[1]])}`;
    await paintWithRect(rfCanvas, state.input, rf, pos, size, 8);
  };
  const posFromEvent = (e) => {
    const rect = big.getBoundingClientRect();
    return [Math.min(h - 1, Math.max(0, Math.floor((e.clientY - rect.top) / rect.height * h))),
      Math.min(w - 1, Math.max(0, Math.floor((e.clientX - rect.left) / rect.width * w)))];
  };
  big.addEventListener("pointermove", (e) => showPos(posFromEvent(e)));
  big.addEventListener("click", (e) => showPos(posFromEvent(e)));
  await showPos(card.peak);
  return section("Map and receptive field", el("div", { class: "pair" },
    el("figure", {}, big, el("figcaption", {}, `${h}×${w} map · ${fmt(card.min)} … ${fmt(card.max)}, mean ` +
      `${fmt(card.mean)} · `, posText)),
    el("figure", {}, rfCanvas, el("figcaption", {}, `The input patch (${rf.size.join("×")} px) that the marked ` +
      "position sees. Click or hover the map to move it."))));
}

// 2. kernels (conv) or the pooling rule
async function kernelSection(card) {
  const k = card.kernel;
  if (!k) {
    return section("Pooling", el("p", {}, `Each value is the ${card.pool.kind} of a ${card.pool.size.join("×")} window ` +
      `(stride ${card.pool.stride.join("×")}) of map ${card.map} of ${card.pool.input}: pooling has no weights.`));
  }
  const canvas = el("canvas", { class: "kernels" });
  const what = k.input === "input" ? (k.rgb_png ? "colour channels (red, green, blue)" : "input channel(s)") : `maps of ${k.input}`;
  const part = section("Kernel", canvas, el("p", {}, `The ${k.height}×${k.width} weights applied to each of the ` +
    `${k.channels} ${what} (blue negative, red positive, ±${fmt(k.max)}); bias ${fmt(k.bias)}.`));
  const kimg = await drawable(k.png);
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
  if (k.rgb_png) {
    part.append(el("p", {}, el("img", { class: "pixelated kernel-rgb", src: k.rgb_png, alt: "the filter as one RGB picture",
      width: String(cell), height: String(Math.round(cell * k.height / k.width)) }), " the red, green and blue kernels as one " +
      "RGB picture, scaled together (mid-grey = 0): the colour this filter responds to."));
  }
  return part;
}

// 3. the maximising pattern, computed at export time
function patternSection(card) {
  const img = el("img", { class: "pattern pixelated", alt: "pattern", src: card.pattern_url });
  return section("Maximising pattern", el("div", { class: "pair" }, img,
    el("p", {}, "An input found by gradient ascent that makes this map as large as possible (computed when the site was exported).")));
}

// 4. top-activating test images (over the whole test set; a click looks at one)
function topSection(card, size) {
  const tops = el("div", { class: "tops" });
  for (const t of card.top) {
    const canvas = el("canvas");
    const item = el("div", { class: "top-item" }, canvas, el("span", {}, `#${t.index} · ${t.class_name}`),
      el("span", { class: "muted" }, fmt(t.value)));
    item.addEventListener("click", () => setDatasetImage(t.index, false));
    tops.appendChild(item);
    paintWithRect(canvas, t.png, card.receptive_field, t.position, size, 4);
  }
  return section("Top-activating test images", tops, el("p", {}, `The ${card.test_images.toLocaleString()} test ` +
    "images' strongest responses in this map, largest first; the box is the receptive field of that position. " +
    "Click one to look at it."));
}

// 5. read-out to the classes (last conv layer and what follows it)
function readoutSection(ro) {
  const peak = Math.max(...ro.values.map((v) => Math.abs(v || 0))) || 1;
  const rows = ro.values.map((v, k) => {
    const width = 50 * Math.abs(v || 0) / peak;
    const seg = { left: `${v >= 0 ? 50 : 50 - width}%`, width: `${width}%` };
    return el("div", { class: "r" }, el("span", {}, String(ro.class_names[k])),
      el("span", { class: "axis" }, el("span", { class: `seg ${v >= 0 ? "pos" : "neg"}`, style: seg })),
      el("span", { class: "v" }, `${v >= 0 ? "+" : ""}${fmt(v)}`));
  });
  return section("How it feeds each class", el("div", { class: "readout" }, ...rows),
    el("p", {}, "Gradient of each class logit with respect to this map's spatial mean (the map rising by one " +
      `unit everywhere), averaged over ${ro.images} test images, through the dense head.`));
}

async function renderCard(card) {
  const size = state.info.input_shape.slice(1), parts = [];
  if (card.dead) {
    parts.push(el("p", { class: "error dead" }, `Dead map: 0 everywhere on all ${card.test_images} test images. ` +
      "Its pattern, top images and read-out describe no detector."));
  }
  parts.push(await mapSection(card, size), await kernelSection(card), patternSection(card));
  if (card.top.length && !card.dead) parts.push(topSection(card, size));
  if (card.readout) parts.push(readoutSection(card.readout));
  $("card-body").replaceChildren(...parts);
}

export function setupCard() {
  $("card-close").addEventListener("click", closeCard);
  $("card-backdrop").addEventListener("click", closeCard);
  $("card-prev").addEventListener("click", () => stepCard(-1));
  $("card-next").addEventListener("click", () => stepCard(1));
}
