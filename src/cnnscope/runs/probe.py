"""A run's probe file, written and read (no pickles): what cnnscope.training.probe recorded every epoch.

Layout of probe.safetensors: `image` (H, W) (colour: (H, W, 3)) uint8 raw pixels; per epoch e (0 = the initial weights)
`e{e}.filters` (maps, in_channels, kh, kw) float32 and `e{e}.{layer}` (maps, h, w) float16 for every conv and
pooling layer. Its metadata holds {"index", "set", "label", "filters_layer", "layers"} as JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnscope.base.errors import RunError
from cnnscope.base.fileio import atomic_write_bytes
from cnnscope.runs.layout import PROBE


@dataclass
class ProbeData:
    """What a probe recorded: the image, and per epoch the filters and the maps of each conv/pool layer."""

    index: int
    split: str
    label: int
    image: np.ndarray  # (H, W) or (H, W, 3) uint8
    filters_layer: str
    layers: list[str]
    epochs: list[int] = field(default_factory=list)
    filters: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> (maps, in, kh, kw)
    maps: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # epoch -> layer -> (maps, h, w)


def write_probe(run_dir: str | Path, data: ProbeData) -> Path:
    """Write probe.safetensors atomically."""
    from safetensors.torch import save

    # A copy: the image may be a read-only view of the dataset, which torch.as_tensor warns about.
    tensors: dict[str, torch.Tensor] = {"image": torch.from_numpy(np.array(data.image, dtype=np.uint8))}
    for epoch in data.epochs:
        tensors[f"e{epoch}.filters"] = torch.as_tensor(np.ascontiguousarray(data.filters[epoch], np.float32))
        for name, maps in data.maps[epoch].items():
            tensors[f"e{epoch}.{name}"] = torch.as_tensor(np.ascontiguousarray(maps, np.float16))
    meta = {"index": data.index, "set": data.split, "label": data.label, "filters_layer": data.filters_layer,
            "layers": data.layers}
    path = Path(run_dir) / PROBE
    atomic_write_bytes(path, save(tensors, metadata={"probe": json.dumps(meta)}))
    return path


def read_probe(run_dir: str | Path) -> ProbeData | None:
    """The probe a run recorded, or None when it has none; RunError when the file is unreadable."""
    from safetensors import safe_open

    path = Path(run_dir) / PROBE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["probe"])
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        data = ProbeData(int(meta["index"]), str(meta["set"]), int(meta["label"]),
                         tensors["image"].to(torch.uint8).numpy(), str(meta["filters_layer"]),
                         [str(name) for name in meta["layers"]])
    except Exception as exc:  # safetensors' own error types, a missing key, a value of the wrong type
        raise RunError(f"{path}: not a readable probe file ({type(exc).__name__}: {str(exc)[:160]})") from None
    pattern = re.compile(r"e(\d{1,9})\.(.+)")
    for key, value in tensors.items():
        match = pattern.fullmatch(key)
        if not match:
            continue
        epoch, name = int(match.group(1)), match.group(2)
        if name == "filters":
            data.filters[epoch] = value.float().numpy()
        else:
            data.maps.setdefault(epoch, {})[name] = value.float().numpy()
    data.epochs = sorted(set(data.filters) & set(data.maps))
    return data
