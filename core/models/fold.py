"""An inference copy of a CNN with every batch norm folded into the convolution that feeds it.

In eval mode a batch norm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``;
when ``x`` is a convolution's output the map folds into that convolution's weights and bias (scale each
output filter by ``gamma / sqrt(var + eps)``, shift its bias), and the norm disappears from the forward
pass. On MobileNetV2 at batch 32 on the CPU the norms were a third of the forward time. The folded copy
gives the same outputs up to float rounding (tested within 1e-5 on the built-in CNNs); it is for
scoring many perturbed pictures (:func:`core.explain.faithfulness.tensor_scorer`), never for gradients
or hooks that read a norm's output.

Which convolution feeds which norm is read from one traced forward pass (forward hooks), not from
module names, so it works on any timm or torchvision CNN: a norm is folded when its input is exactly the
output of one ``Conv2d``. A convolution output that something else reads too (a functional residual add)
would change that reader, so the copy's output is checked against the model's on the traced input, and
the model itself is used (with a warning in the log) when they differ.
"""
from __future__ import annotations

import copy
import itertools
import logging
import weakref
from typing import Any

import torch
from torch import nn

from core.models.base import Backbone

log = logging.getLogger(__name__)


class _After(nn.Module):
    """What a timm ``BatchNormAct2d`` does after normalising: its dropout, then its activation."""

    def __init__(self, drop: nn.Module, act: nn.Module):
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _replacement(bn: nn.Module) -> nn.Module | None:
    """What stands in for a folded norm: nothing (``Identity``), or the activation of a timm norm-act."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # pragma: no cover - timm is a dependency
        return None
    if type(bn) is BatchNormAct2d:
        return _After(bn.drop, bn.act)
    return None  # another subclass may do more than normalise: left as it is


def _linear_convs() -> tuple[type, ...]:
    """Convolutions whose output is ``conv2d(input, weight) + bias`` (timm's TF-"same" one pads the input
    first); a weight-standardised one would undo the scaled weights, so it is not listed."""
    try:
        from timm.layers import Conv2dSame
    except ImportError:  # pragma: no cover - timm is a dependency
        return (nn.Conv2d,)
    return (nn.Conv2d, Conv2dSame)


def _pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv name, norm name)`` for every batch norm whose input is a convolution's output, found by one
    forward pass of ``example``."""
    names = {m: n for n, m in model.named_modules()}
    made: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (conv, output); the tensor is kept so its id stays unique
    found: list[tuple[str, str]] = []
    handles = []

    def on_norm(module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and id(args[0]) in made:
            found.append((made[id(args[0])][0], names[module]))

    def on_conv(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if isinstance(out, torch.Tensor):
            made[id(out)] = (names[module], out)

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            handles.append(m.register_forward_pre_hook(on_norm))
        if type(m) in _linear_convs():
            handles.append(m.register_forward_hook(on_conv))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    convs = [c for c, _ in found]
    norms = [n for _, n in found]
    return [(c, n) for c, n in found if convs.count(c) == 1 and norms.count(n) == 1]  # modules run once each


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A deep copy of ``model`` in eval mode with every foldable batch norm folded into its convolution.

    Args:
        model: a CNN in eval mode (left unchanged; the caller holds whatever lock guards it).
        example: ``[1, 3, S, S]`` an input on the model's device, for the one traced forward pass.

    Returns:
        ``(copy, number of norms folded)``; ``(model, 0)`` when none could be folded (no copy is kept then).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (a training-mode norm uses batch statistics)")
    folded = copy.deepcopy(model)
    count = 0
    for conv_name, bn_name in _pairs(folded, example):
        conv: Any = folded.get_submodule(conv_name)
        bn: Any = folded.get_submodule(bn_name)
        swap = _replacement(bn)
        if swap is None or bn.running_mean is None or bn.running_var is None or not bn.affine:
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))  # [C_out, C_in / groups, k, k]
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
        _set(folded, bn_name, swap)
        count += 1
    with torch.inference_mode():
        want, got = model(example).float(), folded(example).float()
    if count and not torch.allclose(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max())):
        log.warning("folding the batch norms of %s changed its output (max difference %.3g): left unfolded",
                    type(model).__name__, float((got - want).abs().max()))
        return model, 0
    log.debug("folded %d batch norms of %s", count, type(model).__name__)
    return (folded, count) if count else (model, 0)


# model -> (its device and weights' in-place version when folded, the folded copy); keyed by the model object,
# so a deep copy of a backbone (the randomisation test's) never finds the original's fold
_FOLDED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, int], nn.Module]] = weakref.WeakKeyDictionary()


def folded_model(b: Backbone) -> nn.Module:
    """``b.model`` with its batch norms folded, made once per model, device and weights (under ``b.lock``):
    an in-place change of any weight or statistic (a re-initialisation) makes a new fold.

    Checked on one seeded random picture at the backbone's input size (see :func:`fold_batchnorm`)."""
    with b.lock:
        model = b.model
        stamp = (b.device, sum(t._version for t in itertools.chain(model.parameters(), model.buffers())))
        held = _FOLDED.get(model)
        if held is None or held[0] != stamp:
            S = int(b.spec.input_size)
            example = torch.randn(1, 3, S, S, generator=torch.Generator().manual_seed(0)).to(b.device)
            held = (stamp, fold_batchnorm(model, example)[0])
            _FOLDED[model] = held
        return held[1]
