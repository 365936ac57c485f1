// cnnscope's pages share this file: DOM helpers that only ever insert text, never markup, and one number format.
// Each page loads it with a plain <script defer> before its own script (the Content-Security-Policy allows only
// the server's own files: no inline code), so its names are globals of the page.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";

// el("b", {class: "x", title: t}, "text", child, …): an element. Attributes are set as strings ("style" takes an
// object of CSS properties); strings and numbers become text nodes, never markup; null, undefined and false are
// left out.
function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

// svg("text", {x: 4, y: 10}, "label"): the same for an SVG element.
function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A number for people: "–" when missing, whole numbers as they are, exponent notation below 0.001 and from
// 10,000 on, else rounded to `digits` decimals without trailing zeros. Anything that is not a number as text.
function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs < 0.001 || abs >= 10000) return value.toExponential(2);
  return Number(value.toFixed(digits)).toString();
}

// A share 0..1 as a percentage with one decimal, e.g. "97.3 %".
function pct(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${(100 * value).toFixed(1)} %` : "–";
}
