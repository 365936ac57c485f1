// A map's card in the page: what depends on the image (the map enlarged, its range, peak and values) computed
// from the model's outputs; what does not (kernel, pooling rule, top test images, dead or not, class read-out,
// maximising pattern) read from cards.json, written by cnnscope.views.site_cards at export time. The answer has
// the shape of the HTTP viewer's /api/card (pictures are drawables or the site's own file addresses).
"use strict";

import { colorize } from "./render.js";
import { SITE, cutTile, toBitmap } from "./files.js";

const fileURL = (path) => (path ? new URL(path, SITE).href : path);

// The top images of every card: where each test image's pixels are (layer's sheet, row = map, column = rank).
export class TopImages {
  constructor(cards, shape, load) {
    Object.assign(this, { shape, load, sheets: new Map(), where: new Map() });
    for (const layer of cards.layers) {
      layer.maps.forEach((card, row) => card.top.forEach((item, col) => {
        if (!this.where.has(item.index)) this.where.set(item.index, { sheet: layer.tops, row, col, label: item.label });
      }));
    }
  }

  sheet(path) {
    if (!this.sheets.has(path)) this.sheets.set(path, this.load(path));
    return this.sheets.get(path);
  }

  label(index) { return this.where.has(index) ? this.where.get(index).label : undefined; }

  async tile(path, row, col) {
    const [c, h, w] = this.shape;
    return cutTile(await this.sheet(path), row, col, h, w, c);
  }

  async pixels(index) {
    const at = this.where.get(index);
    return at ? this.tile(at.sheet, at.row, at.col) : null;
  }
}

function peakOf(fmap, w) {
  let best = 0;
  for (let i = 1; i < fmap.length; i++) if (fmap[i] > fmap[best]) best = i;
  return [Math.floor(best / w), best % w];
}

function rows(fmap, h, w, digits) {
  return Array.from({ length: h }, (_, r) => Array.from(fmap.subarray(r * w, (r + 1) * w), (v) => Number(v.toFixed(digits))));
}

async function topItems(backend, layerCards, card) {
  return Promise.all(card.top.map(async (item, col) => {
    const pixels = await backend.tops.tile(layerCards.tops, card.map, col);
    return { ...item, png: await backend.image(pixels) };
  }));
}

// cnnscope.views.panels.map_panel and the viewer's card, for one image's raw pixels.
export async function mapCard(backend, pixels, layer, index, cmap) {
  const info = backend.layerInfo(layer);
  if (!info.grid) throw new Error(`layer '${layer}' is a ${info.type} layer; maps exist for the conv and pooling layers`);
  const n = info.output_shape[0];
  if (!(index >= 0 && index < n)) throw new Error(`map ${index} is out of range: ${layer} has ${n} maps (0 to ${n - 1})`);
  const { data, shape } = await backend.maps(pixels, layer);
  const [, h, w] = shape, fmap = data.subarray(index * h * w, (index + 1) * h * w);
  const { rgba, vmin, vmax } = colorize(fmap, backend.colormaps.tables[cmap]);
  let mean = 0;
  for (const v of fmap) mean += v;
  const layerCards = backend.cards[layer], card = layerCards.maps[index];
  const kernel = card.kernel && { ...card.kernel, png: fileURL(card.kernel.png), rgb_png: fileURL(card.kernel.rgb_png) || null };
  return { layer, type: info.type, map: index, maps: n, shape: [h, w], png: await toBitmap(rgba, w, h), min: vmin,
    max: vmax, mean: mean / fmap.length, peak: peakOf(fmap, w), values: rows(fmap, h, w, 4),
    receptive_field: info.geometry, kernel, pool: layerCards.pool, top: await topItems(backend, layerCards, card),
    dead: card.dead, test_images: card.test_images, readout: card.readout, pattern_url: fileURL(card.pattern) };
}
