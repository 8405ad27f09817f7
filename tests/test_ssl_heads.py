"""DINO head: outputs equal official `DINOHead` with copied weights; official state-dict names."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from raddino.ssl.heads import DinoHead

official_head = pytest.importorskip("dinov2.layers.dino_head")
# the official head uses the deprecated torch.nn.utils.weight_norm; that warning is not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")

OFFICIAL_KEYS = [
    "mlp.0.weight",
    "mlp.0.bias",
    "mlp.2.weight",
    "mlp.2.bias",
    "mlp.4.weight",
    "mlp.4.bias",
    "last_layer.weight_g",
    "last_layer.weight_v",
]


def _official(in_dim=32, out_dim=300, **kwargs):
    head = official_head.DINOHead(in_dim, out_dim, hidden_dim=48, bottleneck_dim=16, **kwargs)
    with torch.no_grad():  # a trained head: g no longer 1, biases non-zero
        head.last_layer.weight_g.uniform_(0.5, 1.5)
        for module in head.mlp.modules() if isinstance(head.mlp, torch.nn.Sequential) else []:
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0, 0.1)
    return head


@pytest.mark.parametrize(
    "kwargs", [{}, {"nlayers": 1}, {"nlayers": 4}, {"use_bn": True}, {"mlp_bias": False}]
)
def test_head_matches_official_with_copied_weights(kwargs):
    torch.manual_seed(0)
    official = _official(**kwargs).eval()
    ours_kwargs = {
        "n_layers": kwargs.get("nlayers", 3),
        "use_bn": kwargs.get("use_bn", False),
        "mlp_bias": kwargs.get("mlp_bias", True),
    }
    ours = DinoHead(32, 300, hidden_dim=48, bottleneck_dim=16, **ours_kwargs).eval()
    ours.load_state_dict(official.state_dict())
    assert list(ours.state_dict()) == list(official.state_dict())
    shape = (10, 32) if ours_kwargs["use_bn"] else (2, 5, 32)  # BatchNorm1d wants (B, C)
    features = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours(features), official(features), atol=1e-5, rtol=0)
    # and the other way: our state dict loads into the official class
    back = official_head.DINOHead(32, 300, hidden_dim=48, bottleneck_dim=16, **kwargs).eval()
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back(features), official(features), atol=0, rtol=0)


def test_head_gradients_match_official():
    torch.manual_seed(0)
    official = _official()
    ours = DinoHead(32, 300, hidden_dim=48, bottleneck_dim=16)
    ours.load_state_dict(official.state_dict())
    features = torch.randn(7, 32, generator=torch.Generator().manual_seed(2))
    ours(features).logsumexp(-1).sum().backward()
    official(features).logsumexp(-1).sum().backward()
    ours_grads = {k: p.grad for k, p in ours.named_parameters()}
    torch.testing.assert_close(
        ours_grads["last_layer.parametrizations.weight.original0"],
        official.last_layer.weight_g.grad,
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(
        ours_grads["last_layer.parametrizations.weight.original1"],
        official.last_layer.weight_v.grad,
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(
        ours_grads["mlp.0.weight"], official.mlp[0].weight.grad, atol=1e-5, rtol=0
    )


def test_released_head_file_roundtrip_through_safetensors(tmp_path):
    torch.manual_seed(0)
    official = _official()
    path = tmp_path / "dino_head.safetensors"
    save_file({k: v.contiguous() for k, v in official.state_dict().items()}, str(path))
    ours = DinoHead(32, 300, hidden_dim=48, bottleneck_dim=16)
    ours.load_state_dict(load_file(str(path)))
    assert sorted(ours.state_dict()) == sorted(OFFICIAL_KEYS)
    features = torch.randn(3, 32)
    torch.testing.assert_close(ours(features), official(features), atol=1e-5, rtol=0)
    # our own native (parametrisation) names load as well
    native = {k: v for k, v in ours.named_parameters()}
    again = DinoHead(32, 300, hidden_dim=48, bottleneck_dim=16)
    again.load_state_dict({k: v.detach() for k, v in native.items()})
    torch.testing.assert_close(again(features), ours(features), atol=0, rtol=0)


def test_init_is_official_and_seeded():
    head = DinoHead(64, 500, generator=torch.Generator().manual_seed(3))
    same = DinoHead(64, 500, generator=torch.Generator().manual_seed(3))
    for (name, a), (_, b) in zip(head.state_dict().items(), same.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(head.weight_norm_scale, torch.ones(500, 1))
    assert head.weight_norm_scale.requires_grad  # official trains g (initialised to 1)
    weights = head.mlp[0].weight
    assert (
        abs(float(weights.detach().std()) - 0.02) < 1e-3
    )  # bounds +-2 are absolute: no real truncation
    assert float(head.mlp[0].bias.detach().abs().max()) == 0.0
    frozen = DinoHead(64, 10, freeze_weight_norm_scale=True)
    assert not frozen.weight_norm_scale.requires_grad
