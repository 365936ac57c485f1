// cnnscope's viewer in a notebook cell (anywidget). The viewer's own page and scripts (index.html's body,
// viewer.css, common.js, viewer.js) run unchanged in a shadow root of the cell (its styles stay out of the notebook
// and the notebook's out of it), with a back end that sends every request as a message to Python, where the HTTP
// viewer's own app answers it (cnnscope/serve/widget.py). widget.py puts PAGE, STYLE and startViewer(window,
// document) (the two scripts, wrapped) in front of this file; it is an ES module, so it is strict.

// The answers come back as {id, status, json, headers}, a PNG as the message's one buffer.
function widgetBackend(model) {
  const waiting = new Map();
  let next = 0;
  model.on("msg:custom", (msg, buffers) => {
    const done = waiting.get(msg.id);
    if (!done) return;
    waiting.delete(msg.id);
    done(msg, buffers || []);
  });
  const call = (method, path, query = {}, body = null) => new Promise((resolve, reject) => {
    const id = ++next;
    waiting.set(id, (msg, buffers) => (msg.status < 400 ? resolve({ msg, buffers })
      : reject(new Error((msg.json && msg.json.error) || `error ${msg.status}`))));
    model.send({ id, method, path, query: textParams(query), body });
  });
  return backendOver(call);
}

// The viewer's back-end methods (viewer.js, httpBackend) over call(method, path, query, body).
function backendOver(call) {
  const json = async (...args) => (await call(...args)).msg.json;
  const ask = async (path, params, where) => (where.set !== undefined ? call("GET", path, { ...where, ...params })
    : call("POST", path, params, await pictureJson(where)));
  const colormaps = new Map();
  return {
    info: () => json("GET", "/api/info"),
    layers: () => json("GET", "/api/layers"),
    sample: (params) => json("GET", "/api/sample", params),
    predict: async (where) => json("POST", "/api/predict", {}, await pictureJson(where)),
    maps: async (params, where) => gridOf(await ask("/api/activations", params, where)),
    units: async (params, where) => (await ask("/api/units", params, where)).msg.json,
    explain: async (method, where) => (await ask("/api/explain", { method }, where)).msg.json,
    card: async (params, where) => (await ask("/api/card", params, where)).msg.json,
    patternUrl: async (card) => pngUri(await call("GET", "/api/pattern", { layer: card.layer, map: card.map })),
    colormapUrl: (cmap) => {
      if (!colormaps.has(cmap)) colormaps.set(cmap, call("GET", "/api/colormap", { cmap }).then(pngUri));
      return colormaps.get(cmap);
    },
  };
}

// Parameters as text, as a query string carries them; missing ones left out.
function textParams(params) {
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => [k, String(v)]));
}

// A drawing or upload goes as {"image": data URI}; afterwards its pixels (the model's input) are enough.
async function pictureJson(where) {
  return where.blob ? { image: await dataUri(where.blob) } : { pixels: where.pixels };
}

function dataUri(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function pngUri(answer) {
  return dataUri(new Blob(answer.buffers, { type: "image/png" }));
}

// The grid's PNG and its geometry and value range (the HTTP answer's X-Grid-* headers, sent lower-case).
function gridOf(answer) {
  const meta = {};
  for (const key of ["maps", "rows", "cols", "height", "width", "min", "max", "value-min", "value-max"]) {
    meta[key] = Number(answer.msg.headers[`x-grid-${key}`]);
  }
  return { blob: new Blob(answer.buffers, { type: "image/png" }), meta };
}

// What viewer.js asks of `document`, answered inside the cell's shadow root (ids are looked up there, keys heard
// there, the busy flag set on the page's own body element).
function pageDocument(shadow, body) {
  return {
    getElementById: (id) => shadow.getElementById(id),
    createElement: (tag) => document.createElement(tag),
    createElementNS: (ns, tag) => document.createElementNS(ns, tag),
    body,
    title: "",
    addEventListener: (type, fn) => (type === "DOMContentLoaded" ? setTimeout(fn) : shadow.addEventListener(type, fn)),
  };
}

// What viewer.js asks of `window`: the back end, the window's size and pixel ratio, its resize event.
function pageWindow(backend) {
  return {
    cnnscopeBackend: backend,
    get innerHeight() { return window.innerHeight; },
    get devicePixelRatio() { return window.devicePixelRatio; },
    addEventListener: (type, fn) => window.addEventListener(type, fn),
  };
}

// anywidget's entry: the page (our own file's markup, parsed, not a run's text) in a shadow root, then the viewer.
function render({ model, el }) {
  const shadow = el.attachShadow({ mode: "open" });
  const body = document.createElement("div");
  body.className = "cnnscope-body";
  body.dataset.busy = "1";
  body.append(...new DOMParser().parseFromString(PAGE, "text/html").body.childNodes);
  const style = document.createElement("style");
  style.textContent = STYLE;
  shadow.append(style, body);
  startViewer(pageWindow(widgetBackend(model)), pageDocument(shadow, body));
}

export default { render };
