// The static site's entry: opens the in-page back end (onnxruntime-web and the site's files) and hands it to the
// HTTP viewer's own page script (viewer.js) through its back-end seam, window.cnnscopeBackend; then the run's facts
// and the times of interactions. viewer.js and common.js run after this module (index.html's order).
"use strict";

import { SiteBackend } from "./backend.js";
import { showFacts } from "./facts.js";
import { watchTimes } from "./timing.js";
import { viewerBackend } from "./viewer-backend.js";

export const ready = SiteBackend.open(); // the in-page back end, for viewer.js and for tests
window.cnnscopeBackend = viewerBackend(ready);

document.addEventListener("DOMContentLoaded", () => {
  watchTimes(ready);
  showFacts().catch((error) => { document.getElementById("facts-accuracy").textContent = String(error.message); });
});
