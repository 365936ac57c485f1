"""`cnnscope export-site`: the viewer as a folder of static files that runs the model in the browser.

The folder holds the page (the HTTP viewer's own scripts and stylesheet, with the in-page back end of static/site/
answering through viewer.js's back-end seam), the model as ONNX with every
named layer's output (cnnscope.interop.onnx), onnxruntime-web's wasm build (cnnscope.interop.ortweb: fetched
once into the cache and verified), and the facts computed in Python (cnnscope.views.site). It is written beside
`out` and renamed into place, so a failed export leaves no half folder; a folder written by an earlier export is
replaced, any other non-empty folder refused.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cnnscope.base.errors import SiteError
from cnnscope.base.progress import say
from cnnscope.base.version import __version__
from cnnscope.interop import ortweb
from cnnscope.interop.onnx import export_onnx
from cnnscope.runs.load import load_run
from cnnscope.views.site import ATLAS_IMAGES, site_data

STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "site"  # the page's own modules and stylesheet; parts/: what its index.html adds to the viewer's
SHARED = ("viewer.css", "common.js", "png.js", "viewer.js")  # the HTTP viewer's own files: one front end
MARKER = "cnnscope-site.json"  # what an export writes last: a folder holding it may be replaced


def check_out(out: Path) -> None:
    """SiteError unless `out` is new, empty or an earlier export (never a file, never another folder's files)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SiteError(f"--out {out} exists and is not a folder; give a new folder such as site/")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SiteError(f"--out {out} is a folder with other files in it (no {MARKER}); give a new or empty "
                        f"folder, or one written by cnnscope export-site")


def _edit(page: str, old: str, new: str) -> str:
    """`page` with its one `old` replaced by `new`; an error naming `old` when the viewer's page no longer has it
    (a change there must be carried here, never silently skipped)."""
    if page.count(old) != 1:
        raise RuntimeError(f"the viewer's index.html has {page.count(old)} of {old!r}, one expected")
    return page.replace(old, new)


def site_page() -> str:
    """The site's index.html, made from the HTTP viewer's own page (one page, two back ends): the site's head
    (CSP, its stylesheet, the in-page back end before the viewer's scripts), a flag the page sets once ready, the
    run's facts below the maps, and no deletion legend (the page runs no deletion test)."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    start, end = page.index('  <link rel="icon"'), page.index("</head>")
    page = _edit(page, page[start:end], (PAGE / "parts" / "head.html").read_text(encoding="utf-8"))
    page = _edit(page, '<body data-busy="1">', '<body data-busy="1" data-ready="0">')
    page = _edit(page, '<span class="muted">viewer</span>', '<span class="muted">viewer · runs in your browser</span>')
    legend = page[page.index('        <p class="muted small legend">'):]
    page = _edit(page, legend[:legend.index("\n") + 1], "")
    return _edit(page, "</main>\n", "</main>\n\n" + (PAGE / "parts" / "facts.html").read_text(encoding="utf-8"))


def copy_page(folder: Path) -> list[Path]:
    """The page's files: index.html at the top (site_page), its modules, stylesheet and the viewer's shared files
    under static/."""
    (folder / "static").mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(site_page(), encoding="utf-8")
    paths = [folder / "index.html"]
    for source in sorted(PAGE.iterdir()):
        if source.is_file():
            shutil.copyfile(source, folder / "static" / source.name)
            paths.append(folder / "static" / source.name)
    for name in SHARED:
        shutil.copyfile(STATIC / name, folder / "static" / name)
        paths.append(folder / "static" / name)
    return paths


def folder_bytes(folder: Path) -> int:
    """The size of every file under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _replace(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; an earlier export is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fill(tmp: Path, run, dataset, runtime: dict[str, Path], images: int, patterns: dict | None) -> dict[str, Any]:
    """Write everything into the temporary folder; returns what the marker records."""
    copy_page(tmp)
    say("exporting the model to ONNX with every layer's output")
    graph = export_onnx(run, tmp / "model.onnx", with_layers=True)
    ortweb.copy_runtime(runtime, tmp / "ort")
    say("computing the site's facts and map cards")
    found = site_data(run, dataset, tmp, images, patterns)
    return {"cnnscope": __version__, "run": run.path.name, "onnxruntime_web": ortweb.VERSION,
            "integrity": ortweb.INTEGRITY, "onnx_outputs": graph["outputs"], **found.data}


def export_site(run_dir: str | os.PathLike, out: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                ort_dir: str | os.PathLike | None = None, images: int = ATLAS_IMAGES,
                patterns: dict | None = None) -> dict[str, Any]:
    """Write the static viewer of a run into the folder `out`; returns what was written (files, bytes, seconds).

    `ort_dir`: a local copy of onnxruntime-web (see cnnscope.interop.ortweb) instead of the cache and the npm
    registry. `images`: the test images shipped for picking. `patterns`: options of the maximising patterns'
    search other than cnnscope.inspect.maximize_activation's defaults (fewer steps for a quick look)."""
    started = time.perf_counter()
    out = Path(out)
    check_out(out)
    if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= 10_000:
        raise SiteError(f"images must be an integer from 1 to 10000, received {images!r}")
    run = load_run(run_dir)  # a wrong run directory fails before anything is downloaded
    runtime = ortweb.runtime_files(ort_dir)  # before the slow work: a missing runtime fails at once
    dataset = run.dataset(data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        record = _fill(tmp, run, dataset, runtime, images, patterns)
        record["bytes"] = folder_bytes(tmp)
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", "utf-8")
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = sum(1 for p in out.rglob("*") if p.is_file())
    return {**record, "path": str(out), "files": files, "bytes": folder_bytes(out),
            "runtime_bytes": folder_bytes(out / "ort"), "seconds": round(time.perf_counter() - started, 2)}


__all__ = ["export_site"]
