"""Report generation from a frozen encoder: the paper's Table 5 set-up, small enough for a CPU.

The paper feeds each encoder's patch tokens through a two-layer MLP projector into Vicuna-7B and
trains it to write the Findings section (LLaVA-style). Here the projector is the same and the
language model is a small GPT-2-shaped decoder (transformers' `GPT2LMHeadModel`, randomly
initialised: no 7B model runs offline on 2 cores), trained on the phantoms' reports with the
encoder frozen. Words come from a `tokenizers` word-level vocabulary of the training reports.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"


class ReportTokenizer:
    """Lower-case word-level tokens (words and punctuation) of report text, and back to text."""

    def __init__(self, texts: Sequence[str]) -> None:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        if not texts:
            raise ValueError("ReportTokenizer needs at least one training text")
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+ | [^\w\s]+
        trainer = trainers.WordLevelTrainer(special_tokens=[PAD, BOS, EOS, UNK])
        tokenizer.train_from_iterator(list(texts), trainer)
        self._tokenizer = tokenizer
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (
            tokenizer.token_to_id(t) for t in (PAD, BOS, EOS, UNK)
        )

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """[BOS] word ids [EOS]."""
        return [self.bos_id, *self._tokenizer.encode(text).ids, self.eos_id]

    def words(self, text: str) -> list[str]:
        """The lower-case words and punctuation marks of `text` (what BLEU and ROUGE count)."""
        return [word for word, _ in self._tokenizer.pre_tokenizer.pre_tokenize_str(text.lower())]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` up to the first [EOS], special tokens dropped, punctuation re-attached."""
        words = []
        for i in ids:
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self._tokenizer.id_to_token(int(i)))
        return detokenize(words)


def detokenize(words: Sequence[str]) -> str:
    """Words and punctuation back to text: "frontal ( pa ) view ." -> "frontal (pa) view."."""
    text = " ".join(words)
    text = re.sub(r"\s+([.,:;)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    return re.sub(r"\s*-\s*", "-", text)


def image_tokens(grids_nchw: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, h, w) patch grids -> (N, side*side, C') tokens in raster order.

    A one-channel grid (raw pixels) is cut into side x side cells, each cell's pixels one token
    (C' = C * (h / side)^2); an encoder's grid is average-pooled to side x side (C' = C).
    """
    grids = grids_nchw.float()
    n, c, h, w = grids.shape
    if c == 1:
        if h % side or w % side or h != w:
            raise ValueError(f"a {h}x{w} pixel grid does not cut into {side}x{side} cells")
        grids = F.pixel_unshuffle(grids, h // side)
    elif (h, w) != (side, side):
        grids = F.adaptive_avg_pool2d(grids, side)
    return grids.flatten(2).transpose(1, 2).contiguous()


@dataclass(frozen=True)
class ReportTrainConfig:
    """The decoder's size and training (defaults: minutes on 2 CPU cores for ~1,000 reports)."""

    grid_side: int = 4  # image tokens per side after pooling (the paper: every patch token)
    width: int = 128
    layers: int = 2
    heads: int = 4
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    max_new_tokens: int = 128
    # greedy decoding of a small decoder loops ("No effusion. No effusion. ..."); a report never
    # repeats a sentence, so no 4-gram may come twice (the paper's Vicuna-7B needs no such rule)
    no_repeat_ngram_size: int = 4
    seed: int = 0
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReportGenerator(nn.Module):
    """Image tokens -> two-layer MLP projector -> prefix of a causal decoder that writes text."""

    def __init__(
        self,
        token_dim: int,
        n_image_tokens: int,
        vocab_size: int,
        max_text: int,
        config: ReportTrainConfig,
        pad_id: int,
        bos_id: int,
        eos_id: int,
    ) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(token_dim, config.width), nn.GELU(), nn.Linear(config.width, config.width)
        )
        decoder_config = GPT2Config(
            vocab_size=vocab_size,
            n_positions=n_image_tokens + max_text,
            n_embd=config.width,
            n_layer=config.layers,
            n_head=config.heads,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        self.decoder = GPT2LMHeadModel(decoder_config)
        self.n_image_tokens = n_image_tokens
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def _prefix(self, tokens_bpc: torch.Tensor) -> torch.Tensor:
        return self.projector(tokens_bpc)  # (B, P, D)

    def loss(self, tokens_bpc: torch.Tensor, ids_bt: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each next word given the image and the words before it."""
        text_btd = self.decoder.transformer.wte(ids_bt)
        embeds = torch.cat([self._prefix(tokens_bpc), text_btd], dim=1)
        text_mask = ids_bt != self.pad_id
        image_mask = torch.ones(ids_bt.shape[0], self.n_image_tokens, dtype=torch.bool)
        mask = torch.cat([image_mask.to(ids_bt.device), text_mask], dim=1).long()
        logits = self.decoder(inputs_embeds=embeds, attention_mask=mask).logits
        # the logit at text position t predicts word t + 1; padding and the image predict nothing
        text_logits = logits[:, self.n_image_tokens : -1]
        targets = ids_bt[:, 1:].masked_fill(ids_bt[:, 1:] == self.pad_id, -100)
        return F.cross_entropy(text_logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    @torch.inference_mode()
    def generate(
        self, tokens_bpc: torch.Tensor, max_new_tokens: int, no_repeat_ngram_size: int = 0
    ) -> torch.Tensor:
        """Greedy word ids (B, <= max_new_tokens) after [BOS], padded after [EOS]."""
        from transformers.utils import logging as transformers_logging

        bos = torch.full((tokens_bpc.shape[0], 1), self.bos_id, device=tokens_bpc.device)
        embeds = torch.cat([self._prefix(tokens_bpc), self.decoder.transformer.wte(bos)], dim=1)
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()  # its padding advice concerns input_ids
        try:
            with warnings.catch_warnings():
                # the prompt is image embeddings: n-grams can only repeat in the generated words
                warnings.filterwarnings("ignore", message="Passing `no_repeat_ngram_size`")
                return self.decoder.generate(
                    inputs_embeds=embeds,
                    attention_mask=torch.ones(
                        embeds.shape[:2], dtype=torch.long, device=embeds.device
                    ),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    no_repeat_ngram_size=no_repeat_ngram_size,
                    eos_token_id=self.eos_id,
                    pad_token_id=self.pad_id,
                )
        finally:
            transformers_logging.set_verbosity(verbosity)


def _pad(sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    return torch.tensor([[*s, *[pad_id] * (width - len(s))] for s in sequences])


def _standardiser(train_npc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training tokens (as the probes standardise features)."""
    flat = train_npc.flatten(0, 1)
    return flat.mean(0), flat.std(0).clamp_min(1e-6)


def train_report_generator(
    train_tokens: torch.Tensor,
    train_texts: Sequence[str],
    val_tokens: torch.Tensor,
    val_texts: Sequence[str],
    config: ReportTrainConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit projector + decoder on (N, P, C) image tokens and their reports; keep the epoch of
    lowest validation loss. Returns {"model", "tokenizer", "scale", "history"}."""
    from tqdm.auto import tqdm

    if len(train_tokens) != len(train_texts) or len(val_tokens) != len(val_texts):
        raise ValueError("image tokens and report texts differ in number")
    torch.manual_seed(config.seed)
    tokenizer = ReportTokenizer(train_texts)
    train_ids = [tokenizer.encode(t) for t in train_texts]
    val_ids = _pad([tokenizer.encode(t) for t in val_texts], tokenizer.pad_id)
    mean, std = _standardiser(train_tokens)
    train_x = (train_tokens - mean) / std
    val_x = (val_tokens - mean) / std
    # positions for the longest report either split holds, and for a generated one
    max_text = max(max(len(s) for s in train_ids), val_ids.shape[1], config.max_new_tokens + 1)
    model = ReportGenerator(
        train_x.shape[2], train_x.shape[1], tokenizer.vocab_size, max_text, config,
        tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id,
    ).to(config.device)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(config.seed)
    history, best = [], (math.inf, None)
    for epoch in tqdm(range(config.epochs), desc="report decoder", disable=not progress):
        model.train()
        order = torch.randperm(len(train_ids), generator=generator).tolist()
        losses = []
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            ids = _pad([train_ids[i] for i in rows], tokenizer.pad_id).to(config.device)
            loss = model.loss(train_x[rows].to(config.device), ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        val_loss = _evaluate_loss(model, val_x, val_ids, config)
        history.append(
            {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss}
        )
        if val_loss < best[0]:
            best = (val_loss, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    model.eval()
    return {"model": model, "tokenizer": tokenizer, "scale": (mean, std), "history": history}


@torch.inference_mode()
def _evaluate_loss(
    model: ReportGenerator, x: torch.Tensor, ids: torch.Tensor, config: ReportTrainConfig
) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(x), config.batch_size):
        rows = slice(start, start + config.batch_size)
        batch_ids = ids[rows].to(config.device)
        n_words = int((batch_ids[:, 1:] != model.pad_id).sum())
        total += model.loss(x[rows].to(config.device), batch_ids).item() * n_words
        count += n_words
    return total / count


def generate_reports(
    fitted: dict[str, Any],
    tokens: torch.Tensor,
    config: ReportTrainConfig,
    *,
    progress: bool = True,
) -> list[str]:
    """Greedy reports for (N, P, C) image tokens from `train_report_generator`'s result."""
    from tqdm.auto import tqdm

    model, tokenizer = fitted["model"], fitted["tokenizer"]
    mean, std = fitted["scale"]
    x = (tokens - mean) / std
    texts: list[str] = []
    for start in tqdm(range(0, len(x), config.batch_size), desc="reports", disable=not progress):
        rows = x[start : start + config.batch_size].to(config.device)
        for ids in model.generate(
            rows, config.max_new_tokens, config.no_repeat_ngram_size
        ).tolist():
            texts.append(tokenizer.decode(ids))
    return texts
