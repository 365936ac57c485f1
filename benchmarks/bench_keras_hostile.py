"""Peak memory of `cnnscope import-keras` on normal Keras files vs hostile ones (benchmarks/README.md).

Each case runs in its own process tree: this script starts `--measure CASE FILE`, which runs the import as a
subprocess and reports resource.getrusage(RUSAGE_CHILDREN).ru_maxrss (the import's peak RSS), its exit code,
the first stderr line and whether a run directory was left behind. The hostile files are built in a temporary
directory from the real fixtures in tests/fixtures/keras (the zip bomb: a ~3 MB .keras whose weights inflate
to 3 GiB).

    CNNSCOPE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_keras_hostile.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "keras"
H5, KERAS = FIX / "keras2" / "seed_iv.h5", FIX / "keras3" / "seed_iv.keras"
BIAS, KERNEL = "model_weights/Dense_1/Dense_1/bias:0", "model_weights/Dense_1/Dense_1/kernel:0"


def _h5(tmp: Path, name: str, edit) -> Path:
    path = tmp / f"{name}.h5"
    shutil.copy(H5, path)
    with h5py.File(path, "r+") as fh:
        edit(fh)
    return path


def _replace(name: str, **kwargs):
    def edit(fh):
        shape = fh[name].shape
        del fh[name]
        fh.create_dataset(name, **{"shape": shape, "dtype": "<f4", **kwargs})
    return edit


def _keras(tmp: Path, name: str, **members) -> Path:
    path = tmp / f"{name}.keras"
    with zipfile.ZipFile(KERAS) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, members.get(info.filename, src.read(info)))
    return path


def _zip_bomb(tmp: Path) -> Path:
    path = tmp / "zip_bomb.keras"
    with zipfile.ZipFile(KERAS) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != "model.weights.h5":
                dst.writestr(info.filename, src.read(info))
        zeros = bytes(2 ** 20)
        with dst.open("model.weights.h5", "w", force_zip64=True) as fh:
            for _ in range(3 * 1024):  # 3 GiB of zeros, ~3 MB compressed
                fh.write(zeros)
    return path


def build_cases(tmp: Path) -> dict[str, Path]:
    """Normal files and hostile ones (the issue's list), by name."""
    secret = Path("/etc/passwd") if Path("/etc/passwd").exists() else tmp / "secret"
    other = tmp / "other.h5"
    shutil.copy(H5, other)
    source = tmp / "source.h5"
    with h5py.File(source, "w") as fh:
        fh["data"] = np.ones(128, np.float32)

    def external_link(fh):
        del fh["model_weights/Dense_1"]
        fh["model_weights/Dense_1"] = h5py.ExternalLink(str(other), "/model_weights/Dense_1")

    def soft_link(fh):
        fh["outside"] = np.ones(128, np.float32)
        del fh[BIAS]
        fh[BIAS] = h5py.SoftLink("/outside")

    def virtual(fh):
        layout = h5py.VirtualLayout(shape=(128,), dtype="<f4")
        layout[:] = h5py.VirtualSource(str(source), "data", shape=(128,))
        del fh[BIAS]
        fh.create_virtual_dataset(BIAS, layout)

    def unused_huge(fh):
        fh.create_dataset("junk", shape=(50_000, 50_000), dtype="<f4", chunks=(1000, 1000))

    config = json.loads(zipfile.ZipFile(KERAS).read("config.json"))
    config["config"]["layers"][-2]["config"]["units"] = 100_000_000
    return {
        "normal .h5 (seed_iv, Keras 2)": H5,
        "normal .keras (seed_iv, Keras 3)": KERAS,
        "unused 50,000² chunked dataset (.h5)": _h5(tmp, "unused_huge", unused_huge),
        "bias in external storage (/etc/passwd)": _h5(tmp, "external_storage", _replace(
            BIAS, external=[(str(secret), 0, 512)])),
        "ExternalLink to another file": _h5(tmp, "external_link", external_link),
        "SoftLink leaving the weights group": _h5(tmp, "soft_link", soft_link),
        "virtual dataset": _h5(tmp, "virtual", virtual),
        "compound dtype": _h5(tmp, "compound", _replace(BIAS, dtype=np.dtype([("a", "<f4")]))),
        "kernel declared 50,000² (sparse, chunked)": _h5(tmp, "oversize", lambda fh: (
            fh.__delitem__(KERNEL), fh.create_dataset(KERNEL, shape=(50_000, 50_000), dtype="<f4",
                                                      chunks=(1000, 1000)))),
        "zip bomb (3 GiB weights, ~3 MB file)": _zip_bomb(tmp),
        "config.json nested 100,000 deep": _keras(tmp, "deep", **{"config.json": b"[" * 100_000}),
        "config.json not UTF-8": _keras(tmp, "not_utf8", **{"config.json": b'{"a": "\xff"}'}),
        "Dense with 10^8 units (config)": _keras(tmp, "huge_dense", **{"config.json": json.dumps(config).encode()}),
    }


def measure(path: Path, data_dir: str) -> dict:
    """Run the import in a subprocess; its peak RSS from getrusage(RUSAGE_CHILDREN)."""
    out = Path(tempfile.mkdtemp()) / "run"
    cmd = [sys.executable, "-c", "import sys; from cnnscope.cli import main; sys.exit(main(sys.argv[1:]))",
           "import-keras", str(path), "--out", str(out), "--data-dir", data_dir, "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return {"exit": proc.returncode, "peak_mib": round(peak_kib / 1024, 1), "error_lines": len(errors),
            "first_error": errors[0][:110] if errors else "", "run_dir_left": out.exists() and proc.returncode != 0,
            "bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CNNSCOPE_DATA_DIR", ""))
    parser.add_argument("--measure", nargs=1, metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # child mode: one import, one JSON line
        print(json.dumps(measure(Path(args.measure[0]), args.data_dir)))
        return
    if not args.data_dir:
        parser.error("give --data-dir or set CNNSCOPE_DATA_DIR (the MNIST files)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for name, path in build_cases(Path(tmp)).items():
            proc = subprocess.run([sys.executable, __file__, "--data-dir", args.data_dir, "--measure", str(path)],
                                  capture_output=True, text=True, check=True)
            rows[name] = json.loads(proc.stdout)
            r = rows[name]
            print(f"| {name} | {r['bytes']:,} | {r['exit']} | {r['peak_mib']:,.0f} | {r['first_error'] or '(imported)'}"
                  f" |", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
