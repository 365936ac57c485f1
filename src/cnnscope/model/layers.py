"""The vocabulary of layer kinds, defined once: what each layer of a cnnscope model is and whether it has maps.

Every resolved layer (`ModelSpec.layers()`) carries its `kind`; code asks `info.kind == CONV`,
`info.has_maps`, `spec.layer_names(CONV)` or `spec.map_layer_names()`, never isinstance on torch modules
nor lists of type names of its own.
"""

from __future__ import annotations

CONV = "conv"  # Conv2D (+ activation): maps, kernels
POOL = "pool"  # MaxPooling2D / AveragePooling2D: maps, no parameters
FLATTEN = "flatten"  # maps -> one vector
DENSE = "dense"  # hidden Dense layers and the output layer: units
DROPOUT = "dropout"  # after the flatten and each hidden dense layer when the spec's dropout > 0

KINDS = (CONV, POOL, FLATTEN, DENSE, DROPOUT)
MAP_KINDS = frozenset({CONV, POOL})  # kinds whose outputs are maps (channels, h, w) with a receptive field

# Keras class name shown in summaries -> kind
TYPE_KINDS: dict[str, str] = {"Conv2D": CONV, "MaxPooling2D": POOL, "AveragePooling2D": POOL,
                              "Flatten": FLATTEN, "Dense": DENSE, "Dropout": DROPOUT}
# pool kind of a PoolSpec -> Keras class name, and the default name prefix
POOL_TYPES: dict[str, str] = {"max": "MaxPooling2D", "average": "AveragePooling2D"}
POOL_PREFIXES: dict[str, str] = {"max": "Max_Pool", "average": "Avg_Pool"}


def has_maps(kind: str) -> bool:
    """Whether layers of this kind output maps (conv and pool)."""
    return kind in MAP_KINDS
