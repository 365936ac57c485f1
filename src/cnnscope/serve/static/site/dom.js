// The page's DOM helpers, as the HTTP viewer's: every text from the run, a file or the model goes in as text
// (el(), textContent, attribute setters); nothing here parses HTML, so a class named like markup shows as that.
"use strict";

export const $ = (id) => document.getElementById(id);

// el("b", {class: "x", title: t}, "text", child, …): an element; strings become text nodes, never markup.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 0.001 || abs >= 10000)) return value.toExponential(2);
  return Number(value.toFixed(digits)).toString();
}

export function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; return; }
  box.textContent = String(error.message || error);
  box.hidden = false;
}

// A picture to draw: a drawable (ImageBitmap, canvas) as it is, a site file's address loaded as an image.
export function drawable(src) {
  if (typeof src !== "string") return Promise.resolve(src);
  return new Promise((resolve, reject) => {
    const img = new Image(); img.onload = () => resolve(img); img.onerror = reject; img.src = src;
  });
}

// Paint a drawable onto a canvas, `px` canvas pixels per picture pixel, without smoothing.
export async function paint(canvas, src, px = 1) {
  const img = await drawable(src);
  canvas.width = img.width * px; canvas.height = img.height * px;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  return img;
}
