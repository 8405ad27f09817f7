"""DINO / iBOT projection head: MLP -> L2-normalise -> weight-normalised linear onto prototypes.

Layout and parameter names follow official `DINOHead` (`mlp.0`, `mlp.2`, `mlp.4`, `last_layer`)
so checkpoints interchange. The last layer uses `torch.nn.utils.parametrizations.weight_norm`
(the maintained API) internally, but `state_dict()` is written with the official names
`last_layer.weight_g` / `last_layer.weight_v`, and `load_state_dict` accepts both spellings, so a
released head file (e.g. RAD-DINO's `dino_head.safetensors`) loads directly.

Weight-norm scale g: official DINOv2 initialises g to 1 and leaves it TRAINABLE (DINO v1's
`norm_last_layer=True` froze it). `freeze_weight_norm_scale=True` gives the frozen variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

# Our parametrisation's names for weight-norm's g (original0) and v (original1) -> official names.
_OURS_TO_OFFICIAL = {
    "last_layer.parametrizations.weight.original0": "last_layer.weight_g",
    "last_layer.parametrizations.weight.original1": "last_layer.weight_v",
}


class DinoHead(nn.Module):
    """Projection head of DINOv2; (..., in_dim) features -> (..., n_prototypes) logits."""

    def __init__(
        self,
        in_dim: int,
        n_prototypes: int = 65536,
        n_layers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        mlp_bias: bool = True,
        use_bn: bool = False,
        freeze_weight_norm_scale: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(in_dim, n_prototypes, hidden_dim, bottleneck_dim) < 1:
            raise ValueError("DinoHead dimensions must all be >= 1")
        self.mlp = _build_mlp(
            max(n_layers, 1), in_dim, hidden_dim, bottleneck_dim, mlp_bias, use_bn
        )
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):  # official init: truncated normal std 0.02, bias 0
                nn.init.trunc_normal_(module.weight, std=0.02, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        last_layer = nn.Linear(bottleneck_dim, n_prototypes, bias=False)
        bound = 1.0 / bottleneck_dim**0.5  # nn.Linear's default init, drawn from `generator`
        nn.init.uniform_(last_layer.weight, -bound, bound, generator=generator)
        self.last_layer = parametrizations.weight_norm(last_layer, name="weight", dim=0)
        with torch.no_grad():
            self.weight_norm_scale.fill_(1.0)
        self.weight_norm_scale.requires_grad_(not freeze_weight_norm_scale)
        self.register_state_dict_post_hook(_rename_to_official)
        self.register_load_state_dict_pre_hook(_rename_from_official)

    @property
    def weight_norm_scale(self) -> nn.Parameter:
        """The weight-norm magnitude g, shape (n_prototypes, 1) (official `last_layer.weight_g`)."""
        return self.last_layer.parametrizations.weight.original0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits over prototypes; the bottleneck is L2-normalised first (eps 1e-6 in fp16)."""
        bottleneck = self.mlp(features)
        eps = 1e-6 if bottleneck.dtype == torch.float16 else 1e-12
        return self.last_layer(F.normalize(bottleneck, p=2, dim=-1, eps=eps))


def _build_mlp(
    n_layers: int, in_dim: int, hidden_dim: int, bottleneck_dim: int, bias: bool, use_bn: bool
) -> nn.Module:
    """Linear(+BN)+GELU blocks ending in a Linear to the bottleneck; indices match official."""
    if n_layers == 1:
        return nn.Linear(in_dim, bottleneck_dim, bias=bias)
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (n_layers - 1)
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if use_bn:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.GELU())
    layers.append(nn.Linear(hidden_dim, bottleneck_dim, bias=bias))
    return nn.Sequential(*layers)


def _rename_to_official(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for ours, official in _OURS_TO_OFFICIAL.items():
        if prefix + ours in state_dict:
            state_dict[prefix + official] = state_dict.pop(prefix + ours)


def _rename_from_official(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for ours, official in _OURS_TO_OFFICIAL.items():
        if prefix + official in state_dict:
            state_dict[prefix + ours] = state_dict.pop(prefix + official)
