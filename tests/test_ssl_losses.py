"""DINO, iBOT and KoLeo losses and teacher centring: numerical parity with the official DINOv2 code.

Official modules run on CPU without a process group; their `dist.all_reduce` calls are guarded by
`dist.is_initialized()` except iBOT's Sinkhorn sample count, which we monkeypatch to identity.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from raddino.ssl.centering import TeacherCentering, sinkhorn_knopp
from raddino.ssl.dino_loss import DinoClsTokenLoss, cross_paired_dino_loss
from raddino.ssl.ibot_loss import IbotPatchLoss
from raddino.ssl.koleo_loss import koleo_loss, koleo_loss_per_crop
from raddino.ssl.masking import masks_to_indices_and_weights, sample_ibot_masks

official_dino = pytest.importorskip("dinov2.loss.dino_clstoken_loss")
official_ibot = pytest.importorskip("dinov2.loss.ibot_patch_loss")
official_koleo = pytest.importorskip("dinov2.loss.koleo_loss")

ATOL = 1e-5
N_GLOBAL, BATCH, N_LOCAL, K = 2, 6, 3, 64


def _logits(generator: torch.Generator, *shape: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def _official_dino_step(loss, teacher_gbk, student_gbk, student_lbk, temp, centering):
    """One official SSLMetaArch DINO step; returns (targets in crop order, global, local)."""
    n_global, batch, k = teacher_gbk.shape
    reversed_nk = torch.cat((teacher_gbk[1], teacher_gbk[0]))  # official: cat'd in reverse
    if centering == "centering":
        targets = loss.softmax_center_teacher(reversed_nk, teacher_temp=temp)
        loss.update_center(reversed_nk)
    else:
        targets = loss.sinkhorn_knopp_teacher(reversed_nk, teacher_temp=temp)
    targets_gbk = targets.view(n_global, batch, k)
    n_terms = (n_global - 1) * n_global + max(student_lbk.shape[0] * n_global, 1)
    local = loss(list(student_lbk), targets_gbk) / n_terms
    global_ = loss([student_gbk.flatten(0, 1)], [targets_gbk.flatten(0, 1)]) * 2 / n_terms
    return torch.stack((targets_gbk[1], targets_gbk[0])), global_, local


@pytest.mark.parametrize("centering", ["centering", "sinkhorn_knopp"])
def test_dino_loss_matches_official_over_three_steps(centering):
    gen = torch.Generator().manual_seed(1)
    official = official_dino.DINOLoss(K)
    ours = DinoClsTokenLoss(K, centering=centering)
    for step, temp in enumerate((0.04, 0.05, 0.07)):
        # logits within what a weight-normed head gives: official Sinkhorn's exp(logits / T)
        # overflows float32 beyond ~88 T; in centering mode a drifting mean moves the centre
        if centering == "centering":
            teacher = _logits(gen, N_GLOBAL, BATCH, K) + step
        else:
            teacher = _logits(gen, N_GLOBAL, BATCH, K, scale=0.5)
        student_g = _logits(gen, N_GLOBAL, BATCH, K).requires_grad_()
        student_l = _logits(gen, N_LOCAL, BATCH, K).requires_grad_()
        off_targets, off_global, off_local = _official_dino_step(
            official, teacher, student_g, student_l, temp, centering
        )
        targets = ours.teacher_targets(teacher, temp)
        out = ours(student_g, targets, student_l)
        torch.testing.assert_close(targets, off_targets, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.global_crops, off_global, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.local_crops, off_local, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.total, off_global + off_local, atol=ATOL, rtol=0)
        grads = torch.autograd.grad(out.total, (student_g, student_l))
        off_grads = torch.autograd.grad(off_global + off_local, (student_g, student_l))
        for grad, off_grad in zip(grads, off_grads, strict=True):
            torch.testing.assert_close(grad, off_grad, atol=1e-6, rtol=0)
        if centering == "centering":
            # the official centre lags by one step; compare after applying its pending update
            official.apply_center_update()
            ours.centering.apply_pending_update()
            torch.testing.assert_close(ours.centering.center, official.center, atol=1e-6, rtol=0)
            assert ours.centering.center.abs().max() > 0.05 * (step + 1) - 1e-3


def test_softmax_centering_is_deferred_by_one_step():
    gen = torch.Generator().manual_seed(2)
    centering = TeacherCentering(K, momentum=0.9)
    batch0, batch1 = _logits(gen, 8, K) + 1.0, _logits(gen, 8, K) - 2.0
    targets0 = centering(batch0, 0.05)
    # step 0 uses the zero centre although batch0's mean is far from zero
    torch.testing.assert_close(targets0, F.softmax(batch0 / 0.05, dim=-1))
    assert torch.count_nonzero(centering.center) == 0 and bool(centering.has_pending_update)
    targets1 = centering(batch1, 0.05)
    centre_after_0 = 0.1 * batch0.mean(dim=0, keepdim=True)  # 0.9 * 0 + 0.1 * mean0
    torch.testing.assert_close(centering.center, centre_after_0)
    torch.testing.assert_close(targets1, F.softmax((batch1 - centre_after_0) / 0.05, dim=-1))


def test_centering_state_dict_resumes_pending_update_and_loads_official_centre():
    gen = torch.Generator().manual_seed(3)
    first = TeacherCentering(K)
    first(_logits(gen, 5, K), 0.04)
    first(_logits(gen, 5, K), 0.04)
    resumed = TeacherCentering(K)
    resumed.load_state_dict(first.state_dict())
    batch = _logits(gen, 5, K)
    torch.testing.assert_close(resumed(batch, 0.06), first(batch, 0.06), atol=0, rtol=0)
    ibot_official = official_ibot.iBOTPatchLoss(K)
    ibot_official.center = torch.randn(1, 1, K, generator=gen)
    from_official = IbotPatchLoss(K)
    from_official.centering.load_state_dict({"center": ibot_official.center})
    torch.testing.assert_close(from_official.centering.center, ibot_official.center.view(1, K))


def test_global_crops_are_cross_paired_never_same_crop():
    # teacher crop 0 is confident in prototype 0, crop 1 in prototype 1; student crop 0 predicts
    # prototype 0: same-crop pairing would be cheap, cross pairing is expensive.
    targets = torch.zeros(2, 1, 4)
    targets[0, 0, 0] = targets[1, 0, 1] = 1.0
    student = torch.full((2, 1, 4), -5.0)
    student[0, 0, 0] = student[1, 0, 1] = 5.0
    out = cross_paired_dino_loss(student, targets, None, student_temp=1.0)
    log_p = F.log_softmax(student, dim=-1)
    cross = -(log_p[0, 0, 1] + log_p[1, 0, 0]) / 3  # n_terms = 2 * 1 + max(0, 1)
    same = -(log_p[0, 0, 0] + log_p[1, 0, 1]) / 3
    torch.testing.assert_close(out.total, cross)
    assert out.total > 100 * same


def test_dino_loss_term_count_and_local_pairs_by_hand():
    gen = torch.Generator().manual_seed(4)
    targets = F.softmax(_logits(gen, 2, 3, 5), dim=-1)
    student_g, student_l = _logits(gen, 2, 3, 5), _logits(gen, 4, 3, 5)
    out = cross_paired_dino_loss(student_g, targets, student_l, student_temp=0.1)

    def ce(t, s):
        return -(t * F.log_softmax(s / 0.1, dim=-1)).sum(-1).mean()

    n_terms = 2 + 4 * 2
    by_hand_local = sum(ce(targets[t], student_l[s]) for s in range(4) for t in range(2))
    by_hand_global = ce(targets[1], student_g[0]) + ce(targets[0], student_g[1])
    torch.testing.assert_close(out.local_crops, by_hand_local / n_terms)
    torch.testing.assert_close(out.global_crops, by_hand_global / n_terms)


@pytest.mark.parametrize("centering", ["centering", "sinkhorn_knopp"])
def test_ibot_loss_matches_official_over_three_steps(centering, monkeypatch):
    # official iBOT Sinkhorn all-reduces the sample count without an is_initialized() guard
    monkeypatch.setattr(official_ibot.dist, "all_reduce", lambda tensor, *a, **k: None)
    gen = torch.Generator().manual_seed(5)
    official = official_ibot.iBOTPatchLoss(K)
    ours = IbotPatchLoss(K, centering=centering)
    for step, temp in enumerate((0.04, 0.055, 0.07)):
        masks = sample_ibot_masks(2 * BATCH, 6, generator=gen)
        n_masked = int(masks.n_masked_patches)
        assert n_masked > 0
        if centering == "centering":
            teacher = _logits(gen, n_masked, K) + step
        else:
            teacher = _logits(gen, n_masked, K, scale=0.5)
        student = _logits(gen, n_masked, K).requires_grad_()
        if centering == "centering":
            off_targets = official.softmax_center_teacher(teacher.unsqueeze(0), teacher_temp=temp)
            off_targets = off_targets.squeeze(0)
            official.update_center(teacher.unsqueeze(0))
        else:
            off_targets = official.sinkhorn_knopp_teacher(
                teacher, teacher_temp=temp, n_masked_patches_tensor=masks.n_masked_patches.clone()
            )
        # official SSLMetaArch: forward_masked * loss_scales (2) * ibot_loss_scale (1/2)
        off_loss = official.forward_masked(
            student, off_targets, student_masks_flat=masks.masks_bn, n_masked_patches=n_masked
        )
        targets = ours.teacher_targets(teacher, temp)
        loss = ours(student, targets, masks.masks_weight_m, n_images=masks.masks_bn.shape[0])
        torch.testing.assert_close(targets, off_targets, atol=ATOL, rtol=0)
        torch.testing.assert_close(loss, off_loss * 2 * 0.5, atol=ATOL, rtol=0)
        (grad,) = torch.autograd.grad(loss, student)
        (off_grad,) = torch.autograd.grad(off_loss, student)
        torch.testing.assert_close(grad, off_grad, atol=1e-6, rtol=0)
        if centering == "centering":
            official.apply_center_update()
            ours.centering.apply_pending_update()
            torch.testing.assert_close(
                ours.centering.center, official.center.view(1, K), atol=1e-6, rtol=0
            )


def test_ibot_weighting_gives_each_masked_image_its_mean_patch_loss():
    masks_bn = torch.zeros(4, 6, dtype=torch.bool)
    masks_bn[0, :1] = True  # image 0: 1 masked patch, image 2: 4, images 1 and 3: none
    masks_bn[2, 2:] = True
    cross_entropy_m = torch.tensor([2.0, 1.0, 3.0, 5.0, 7.0])
    n_patches = cross_entropy_m.shape[0]
    # targets one-hot on prototype 0, student logits chosen so -log p0 equals the CE above
    targets = torch.zeros(n_patches, 2)
    targets[:, 0] = 1.0
    p0 = torch.exp(-cross_entropy_m)
    student = torch.stack((torch.log(p0), torch.log1p(-p0)), dim=1) * 0.1  # /0.1 inside
    _, weights_m = masks_to_indices_and_weights(masks_bn)
    torch.testing.assert_close(weights_m, torch.tensor([1.0, 0.25, 0.25, 0.25, 0.25]))
    loss = IbotPatchLoss(2)(student, targets, weights_m, n_images=4)
    expected = (2.0 + (1.0 + 3.0 + 5.0 + 7.0) / 4) / 4  # mean over images, unmasked count 0
    torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-5, rtol=0)


def test_sinkhorn_produces_balanced_assignments_and_survives_large_logits():
    gen = torch.Generator().manual_seed(6)
    logits = _logits(gen, 40, 16, scale=1.0)
    q = sinkhorn_knopp(logits, 0.2, n_iterations=100)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(40))
    torch.testing.assert_close(q.sum(dim=0), torch.full((16,), 40 / 16), atol=1e-3, rtol=0)
    # official exp(logits / T) overflows float32 here (inf -> NaN); the same iterations in
    # float64 are the reference our float32 version must match
    big_logits = logits * 1.5 + 4.0
    assert not torch.isfinite(torch.exp(big_logits / 0.04)).all()
    q_kn = torch.exp(big_logits.double() / 0.04).t()
    q_kn /= q_kn.sum()
    for _ in range(3):
        q_kn /= q_kn.sum(dim=1, keepdim=True) * 16
        q_kn /= q_kn.sum(dim=0, keepdim=True) * 40
    reference = (q_kn * 40).t()
    big = sinkhorn_knopp(big_logits, 0.04)
    torch.testing.assert_close(big.double(), reference, atol=1e-5, rtol=0)
    # far beyond: samples that underflow everywhere get zero targets, never NaN
    huge = sinkhorn_knopp(logits * 100.0, 0.04)
    assert torch.isfinite(huge).all()
    row_sums = huge.sum(dim=1)
    assert bool(((row_sums - 1).abs() < 1e-5).logical_or(row_sums == 0).all())


@pytest.mark.filterwarnings("ignore:.*autocast.*:FutureWarning")  # inside official KoLeo
def test_koleo_matches_official_value_and_gradient():
    gen = torch.Generator().manual_seed(7)
    official = official_koleo.KoLeoLoss()
    features = torch.randn(2, 9, 24, generator=gen).requires_grad_()
    loss = koleo_loss_per_crop(features)
    off_loss = sum(official(crop) for crop in features.flatten(0, 1).chunk(2))
    torch.testing.assert_close(loss, off_loss, atol=ATOL, rtol=0)
    (grad,) = torch.autograd.grad(loss, features)
    (off_grad,) = torch.autograd.grad(off_loss, features)
    torch.testing.assert_close(grad, off_grad, atol=1e-6, rtol=0)


def test_koleo_by_hand_and_excludes_self():
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # nearest neighbours at angle 90 degrees: distance sqrt(2) for every point
    expected = -math.log(math.sqrt(2) + 1e-8)
    assert abs(float(koleo_loss(points)) - expected) < 1e-6
    with pytest.raises(ValueError, match="B >= 2"):
        koleo_loss(points[:1])
    # antipodal pair: official's -1 diagonal fill could pick the point itself; we never do
    pair = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert abs(float(koleo_loss(pair)) - (-math.log(2.0 + 1e-8))) < 1e-6


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="centering mode"):
        TeacherCentering(4, mode="mean")
    with pytest.raises(ValueError, match="teacher temperature"):
        TeacherCentering(4)(torch.zeros(2, 4), 0.0)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        TeacherCentering(4)(torch.zeros(2, 5), 0.1)
    with pytest.raises(ValueError, match="cross-pairing"):
        cross_paired_dino_loss(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="masks_weight"):
        IbotPatchLoss(4)(torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(2), n_images=2)


def test_empty_masked_batch_gives_no_nan_and_keeps_the_centre():
    ibot = IbotPatchLoss(K)
    gen = torch.Generator().manual_seed(8)
    ibot.teacher_targets(_logits(gen, 5, K), 0.05)
    ibot.centering.apply_pending_update()
    centre = ibot.centering.center.clone()
    empty_targets = ibot.teacher_targets(torch.zeros(0, K), 0.05)
    assert empty_targets.shape == (0, K)
    ibot.centering.apply_pending_update()
    torch.testing.assert_close(ibot.centering.center, centre, atol=0, rtol=0)
    loss = ibot(torch.zeros(0, K), empty_targets, torch.zeros(0), n_images=4)
    assert float(loss) == 0.0
    assert sinkhorn_knopp(torch.zeros(0, K), 0.05).shape == (0, K)
