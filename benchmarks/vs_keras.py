"""The series' model and recipe in Keras 3 (TensorFlow) and in cnnscope, alternating epochs in one run.

The recipe (configs/seed-iv-series.toml): seed-iv (conv 32/64/128 3×3, max-pool 2×2 twice, dense 100, softmax 10,
L2 0.001 on the dense kernels), RMSprop lr 0.001, rho 0.9, momentum 0.5, eps 1e-7, InverseTimeDecay (rate 0.001
per step), batch 64, per-pixel standardisation, validation on the 10,000 test images. Epoch time includes the
validation pass, on both sides (cnnscope's also excludes its checkpoint write; Keras writes none).

Keras runs in its own environment, never a dependency of cnnscope:
    python3 -m venv /work/kerasvenv && /work/kerasvenv/bin/pip install tensorflow-cpu   # or `tensorflow`
Usage (from the repository root, data in DIR/mnist/*.gz):
    .venv/bin/python benchmarks/vs_keras.py --data-dir ../shared/data [--epochs 3] [--precision bf16]
        [--threads N] [--keras-python /work/kerasvenv/bin/python] [--device cuda] [--quick]
        [--rules keras|torch] [--json CURVES.json] [--out RUN_DIR]
The parent trains cnnscope; after each of its epochs a callback tells the Keras worker (a subprocess of the
Keras venv, this same file with --keras-worker) to run one epoch and waits for it, so the two never overlap:
cnnscope 1, Keras 1, cnnscope 2, Keras 2, ... Each line gives both epoch times and their ratio.
--quick: 2 epochs on the first 12,800 training images (validation still on all 10,000 test images).
--rules: cnnscope's optimizer rules (default keras, as the config); --json: the per-epoch rows, rewritten after
every epoch (for benchmarks/plot_series_curves.py); --out: keep cnnscope's run there (default: a temporary one).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# --- the Keras side (runs in the Keras venv: numpy and keras only) -------------------------------------------
def read_idx(path: Path):
    """An IDX file (gzipped) as a numpy array, header checked."""
    import numpy as np

    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def keras_worker(args: argparse.Namespace) -> None:
    """Build and fit the series' model; block before each epoch until the parent writes a line on stdin."""
    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    d = Path(args.data_dir) / "mnist"
    x, y = read_idx(d / "train-images-idx3-ubyte.gz"), read_idx(d / "train-labels-idx1-ubyte.gz")
    xt, yt = read_idx(d / "t10k-images-idx3-ubyte.gz"), read_idx(d / "t10k-labels-idx1-ubyte.gz")
    x, y = x[:args.limit_train or None], y[:args.limit_train or None]
    x, xt = x.reshape(len(x), -1).astype(np.float64), xt.reshape(len(xt), -1).astype(np.float64)
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1.0  # sklearn's StandardScaler, as the series
    x = ((x - mean) / std).astype(np.float32).reshape(-1, 28, 28, 1)
    xt = ((xt - mean) / std).astype(np.float32).reshape(-1, 28, 28, 1)
    l2 = keras.regularizers.l2(0.001)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(128, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu", kernel_regularizer=l2),
        keras.layers.Dense(10, activation="softmax", kernel_regularizer=l2)])
    schedule = keras.optimizers.schedules.InverseTimeDecay(0.001, decay_steps=1, decay_rate=0.001)
    model.compile(keras.optimizers.RMSprop(schedule, rho=0.9, momentum=0.5, epsilon=1e-7),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])

    class Handshake(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if not sys.stdin.readline():  # the parent is gone
                raise SystemExit(0)
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.t0
            print(json.dumps({"epoch": epoch + 1, "seconds": seconds, "val_accuracy": logs["val_accuracy"],
                              "loss": logs["loss"]}), flush=True)

    print(json.dumps({"ready": True, "keras": keras.__version__, "tensorflow": tf.__version__}), flush=True)
    model.fit(x, y, batch_size=64, epochs=args.epochs, validation_data=(xt, yt), shuffle=True, verbose=0,
              callbacks=[Handshake()])


# --- the cnnscope side (the parent) ---------------------------------------------------------------------------
class Keras:
    """The Keras worker process: `epoch()` runs one epoch there and returns its figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [args.keras_python, str(HERE), "--keras-worker", "--data-dir", str(args.data_dir), "--epochs",
               str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed),
               "--limit-train", str(args.limit_train or 0)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"the Keras worker stopped (exit {self.proc.wait()}); is {sys.argv[0]}'s "
                                 f"docstring's venv made?")
            if line.startswith("{"):
                return json.loads(line)

    def epoch(self) -> dict:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self._read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("CNNSCOPE_DATA_DIR", "../shared/data"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--device", default="cpu", help="cnnscope's device (cpu, cuda); Keras stays on the CPU")
    parser.add_argument("--threads", type=int, default=0, help="threads of both (default: each one's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-train", type=int, default=0)
    parser.add_argument("--keras-python", default="/work/kerasvenv/bin/python")
    parser.add_argument("--quick", action="store_true", help="2 epochs on 12,800 training images")
    parser.add_argument("--rules", choices=("keras", "torch"), default="keras", help="cnnscope's optimizer rules")
    parser.add_argument("--json", help="write the per-epoch rows here after every epoch")
    parser.add_argument("--out", help="keep cnnscope's run in this directory (default: a temporary one)")
    parser.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.limit_train = 2, args.limit_train or 12_800
    if args.keras_worker:
        keras_worker(args)
        return
    import torch

    import cnnscope
    from cnnscope.trainer.config import build_run_config

    keras = Keras(args)
    train = {"epochs": args.epochs, "seed": args.seed, "precision": args.precision, "device": args.device,
             "threads": args.threads, "rules": args.rules}
    config = build_run_config(HERE.parents[1] / "configs" / "seed-iv-series.toml", train=train,
                              data={"data_dir": str(args.data_dir), "limit_train": args.limit_train or None})
    dataset = cnnscope.load_dataset(config=config.data)
    print(f"Keras {keras.info['keras']} on TensorFlow {keras.info['tensorflow']} vs cnnscope on torch "
          f"{torch.__version__} ({args.precision}, {args.device}, {args.threads or torch.get_num_threads()} threads); "
          f"{len(dataset.train_y):,} training images, load {os.getloadavg()[0]:.1f}")
    print(f"{'epoch':>5} {'keras s':>8} {'cnnscope s':>10} {'ratio':>6} {'keras acc':>9} {'cnnscope acc':>12} "
          f"{'load':>5}")
    rows = []

    curves = {"keras": keras.info["keras"], "tensorflow": keras.info["tensorflow"], "torch": torch.__version__,
              "rules": args.rules, "seed": args.seed, "epochs": []}

    def alternate(log: cnnscope.EpochLog) -> None:
        k = keras.epoch()
        rows.append((k["seconds"], log.seconds))
        print(f"{log.epoch:5d} {k['seconds']:8.2f} {log.seconds:10.2f} {log.seconds / k['seconds']:6.2f} "
              f"{k['val_accuracy']:9.4f} {log.val_accuracy:12.4f} {os.getloadavg()[0]:5.1f}", flush=True)
        curves["epochs"].append({"epoch": log.epoch, "keras_val_accuracy": k["val_accuracy"],
                                 "cnnscope_val_accuracy": log.val_accuracy, "keras_seconds": k["seconds"],
                                 "cnnscope_seconds": log.seconds, "load": os.getloadavg()[0]})
        if args.json:
            partial = Path(args.json).with_suffix(".partial")
            partial.write_text(json.dumps(curves, indent=1) + "\n")
            partial.replace(args.json)

    with tempfile.TemporaryDirectory() as tmp:
        cnnscope.train(config.model, dataset, config.train, out=Path(args.out or Path(tmp) / "run"),
                       callbacks=[alternate], progress=False, plot=False)
    keras.proc.stdin.close()
    keras.proc.wait(timeout=60)
    later = rows[1:] or rows  # the first epoch holds Keras' graph tracing
    ratio = statistics.median(c / k for k, c in later)
    print(f"median ratio cnnscope/keras (epochs 2+): {ratio:.2f}  "
          f"(keras {statistics.median(k for k, _ in later):.2f} s, "
          f"cnnscope {statistics.median(c for _, c in later):.2f} s)")


if __name__ == "__main__":
    main()
