// The site's own files: fetched relative to the site's folder (never another origin), PNGs read back as exact
// pixels, tiles cut out of tiled pictures.
"use strict";

export const SITE = new URL("../", import.meta.url); // the site's folder

export async function fetchOK(path) {
  const response = await fetch(new URL(path, SITE));
  if (!response.ok) throw new Error(`${path}: ${response.status} ${response.statusText}`);
  return response;
}

export const json = async (path) => (await fetchOK(path)).json();

// A PNG of the site as RGBA pixels, exactly as stored (no colour management).
export async function pngPixels(path) {
  const bitmap = await createImageBitmap(await (await fetchOK(path)).blob(),
    { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return { rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data, width: bitmap.width, height: bitmap.height };
}

// Tile (row, col) of a tiled picture as raw pixels (H·W grey or H·W·3 colour).
export function cutTile(sheet, row, col, h, w, channels) {
  const out = new Uint8Array(h * w * channels);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const from = 4 * ((row * h + y) * sheet.width + col * w + x), to = (y * w + x) * channels;
      for (let c = 0; c < channels; c++) out[to + c] = sheet.rgba[from + c];
    }
  }
  return out;
}

export function toBitmap(rgba, width, height) {
  return createImageBitmap(new ImageData(rgba, width, height));
}

