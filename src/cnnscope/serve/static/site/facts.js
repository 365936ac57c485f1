// The run's facts, exported as static JSON and pictures: accuracy, the model's summary, per-class accuracy, the
// training curves and the confusion matrix.
"use strict";

import { json, SITE } from "./files.js";

// $ and el are common.js's (the HTTP viewer's shared helpers, loaded as a plain script before this runs).

export async function showFacts() {
  const facts = await json("data/facts.json");
  const t = facts.test;
  $("facts-accuracy").replaceChildren("Test accuracy ", el("b", {}, `${(100 * t.accuracy).toFixed(2)} %`),
    ` on ${t.images.toLocaleString()} images (${t.mistakes.toLocaleString()} mistakes).`);
  $("facts-summary").textContent = facts.summary_text;
  $("facts-classes").replaceChildren(el("tr", {}, el("th", {}, "class"), el("th", {}, ""), el("th", {}, "accuracy")),
    ...facts.class_names.map((name, k) => el("tr", {}, el("th", {}, String(name)),
      el("td", { class: "bar" }, el("span", { style: { width: `${(100 * t.per_class[k]).toFixed(1)}%` } })),
      el("td", { class: "num" }, `${(100 * t.per_class[k]).toFixed(2)} %`))));
  for (const [key, id] of [["curves", "facts-curves"], ["confusion", "facts-confusion"]]) {
    const path = facts.pictures[key];
    $(id).hidden = !path;
    if (path) $(id).querySelector("img").src = new URL(path, SITE).href;
  }
}
