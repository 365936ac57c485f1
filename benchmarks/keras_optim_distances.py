"""Step-for-step distance of cnnscope's optimizers from Keras 3's, with Keras' rules and with torch's.

For every case of tests/fixtures/keras_optim (an imported Keras CNN, 5 steps on fixed MNIST batches), the relative
distance ‖w_cnnscope − w_Keras‖ / ‖w_Keras − w₀‖ after each step, on every weight when the full Keras weights are
given (make_optim_fixtures.py --full FILE), else on the fixture's 1,040 sampled coordinates. No TensorFlow here.

    PYTHONPATH=src .venv/bin/python benchmarks/keras_optim_distances.py [--full /tmp/keras_optim_full.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import test_keras_optimizers as fixtures  # noqa: E402  (the tests' replay of a case: one source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", help="Keras' full weights per step (make_optim_fixtures.py --full)")
    args = parser.parse_args()
    with np.load(fixtures.FIXTURES / "steps.npz") as data:
        steps = {key: data[key] for key in data.files}
    full = dict(np.load(args.full)) if args.full else None
    scope = "all weights" if full else f"{steps['index'].size} sampled weights"
    print(f"relative distance to Keras {fixtures.MANIFEST['keras']} after steps 1-5 ({scope})")
    print("| case | torch rules, step 1 | torch, step 5 | keras rules, step 1 | keras, step 5 | keras, max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in fixtures.CASES:
        row = []
        for rules in ("torch", "keras"):
            start, *ours = fixtures.replay(case, rules, steps)
            if full:
                keras = full[case]
                d = [np.linalg.norm(w - k) / np.linalg.norm(k - full["w0"]) for w, k in zip(ours, keras, strict=True)]
            else:
                index = steps["index"]
                d = [np.linalg.norm((w - start)[index] - k) / np.linalg.norm(k)
                     for w, k in zip(ours, steps[case].astype(np.float64), strict=True)]
            row += [d[0], d[-1]] + ([max(d)] if rules == "keras" else [])
        print(f"| {case} | " + " | ".join(f"{v:.1e}" for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
