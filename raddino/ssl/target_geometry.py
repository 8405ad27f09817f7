"""Why a run's DINO targets are flat: the teacher of a training checkpoint on one training batch.

A target is flat when many prototypes sit within a temperature of the top logit. This module
measures, for the teacher's softmax at a given temperature (before Sinkhorn-Knopp, which only
rebalances): how many prototypes share a target, how close the best prototype is to an image's
bottleneck, and whether an image's two global crops get the same target and a similar backbone
class token. Hand-written: no library inspects DINO heads this way.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from raddino.ssl.meta_arch import DinoV2MetaArch, SslBatch


def _mean_pairwise_cos(rows_nd: torch.Tensor) -> float:
    """Mean cosine between different rows."""
    unit = F.normalize(rows_nd.float(), dim=-1)
    n = len(unit)
    sims = unit @ unit.T
    return float((sims.sum() - sims.diagonal().sum()) / (n * n - n))


def _overlap(p_bk: torch.Tensor, q_bk: torch.Tensor) -> float:
    """Mean Bhattacharyya coefficient sum_k sqrt(p_k q_k) of paired rows (1 = same target)."""
    return float((p_bk * q_bk).sqrt().sum(-1).mean())


@torch.no_grad()
def target_geometry(meta: DinoV2MetaArch, batch: SslBatch, teacher_temp: float) -> dict:
    """Teacher DINO-target statistics of one batch with at least two global crops per image."""
    if batch.n_global < 2 or batch.batch_size < 2:
        raise ValueError("target_geometry needs >= 2 global crops of >= 2 images")
    teacher = meta.teacher.eval()
    head = teacher["dino_head"]
    cls_nc = teacher["backbone"].forward_features(batch.global_crops)["cls"].float()
    bottleneck_nd = head.mlp(cls_nc)
    # cosines to the prototypes times weight-norm g: DinoHead.forward without a second MLP pass
    logits_nk = head.last_layer(F.normalize(bottleneck_nd, dim=-1)).float()
    probs_nk = (logits_nk / teacher_temp).softmax(-1)
    entropy_n = -(probs_nk * probs_nk.clamp_min(1e-12).log()).sum(-1)
    b = batch.batch_size
    first, second = slice(0, b), slice(b, 2 * b)  # crop-major rows: crop g of image i is g*B+i
    cls_first, cls_second = cls_nc[first], cls_nc[second]
    argmax_n = logits_nk.argmax(-1)
    return {
        "effective_prototypes": float(entropy_n.exp().mean()),
        "n_prototypes": logits_nk.shape[-1],
        "top_logit": float(logits_nk.max(-1).values.mean()),
        "crop_overlap": _overlap(probs_nk[first], probs_nk[second]),
        "other_image_overlap": _overlap(probs_nk[first], probs_nk[second].roll(1, 0)),
        "crop_argmax_agreement": float((argmax_n[first] == argmax_n[second]).float().mean()),
        "cls_cos_crops": float(F.cosine_similarity(cls_first, cls_second).mean()),
        "cls_cos_other_image": float(F.cosine_similarity(cls_first, cls_second.roll(1, 0)).mean()),
        "bottleneck_cos_images": _mean_pairwise_cos(bottleneck_nd[first]),
        "prototype_cos": _mean_pairwise_cos(head.last_layer.weight),
    }


def meta_from_checkpoint(
    config: dict, checkpoint_dir: str | os.PathLike | None = None
) -> DinoV2MetaArch:
    """The run's student/teacher as built at step 0 (`checkpoint_dir=None`: the start weights,
    fresh heads) or as saved in a training checkpoint folder."""
    from raddino.ssl import checkpoint as ckpt
    from raddino.ssl.train import build_backbone_for

    torch.manual_seed(int(config["train"]["seed"]))  # fresh heads as the run drew them
    meta = DinoV2MetaArch(build_backbone_for(config), config)
    if checkpoint_dir is not None:
        tensors, _ = ckpt.load_checkpoint(checkpoint_dir)
        state = ckpt.unprefixed("meta", tensors)
        if not state:
            raise KeyError(f"{checkpoint_dir}: no meta-architecture tensors in the checkpoint")
        meta.load_state_dict(state)
    return meta.eval()


def training_batches(config: dict, meta: DinoV2MetaArch, steps: range = range(1)) -> list:
    """Batches of the run's data with the crops and masks of `steps`; their images come from a
    pool of one batch, rendered once (not the run's whole prerendered pool)."""
    from raddino.ssl.data import BatchMaker
    from raddino.ssl.train import make_normalizer, make_source

    one_batch = int(config["train"]["batch_size_per_device"])
    data = {**config["data"], "pool_refresh": 0, "pool_size": one_batch, "prerender": False}
    config = {**config, "data": data}
    backbone = meta.teacher["backbone"]
    make = BatchMaker(config, make_source(config), 0, 1, make_normalizer(backbone))
    make.patch_size = backbone.patch_size
    return [make(step) for step in steps]
