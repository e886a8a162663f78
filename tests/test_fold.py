"""Batch norms folded into their convolutions (core.models.fold): the copy computes what the model computes,
the model itself is untouched, and a norm whose convolution output is read elsewhere is not folded."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.explain.sanity import cascade_units, copy_backbone, reinitialise
from core.models.fold import fold_batchnorm, folded_model
from tests.conftest import scene, tiny_timm_backbone


def _norms(m: nn.Module) -> int:
    return sum(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules())


def _with_statistics(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters in every norm (a fresh norm folds to nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                C = bn.num_features
                bn.running_mean.copy_(torch.randn(C, generator=g))
                bn.running_var.copy_(torch.rand(C, generator=g) + 0.5)
                bn.weight.copy_(torch.randn(C, generator=g))
                bn.bias.copy_(torch.randn(C, generator=g))
    return m.eval()


def test_conv_norm_chain_equals_the_formula() -> None:
    torch.manual_seed(0)
    m = _with_statistics(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                       nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4)))
    x = torch.randn(2, 3, 9, 9)
    folded, n = fold_batchnorm(m, x[:1])
    assert n == 2 and _norms(folded) == 0 and _norms(m) == 2
    # the formula by hand for the first pair: conv, then (y - mean) / sqrt(var + eps) * gamma + beta
    conv, bn = m[0], m[1]
    y = nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    want = ((y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
            * bn.weight[:, None, None] + bn.bias[:, None, None])
    torch.testing.assert_close(folded[0](x), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(folded(x), m(x), rtol=1e-5, atol=1e-5)


class _Shortcut(nn.Module):
    """The convolution's output is normalised and also added back: folding the norm would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_conv_output_read_twice_is_left_unfolded() -> None:
    torch.manual_seed(0)
    m = _with_statistics(_Shortcut())
    x = torch.randn(1, 4, 8, 8)
    folded, n = fold_batchnorm(m, x)
    assert n == 0 and folded is m  # nothing folded: the model itself, no copy kept
    torch.testing.assert_close(folded(x), m(x))


def test_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).train(), torch.zeros(1, 3, 4, 4))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet_lite0"])
def test_builtin_cnns_fold_every_norm_and_keep_their_outputs(get_backbone, name) -> None:
    b = get_backbone(name)
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    folded = folded_model(b)
    assert folded_model(b) is folded  # made once per backbone
    assert _norms(folded) == 0 and _norms(b.model) > 0
    x = b.preprocess([scene("cat.jpg"), scene("coffee.jpg")])  # [2, 3, S, S]
    with torch.inference_mode():
        want, got = b.model(x), folded(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.softmax(-1), want.softmax(-1), rtol=0, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in b.model.state_dict().items())  # the shared model untouched


def test_a_copy_of_the_backbone_or_new_weights_get_their_own_fold() -> None:
    """The randomisation test deep-copies a backbone and re-initialises the copy in place: its scorer must
    run the copy's weights, never the fold made from the original's."""
    b = tiny_timm_backbone("mobilenetv2_035", "tiny_mnv2")
    _with_statistics(b.model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    trained = folded_model(b)
    rand = copy_backbone(b)
    reinitialise(rand.model, cascade_units(rand)[0], seed=3)
    folded = folded_model(rand)
    assert folded is not trained and folded_model(b) is trained
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), rand.model(x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(rand.model(x), b.model(x))  # the re-initialisation changed the output
