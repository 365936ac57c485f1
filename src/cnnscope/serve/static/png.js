// RGBA pixels -> a PNG blob, synchronously (no compression: the pictures are small and never leave this machine or
// its page). The browser's own encoders (canvas.toBlob, convertToBlob) run in idle time, which Chromium withholds
// for up to a second after input: a prediction would wait for a picture of itself (1.08 s from the stroke's end in
// `cnnscope serve`, benchmarks/README.md). A plain script: the viewer's pages, the widget and the static site
// load it before their own, so encodePNG is one global of each.
"use strict";

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function adler32(bytes) {
  let a = 1, b = 0;
  for (const v of bytes) { a = (a + v) % 65521; b = (b + a) % 65521; }
  return ((b << 16) | a) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length), view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(Array.from(type, (ch) => ch.charCodeAt(0)), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

// zlib stream of stored (uncompressed) deflate blocks of at most 65,535 bytes.
function stored(raw) {
  const blocks = Math.max(1, Math.ceil(raw.length / 65535)), out = new Uint8Array(2 + raw.length + 5 * blocks + 4);
  out.set([0x78, 0x01]);
  let at = 2;
  for (let i = 0; i < blocks; i++) {
    const part = raw.subarray(i * 65535, Math.min(raw.length, (i + 1) * 65535)), n = part.length;
    out.set([i === blocks - 1 ? 1 : 0, n & 0xff, n >> 8, ~n & 0xff, (~n >> 8) & 0xff, ...part], at);
    at += 5 + n;
  }
  new DataView(out.buffer).setUint32(at, adler32(raw));
  return out;
}

// grey: one channel (the red one) per pixel, for pictures whose channels are equal (a drawing: a quarter the bytes).
function encodePNG(rgba, width, height, grey = false) {
  const channels = grey ? 1 : 4, raw = new Uint8Array(height * (1 + channels * width));
  for (let y = 0; y < height; y++) {
    const row = rgba.subarray(4 * y * width, 4 * (y + 1) * width), at = y * (1 + channels * width) + 1;
    if (grey) for (let x = 0; x < width; x++) raw[at + x] = row[4 * x];
    else raw.set(row, at);
  }
  const header = new Uint8Array(13), view = new DataView(header.buffer);
  view.setUint32(0, width); view.setUint32(4, height);
  header.set([8, grey ? 0 : 6, 0, 0, 0], 8); // 8 bits per channel, grey or RGBA, deflate, no filter, no interlace
  const parts = [Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", header), chunk("IDAT", stored(raw)),
    chunk("IEND", new Uint8Array(0))];
  return new Blob(parts, { type: "image/png" });
}
