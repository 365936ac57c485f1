"""Why this class: pixel attributions computed with Captum (saliency, integrated gradients, input × gradient,
SmoothGrad, guided backprop, DeepLift, occlusion). Grad-CAM lives in `gradcam`, the registry in `methods`.

Every method has the same call shape, Captum-style: `method(model, images, target=None, ...) -> (n, H, W)`,
with `images` preprocessed (n, C, H, W) or (n, H, W) and `target` None (the predicted class), one class for
all images, or one class per image. Scores are the target class's logit (before softmax), as in Captum.
Nothing passed in is changed: the images are copied, the model's mode is restored and Captum's hooks are
removed (Captum removes them in `finally`). Captum is imported on first use (it takes seconds to import).
"""

from __future__ import annotations

import numpy as np
import torch

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.common import Target, evaluating, gradient_inputs
from cnnscope.model.network import CNN

Baseline = float | np.ndarray | torch.Tensor | None


def _baseline(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """The baseline as a tensor shaped like x: zeros (Captum's default) or a scalar / (H, W) / (C, H, W) value."""
    if baseline is None:
        return torch.zeros_like(x)
    value = torch.as_tensor(np.asarray(baseline.detach().cpu() if torch.is_tensor(baseline) else baseline,
                                       dtype=np.float32), device=x.device)
    try:
        return torch.broadcast_to(value, x.shape).clone()
    except RuntimeError:
        raise ConfigError(f"baseline of shape {tuple(value.shape)} does not fit images of shape "
                          f"{tuple(x.shape[1:])}") from None


def _channels(attr: torch.Tensor, how: str = "sum") -> np.ndarray:
    """(n, C, H, W) attributions to an (n, H, W) float32 map: signed sum over channels, their mean, or max of |·|."""
    attr = attr.detach()
    out = attr.sum(1) if how == "sum" else attr.mean(1) if how == "mean" else attr.abs().amax(1)
    return out.float().cpu().numpy()


def saliency(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None) -> np.ndarray:
    """|∂ score / ∂ pixel| (max over input channels): which pixels would change the score fastest."""
    from captum.attr import Saliency

    x, t = gradient_inputs(model, images, target)
    with evaluating(model):
        attr = Saliency(model).attribute(x, target=t, abs=True)
    return _channels(attr, "max")


def integrated_gradients(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None, steps: int = 32,
                         baseline: Baseline = None) -> np.ndarray:
    """Integrated gradients (x − baseline)·mean over the path of ∂score/∂x, summed over channels; signed.

    `baseline` defaults to zeros, as in Captum; for images, pass the preprocessed value of a black image
    (what `deletion_score` calls `blank`). Midpoint rule with `steps` points; attributions sum to about
    score(x) − score(baseline).
    """
    from captum.attr import IntegratedGradients

    if steps < 1:
        raise ConfigError(f"steps must be >= 1, received {steps}")
    x, t = gradient_inputs(model, images, target)
    with evaluating(model):
        attr = IntegratedGradients(model).attribute(x, baselines=_baseline(x, baseline), target=t, n_steps=steps,
                                                    method="riemann_middle", internal_batch_size=max(len(x), 256))
    return _channels(attr)


def input_x_gradient(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None) -> np.ndarray:
    """Input × gradient, x·∂score/∂x summed over channels (Captum's InputXGradient: a zero baseline); signed."""
    from captum.attr import InputXGradient

    x, t = gradient_inputs(model, images, target)
    with evaluating(model):
        attr = InputXGradient(model).attribute(x, target=t)
    return _channels(attr)


def smoothgrad(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None, samples: int = 16,
               noise: float = 0.15, seed: int = 0) -> np.ndarray:
    """SmoothGrad: saliency averaged over `samples` noisy copies (Gaussian, std = `noise` × the batch's value
    range, so the maps depend on the batch), Captum's NoiseTunnel; seeded, the global random state left as it was."""
    from captum.attr import NoiseTunnel, Saliency

    if samples < 1 or noise <= 0:
        raise ConfigError(f"samples must be >= 1 and noise > 0, received samples={samples}, noise={noise}")
    x, t = gradient_inputs(model, images, target)
    std = noise * float(x.detach().max() - x.detach().min()) or noise
    with evaluating(model), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        attr = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=samples, stdevs=std,
                                                      target=t, abs=True, nt_samples_batch_size=max(1, 4096 // len(x)))
    return _channels(attr, "max")


def guided_backprop(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None) -> np.ndarray:
    """Guided backpropagation: the gradient with every ReLU passing back only positive gradients, summed over
    channels (signed). Only nn.ReLU modules are guided: other activations pass their ordinary gradient."""
    from captum.attr import GuidedBackprop

    x, t = gradient_inputs(model, images, target)
    with evaluating(model):
        attr = GuidedBackprop(model).attribute(x, target=t)
    return _channels(attr)


def deeplift(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None,
             baseline: Baseline = None) -> np.ndarray:
    """DeepLift (rescale rule, Captum) against `baseline` (default zeros; pass a black image), summed over
    channels; signed, and sums to about score(x) − score(baseline) (Captum's max-pool rule is not exactly
    conservative: off by up to a few per cent on the seed models)."""
    from captum.attr import DeepLift

    x, t = gradient_inputs(model, images, target)
    with evaluating(model):
        attr = DeepLift(model).attribute(x, baselines=_baseline(x, baseline), target=t)
    return _channels(attr)


def occlusion(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None, window: int = 4,
              stride: int = 2, baseline: Baseline = None) -> np.ndarray:
    """Occlusion: the score's drop when a `window`×`window` patch (moved by `stride`) is set to `baseline`
    (default zeros; pass a black image), averaged over the patches covering each pixel; signed. A patch covers
    every channel, so a pixel's channels share one value (their mean is returned, not their sum)."""
    from captum.attr import Occlusion

    c, h, w = model.spec.input_shape
    if not (1 <= window <= min(h, w) and 1 <= stride <= window):
        raise ConfigError(f"occlusion needs 1 <= window <= {min(h, w)} and 1 <= stride <= window, received "
                          f"window={window}, stride={stride}")
    x, t = gradient_inputs(model, images, target)
    with evaluating(model), torch.no_grad():
        attr = Occlusion(model).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                          baselines=_baseline(x, baseline), target=t,
                                          perturbations_per_eval=max(1, 2048 // len(x)))
    return _channels(attr, "mean")
