"""iBOT block masking: official `MaskingGenerator` + masks of `collate_data_and_cast`, vectorised.

Per batch of global-crop images (official collate):
* `int(n_images * mask_probability)` images are masked; mask ratio range [0.1, 0.5] is cut into
  that many equal bins (linspace) and image i of the masked ones asks for int(N * U(bin_i)) patches;
  `upperbound` = sum_i int(N * bin_i_max) bounds the total. The masks are then shuffled over images.
* Each mask is grown from rectangles (official `MaskingGenerator`): area U(min_num_patches,
  max_patches), aspect log-uniform in (0.3, 1/0.3), h = round(sqrt(area * aspect)),
  w = round(sqrt(area / aspect)), uniform position; a rectangle is accepted only if it adds
  between 1 and `remaining` new patches, up to 10 attempts per block; the mask stops when the
  target is reached or 10 attempts fail. So a mask never exceeds its target and can fall short.

Official loops over images and blocks in Python with `random`; we run all images of a batch in
parallel (one block per image per round) from a `torch.Generator`, hand-written because no library
does this. Not bitwise equal to official (different random stream), equal in distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class BlockMaskGenerator:
    """Batched block masks on a (height, width) patch grid; official MaskingGenerator semantics."""

    def __init__(
        self,
        grid_size: int | tuple[int, int],
        min_num_patches: int = 4,
        max_num_patches: float | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        max_attempts: int = 10,
    ) -> None:
        self.height, self.width = (
            (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
        )
        if self.height < 1 or self.width < 1:
            raise ValueError(f"mask grid size must be positive, got {grid_size}")
        if not 0 < min_aspect <= (max_aspect or 1 / min_aspect):
            raise ValueError(f"need 0 < min_aspect <= max_aspect, got {min_aspect}, {max_aspect}")
        self.num_patches = self.height * self.width
        self.min_num_patches = min_num_patches
        # Official trainer passes 0.5 * N; official class default None means "no extra cap".
        self.max_num_patches = float("inf") if max_num_patches is None else float(max_num_patches)
        self.log_aspect_range = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
        self.max_attempts = max_attempts

    def draw_blocks(
        self, max_patches_n: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One candidate rectangle per entry: (height, width, top, left), long tensors (n,).

        area ~ U(min_num_patches, max_patches) (Python's `random.uniform(a, b)` = a + (b - a) u,
        so the range flips when max_patches < min_num_patches, as official).
        """
        u_n4 = torch.rand((max_patches_n.shape[0], 4), generator=generator, dtype=torch.float64)
        area_n = self.min_num_patches + (max_patches_n - self.min_num_patches) * u_n4[:, 0]
        log_lo, log_hi = self.log_aspect_range
        aspect_n = torch.exp(log_lo + (log_hi - log_lo) * u_n4[:, 1])
        height_n = torch.round(torch.sqrt(area_n * aspect_n)).long()
        width_n = torch.round(torch.sqrt(area_n / aspect_n)).long()
        # randint(0, H - h) inclusive; meaningless (and unused) where the block does not fit.
        top_n = (u_n4[:, 2] * (self.height - height_n + 1).clamp(min=1)).long()
        left_n = (u_n4[:, 3] * (self.width - width_n + 1).clamp(min=1)).long()
        return height_n, width_n, top_n, left_n

    def __call__(
        self, num_masking_patches_b: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Masks (B, height, width) bool; image b gets <= `num_masking_patches_b[b]` patches."""
        targets_b = torch.as_tensor(num_masking_patches_b, dtype=torch.long).reshape(-1)
        n_images, attempts = targets_b.shape[0], self.max_attempts
        masks_bhw = torch.zeros((n_images, self.height, self.width), dtype=torch.bool)
        counts_b = torch.zeros(n_images, dtype=torch.long)
        active_b = targets_b > 0
        rows_h = torch.arange(self.height)
        cols_w = torch.arange(self.width)
        while bool(active_b.any()):  # one round = at most one new block per active image
            images_n = active_b.nonzero().squeeze(1)
            n_active = images_n.shape[0]
            remaining_n = (targets_b[images_n] - counts_b[images_n]).double()
            max_patches_na = remaining_n.clamp(max=self.max_num_patches)[:, None].expand(
                -1, attempts
            )
            # The mask does not change between failed attempts, so all attempts can be judged
            # at once; the first acceptable one is what official's sequential loop would take.
            shapes = self.draw_blocks(max_patches_na.flatten(), generator)
            height_na, width_na, top_na, left_na = (t.view(n_active, attempts) for t in shapes)
            fits_na = (height_na < self.height) & (width_na < self.width)
            overlap_na = _rectangle_sums(
                masks_bhw[images_n], top_na, left_na, height_na * fits_na, width_na * fits_na
            )
            new_na = height_na * width_na - overlap_na
            accept_na = fits_na & (new_na > 0) & (new_na <= max_patches_na)
            placed_n = accept_na.any(dim=1)
            first_na = accept_na & (accept_na.cumsum(dim=1) == 1)  # first accepted attempt
            choice_n = first_na.float().argmax(dim=1, keepdim=True)
            top_n, left_n, height_n, width_n = (
                t.gather(1, choice_n).squeeze(1) for t in (top_na, left_na, height_na, width_na)
            )
            in_rows_nh = (rows_h >= top_n[:, None]) & (rows_h < (top_n + height_n)[:, None])
            in_cols_nw = (cols_w >= left_n[:, None]) & (cols_w < (left_n + width_n)[:, None])
            block_nhw = in_rows_nh[:, :, None] & in_cols_nw[:, None, :]
            masks_bhw[images_n[placed_n]] |= block_nhw[placed_n]
            counts_b[images_n] += (new_na * first_na).sum(dim=1)
            active_b[images_n[~placed_n]] = False  # every attempt failed: official gives up
            active_b &= counts_b < targets_b
        return masks_bhw


def _rectangle_sums(
    masks_nhw: torch.Tensor,
    top_na: torch.Tensor,
    left_na: torch.Tensor,
    height_na: torch.Tensor,
    width_na: torch.Tensor,
) -> torch.Tensor:
    """Masked-patch count inside A rectangles per image, from a summed-area table: (n, A)."""
    n_images, height, width = masks_nhw.shape
    table = torch.zeros((n_images, height + 1, width + 1), dtype=torch.long)
    table[:, 1:, 1:] = masks_nhw.long().cumsum(dim=1).cumsum(dim=2)
    image_na = torch.arange(n_images)[:, None]
    bottom_na = (top_na + height_na).clamp(max=height)
    right_na = (left_na + width_na).clamp(max=width)
    top_na, left_na = top_na.clamp(max=height), left_na.clamp(max=width)
    return (
        table[image_na, bottom_na, right_na]
        - table[image_na, top_na, right_na]
        - table[image_na, bottom_na, left_na]
        + table[image_na, top_na, left_na]
    )


@dataclass
class IbotMasks:
    """Masks for one batch of global crops plus the flat views the iBOT loss needs."""

    masks_bn: torch.Tensor  # (n_images, n_tokens) bool: `collated_masks`
    mask_indices_m: torch.Tensor  # (M,) long: flat indices into (n_images * n_tokens)
    masks_weight_m: torch.Tensor  # (M,) float32: 1 / (masked patches in that patch's image)
    n_masked_patches: torch.Tensor  # (1,) long, = M
    upperbound: int  # official bound on M, used to size fixed buffers


def sample_mask_targets(
    n_images: int,
    n_tokens: int,
    mask_ratio_min_max: tuple[float, float] = (0.1, 0.5),
    mask_probability: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Requested masked-patch counts (n_images,), unshuffled (masked images first), and upperbound.

    Arithmetic as the official collate: float32 linspace bin edges, int() truncation.
    """
    lo, hi = mask_ratio_min_max
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"mask_ratio_min_max must satisfy 0 <= min <= max <= 1, got {lo}, {hi}")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    n_masked_images = int(n_images * mask_probability)
    edges = torch.linspace(lo, hi, n_masked_images + 1)  # float32, as official
    u = torch.rand(n_masked_images, generator=generator)
    ratios = edges[:-1] + (edges[1:] - edges[:-1]) * u
    targets_b = torch.zeros(n_images, dtype=torch.long)
    targets_b[:n_masked_images] = (n_tokens * ratios).long()
    upperbound = int((n_tokens * edges[1:]).long().sum())
    return targets_b, upperbound


def masks_to_indices_and_weights(masks_bn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices (M,) of masked patches and their weights 1 / (masked patches in their image)."""
    mask_indices_m = masks_bn.flatten().nonzero().flatten()
    per_image_weight_b = 1 / masks_bn.sum(dim=-1).clamp(min=1.0)
    masks_weight_m = per_image_weight_b[mask_indices_m // masks_bn.shape[1]]
    return mask_indices_m, masks_weight_m


def sample_ibot_masks(
    n_images: int,
    grid_size: int | tuple[int, int],
    mask_ratio_min_max: tuple[float, float] = (0.1, 0.5),
    mask_probability: float = 0.5,
    generator: torch.Generator | None = None,
    mask_generator: BlockMaskGenerator | None = None,
) -> IbotMasks:
    """Masks for `n_images` global crops (crop-major order) as the official collate makes them.

    The default mask generator caps one block at half the grid (official trainer setting).
    """
    height, width = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    n_tokens = height * width
    if mask_generator is None:
        mask_generator = BlockMaskGenerator((height, width), max_num_patches=0.5 * n_tokens)
    if (mask_generator.height, mask_generator.width) != (height, width):
        raise ValueError(
            f"mask generator grid {(mask_generator.height, mask_generator.width)} "
            f"!= {(height, width)}"
        )
    targets_b, upperbound = sample_mask_targets(
        n_images, n_tokens, mask_ratio_min_max, mask_probability, generator
    )
    masks_bhw = mask_generator(targets_b, generator)
    masks_bn = masks_bhw[torch.randperm(n_images, generator=generator)].flatten(1)
    return ibot_masks_from(masks_bn, upperbound)


def ibot_masks_from(masks_bn: torch.Tensor, upperbound: int) -> IbotMasks:
    """`IbotMasks` (flat indices, per-patch weights, count) of given (n_images, n_tokens) masks."""
    mask_indices_m, masks_weight_m = masks_to_indices_and_weights(masks_bn)
    return IbotMasks(
        masks_bn=masks_bn,
        mask_indices_m=mask_indices_m,
        masks_weight_m=masks_weight_m,
        n_masked_patches=torch.full((1,), mask_indices_m.shape[0], dtype=torch.long),
        upperbound=upperbound,
    )
