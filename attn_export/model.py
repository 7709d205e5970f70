"""The AttentionLSTM family: (Conv1d front-end) -> LSTM -> a score per step -> masked softmax over time
-> attention-weighted sum -> head.

    model = AttentionLSTM(ModelConfig(bidirectional=True), input_size=12, num_outputs=9)
    logits, attention = model(x, lengths)        # x (B, T, F) raw features, lengths (B,) int64

Steps at or past a sequence's length are padding: they are zeroed on entry, get exactly zero attention
weight, and (bidirectional) never reach the backward direction, so a sequence gives the same outputs
alone as inside a padded batch. The normalisation statistics are buffers, so the exported graph takes
raw features. No Python control flow depends on tensor values: the model exports with dynamic batch
and sequence axes.

The exported form is built from the plainest ONNX constructs, so that every runtime reads it the same
way: one ``LSTM`` node per direction per layer with no ``sequence_lens`` (right padding never reaches a
valid step of the forward direction; the backward direction is a forward LSTM over each sequence
reversed within its length, by a ``Gather`` of row indices computed from ``lengths``), masks applied with
``Where`` against scalar fills (no ``ConstantOfShape``), no ``GatherElements``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ModelConfig

__all__ = ["MASK_FILL", "STATE_PARTS", "AttentionLSTM", "last_steps", "masked_softmax", "reversal_index",
           "reverse_padded", "valid_max"]

# Score given to padded steps once the valid ones are shifted to a maximum of 0 (``masked_softmax``).
# Finite on purpose: -inf turns into NaN in FP16 arithmetic (inf - inf), while -1e4 fits FP16 (max 65504)
# and exp(-1e4) underflows to exactly 0 in FP16 and FP32. Unshifted, a score bias of -3e4 (an imported
# model's; softmax ignores it) put every valid score below the fill and all the weight on the padding.
MASK_FILL = -1.0e4


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over time (dim 1) of (B, T) scores, exactly 0 where ``mask`` is False; finite in FP16. The
    valid scores are shifted so that their largest is 0 (softmax does not change), so the fill lies below
    them whatever their scale; each row needs one valid step."""
    return torch.softmax(torch.where(mask, scores - valid_max(scores, mask), MASK_FILL), dim=1)


def valid_max(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 1): the largest of each row's valid (B, T) scores, with no -inf (a row's smallest score stands in
    for its padding); a row with no valid step gets its largest score."""
    return torch.where(mask, scores, scores.amin(1, keepdim=True)).amax(1, keepdim=True)


def _flat_rows(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T): b * T + t, the row of step t of sequence b in a (B * T, D) view; from one range over B * T,
    because tract cannot fold a product of a tensor and the symbolic T."""
    return torch.arange(lengths.shape[0] * steps, device=lengths.device).reshape(-1, steps)


def reversal_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B * T,) row indices into a (B * T, D) view that reverse each sequence within its own length and
    leave its padding in place: row b, step t reads step ``lengths[b] - 1 - t`` while t < lengths[b]."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)  # (1, T)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    within = torch.where(t <= last, last - t, t)  # (B, T)
    return (_flat_rows(lengths, steps) + (within - t)).reshape(-1)


def last_steps(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, D): each sequence's last valid step of a batch-first (B, T, D) tensor, by a plain row ``Gather``
    (exact; a one-hot product would read the whole tensor twice, and onnx.reference's GatherElements
    cannot index an axis longer than 64)."""
    rows = _flat_rows(lengths, x.shape[1])[:, 0] + lengths - 1  # (B,)
    return torch.index_select(x.reshape(-1, x.shape[2]), 0, rows)


def reverse_padded(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of a batch-first (B, T, D) tensor within its length (``reversal_index``) by a
    plain row ``Gather``: exported, it is one Gather that every runtime reads alike."""
    return torch.index_select(x.reshape(-1, x.shape[2]), 0, index).reshape(x.shape)


# the first name of every key of AttentionLSTM's state_dict, whatever its config (a test holds it to the model)
STATE_PARTS = frozenset({"mean", "std", "convs", "lstm", "score", "key", "query_proj", "energy", "query", "head"})


class AttentionLSTM(nn.Module):
    """LSTM with attention pooling over time; see the module docstring."""

    def __init__(
        self,
        config: ModelConfig,
        input_size: int,
        num_outputs: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.input_size = input_size
        self.num_outputs = num_outputs
        # How a bidirectional LSTM keeps padding out of its backward direction. "packed" uses
        # pack_padded_sequence (fast in training, cuDNN on a GPU); "reversed" reverses each sequence
        # within its length around forward-only passes: what export traces, with either exporter, so that
        # no LSTM node takes a runtime sequence_lens. Both compute the same function (tested).
        self.bidirectional_impl = "packed"
        self.register_buffer("mean", torch.tensor(mean if mean is not None else [0.0] * input_size))
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0] * input_size))

        convs: list[nn.Module] = []
        channels = input_size
        for out_channels, kernel in zip(config.conv_channels, config.conv_kernel_sizes):
            # odd kernel + padding k // 2 keeps the length, so lengths and the mask stay valid
            convs.append(nn.Conv1d(channels, out_channels, kernel, padding=kernel // 2))
            channels = out_channels
        self.convs = nn.ModuleList(convs)

        self.lstm = nn.LSTM(
            channels,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        dim = config.hidden_size * (2 if config.bidirectional else 1)
        self.context_size = dim
        if config.attention == "linear":
            self.score = nn.Linear(dim, 1)
        else:
            self.key = nn.Linear(dim, config.attention_dim, bias=False)
            self.query_proj = nn.Linear(dim, config.attention_dim)
            self.energy = nn.Linear(config.attention_dim, 1, bias=False)
            if config.query == "learned":
                self.query = nn.Parameter(torch.zeros(dim))
        self.head: nn.Module = nn.Identity() if config.head == "none" else nn.Linear(dim, num_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
        mask = steps < lengths.unsqueeze(1)  # (B, T)
        keep = mask.unsqueeze(2)  # (B, T, 1)
        # zero the padding first: whatever it held cannot reach a valid step, in any precision
        h = torch.where(keep, (x - self.mean) / self.std, 0.0)  # (B, T, F)
        for conv in self.convs:
            h = torch.relu(conv(h.transpose(1, 2))).transpose(1, 2)  # (B, T, C)
            h = torch.where(keep, h, 0.0)  # a kernel straddling the end saw zeros only

        out = self._recur(h, lengths)  # (B, T, D)

        if self.config.attention == "linear":
            scores = self.score(out).squeeze(2)  # (B, T)
        else:
            if self.config.query == "learned":
                q = self.query.unsqueeze(0)  # (1, D)
            else:
                q = last_steps(out, lengths)  # (B, D), the last valid output
            energy = torch.tanh(self.key(out) + self.query_proj(q).unsqueeze(1))  # (B, T, A)
            scores = self.energy(energy).squeeze(2)  # (B, T)
        weights = masked_softmax(scores, mask)  # (B, T), exactly 0 on padding
        context = torch.bmm(weights.unsqueeze(1), out).squeeze(1)  # (B, D)
        return self.head(context), weights

    def _recur(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The LSTM over (B, T, C) -> (B, T, D), with padding kept out of every direction."""
        if not self.config.bidirectional:
            # causal: steps after a sequence's end cannot change its valid outputs
            if self.bidirectional_impl == "reversed" and self.config.num_layers > 1:  # exported: one node per
                return self._recur_reversed(h, lengths)  # layer, each with its own zero state (tract
            out, _ = self.lstm(h)  # mis-resolves the batch of one stacked zero state sliced per layer)
            return out
        if self.bidirectional_impl == "packed":
            packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
            return out
        return self._recur_reversed(h, lengths)

    def _recur_reversed(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The LSTM as forward-only passes, one per layer and direction, each from its own zero state; a
        backward one runs on length-reversed sequences."""
        hidden = self.config.hidden_size
        zeros = h.new_zeros(1, h.shape[0], hidden)  # (1, B, H)
        index = reversal_index(lengths, h.shape[1])  # (B * T,)
        for layer in range(self.config.num_layers):
            directions = []
            for suffix in ("", "_reverse") if self.config.bidirectional else ("",):
                params = [
                    getattr(self.lstm, f"{name}_l{layer}{suffix}")
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                inp = h if suffix == "" else reverse_padded(h, index)
                out = torch._VF.lstm(inp, (zeros, zeros), params, True, 1, 0.0, False, False, True)[0]
                directions.append(out if suffix == "" else reverse_padded(out, index))
            h = torch.cat(directions, dim=2)  # (B, T, 2H)
        return h


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None: left alone) inside the block, restored after.
    train and export run their small recurrent steps on one: on 2 cores one thread measured up to 9x faster
    per training step than two, and with another process busy on the cores, torch's spinning OpenMP threads
    made export 7x slower (30 s against 4.3 s for one thread; README, Export, "Threads")."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
