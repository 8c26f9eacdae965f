"""``NeighbourReadout``: every one of the N sensors, on or off, attends over the m active
sensors nearest to it (DESIGN.md section 5, the kriging step), and its compacted
counterpart ``CompactNeighbourReadout``.

The query of sensor i is a projection of its query features (its learned embedding, and
the calendar where known); keys and values are projections of the active sensors'
encodings, each key plus an encoding of its distance to the query (``q_i . (k_j +
e(d_ij))``, the second term an additive score bias). Weights follow the token rule,
``g_j exp(s_ij) / (sum_k g_k exp(s_ik) + exp(s_i0))``, where the last term is a learned
"no neighbour" slot (its key and value are parameters), so that a sensor with no active
sensor near it still gets a defined read-out.

Gated form: over each sensor's candidate list up to its m-th active entry, the inactive
ones in it at weight 0 (their gate): their gate gradient is the first-order gain of
switching them on as that sensor's neighbour, so regrowth sees them. Cost O(N L).
Compacted form: ``ops.nearest_active`` picks the m entries once (again per call when
``alive`` switches sensors off), and the same attention runs over the K active
encodings. Cost O(N m). The two are equal (the equivalence rule).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import ops


def _distance_features(distance: Tensor, scale: float, count: int) -> Tensor:
    """``[N, L, count]`` radial features of distances (padding, inf, gives zeros)."""
    d = torch.nan_to_num(distance / scale, posinf=1e6)
    centres = torch.linspace(0.0, 4.0, count)
    return torch.exp(-((d[..., None] - centres) ** 2))


class NeighbourReadout(nn.Module):
    """Attention read-out of every sensor over its nearest active sensors.

    Args:
        candidates: ``[N, L]`` int64, each sensor's nearest sensors (itself first), -1
            padding (``SensorSpace.candidates``). distance: ``[N, L]`` their distances.
        query_dim: features per sensor of the query input. key_dim: width of the
            encodings read. width: the output width (heads x head width).
        neighbours: m, the active neighbours read. heads: attention heads.
        distance_features: radial features of a distance, for its encoding.
    """

    def __init__(
        self,
        candidates: Tensor,
        distance: Tensor,
        query_dim: int,
        key_dim: int,
        width: int,
        neighbours: int = 8,
        heads: int = 4,
        distance_features: int = 8,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"NeighbourReadout: width {width} is not a multiple of {heads} heads")
        if neighbours < 1:
            raise ValueError(f"NeighbourReadout: neighbours must be >= 1, got {neighbours}")
        cand = torch.as_tensor(candidates, dtype=torch.int64)
        dist = torch.as_tensor(distance, dtype=torch.float32)
        if cand.dim() != 2 or dist.shape != cand.shape:
            raise ValueError("NeighbourReadout: candidates and distance must both be [N, L]")
        self.m, self.heads, self.head_width = int(neighbours), int(heads), width // heads
        self.width = width
        self.register_buffer("candidates", cand)
        self.register_buffer("distance", dist)
        # distance unit: the median distance to the nearest other sensor
        near = dist[:, 1:2][torch.isfinite(dist[:, 1:2]) & (cand[:, 1:2] >= 0)]
        unit = float(near.median()) if near.numel() and float(near.median()) > 0 else 1.0
        self.register_buffer("features", _distance_features(dist, unit, distance_features))
        self.query = nn.Linear(query_dim, width)
        self.key = nn.Linear(key_dim, width)
        self.value = nn.Linear(key_dim, width)
        self.distance_key = nn.Linear(distance_features, width, bias=False)
        self.sink_key = nn.Parameter(torch.zeros(width))
        self.sink_value = nn.Parameter(torch.zeros(width))
        self.out = nn.Linear(width, width)

    @property
    def num_sensors(self) -> int:
        return self.candidates.shape[0]

    # ---------------------------------------------------------------- shared
    def attend(
        self,
        query_in: Tensor,
        r: Tensor,
        index: Tensor,
        valid: Tensor,
        features: Tensor,
        gate: Tensor,
    ) -> Tensor:
        """``[B, N, width]``: every sensor's read-out from the encodings ``r [B, S, R]``
        of its neighbours ``index [N, M]`` (``valid``), whose distance features are
        ``features [N, M, F]``, under ``gate [S]``."""
        b, s = r.shape[0], r.shape[1]
        n, m = index.shape
        h, hw = self.heads, self.head_width
        q = self.query(query_in).expand(b, n, self.width).reshape(b, n, h, hw)
        k = torch.cat([self.key(r), self.sink_key.expand(b, 1, self.width)], 1)
        v = torch.cat([self.value(r), self.sink_value.expand(b, 1, self.width)], 1)
        scale = 1.0 / math.sqrt(hw)
        e = self.distance_key(features).reshape(n, m, h, hw)
        bias = torch.einsum("bnhd,nmhd->bhnm", q, e) * scale  # q . e(d): keys + distance
        bias = torch.cat([bias, bias.new_zeros(b, h, n, 1)], -1).reshape(b * h, n, m + 1)
        sink = index.new_full((n, 1), s)
        index = torch.cat([index, sink], 1)
        valid = torch.cat([valid, valid.new_ones(n, 1)], 1)
        gate = torch.cat([gate.to(r.dtype), gate.new_ones(1).to(r.dtype)])
        q = q.permute(0, 2, 1, 3).reshape(b * h, n, hw)
        k = k.reshape(b, s + 1, h, hw).permute(0, 2, 1, 3).reshape(b * h, s + 1, hw)
        v = v.reshape(b, s + 1, h, hw).permute(0, 2, 1, 3).reshape(b * h, s + 1, hw)
        o = ops.neighbour_attention(q, k, v, index, valid, bias, gate, scale)
        return self.out(o.reshape(b, h, n, hw).permute(0, 2, 1, 3).reshape(b, n, self.width))

    # ---------------------------------------------------------------- gated form
    def forward(self, query_in: Tensor, r: Tensor, gate: Tensor | None) -> Tensor:
        """``query_in [B, N, Q]`` or ``[N, Q]``, ``r [B, N, R]`` (every sensor's encoding),
        ``gate [N]`` (None: every sensor on, whose m neighbours are the first m listed)
        -> ``[B, N, width]``."""
        cand = self.candidates
        if gate is None:
            first = cand[:, : self.m]
            ones = r.new_ones(r.shape[1])
            return self.attend(query_in, r, first.clamp(min=0), first >= 0,
                               self.features[:, : self.m], ones)  # fmt: skip
        listed = cand >= 0
        on = listed & (gate != 0)[cand.clamp(min=0)]
        before = torch.cumsum(on.to(torch.int64), 1) - on.to(torch.int64)
        valid = listed & (before < self.m)  # the list up to its m-th active entry
        return self.attend(query_in, r, cand.clamp(min=0), valid, self.features, gate)

    def compact(self, index: Tensor) -> CompactNeighbourReadout:
        return CompactNeighbourReadout(self, index)


class CompactNeighbourReadout(nn.Module):
    """:class:`NeighbourReadout` from the K active sensors ``index``: each sensor's m
    nearest active ones picked once by ``ops.nearest_active`` (again per call for the
    sensors ``alive`` keeps), attention over the K encodings."""

    def __init__(self, parent: NeighbourReadout, index: Tensor) -> None:
        super().__init__()
        self.parent = parent
        n = parent.num_sensors
        self.register_buffer("index", index)
        position = torch.full((n,), -1, dtype=torch.int64, device=index.device)
        position[index] = torch.arange(index.numel(), device=index.device)
        self.register_buffer("position", position)
        local, valid, feats = self.neighbours(torch.ones_like(index, dtype=torch.bool))
        self.register_buffer("local", local)
        self.register_buffer("valid", valid)
        self.register_buffer("feats", feats)

    def neighbours(self, on: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For the active sensors flagged ``on [K]``: every sensor's neighbours as
        positions among the K (``[N, m]``), their validity, and their distance features."""
        p = self.parent
        active = torch.zeros(p.num_sensors, dtype=torch.bool, device=on.device)
        active[self.index] = on
        nbr, valid = ops.nearest_active(p.candidates, active, p.m)
        local = torch.where(valid, self.position[nbr], 0)
        slot = (p.candidates[:, None, :] == nbr[:, :, None]).to(torch.int64).argmax(-1)
        feats = p.features.gather(1, slot[..., None].expand(-1, -1, p.features.shape[2]))
        return local, valid, feats

    def forward(self, query_in: Tensor, r: Tensor, gate: Tensor, alive: Tensor | None = None):
        """``r [B, K, R]`` of the active sensors, ``gate [K]`` this call's active gates;
        ``alive [K]`` (0: failed) re-picks the neighbours among those still reporting."""
        if alive is None:
            local, valid, feats = self.local, self.valid, self.feats
        else:
            local, valid, feats = self.neighbours(alive != 0)
        return self.parent.attend(query_in, r, local, valid, feats, gate)
