// Runs after the in-page back end's module (site.js) and before viewer.js: when that module could not load (a file
// missing from the folder, a browser without WebAssembly modules), viewer.js gets a back end that says so instead of
// falling back to the HTTP viewer's /api/ (outside this folder).
"use strict";

if (!window.cnnscopeBackend) {
  const missing = async () => {
    throw new Error("this page's scripts could not be loaded (static/site.js and the files it imports must be " +
      "beside index.html, served over http:// or https://)");
  };
  window.cnnscopeBackend = { info: missing, layers: missing };
}
