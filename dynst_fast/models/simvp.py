"""A SimVP-style CNN forecaster (Gao et al., CVPR 2022): a convolutional encoder applied
to every frame (two stride-2 convolutions), a temporal translator on the frames stacked
along channels at 1/4 resolution (residual 3x3 convolutions), and a convolutional decoder
(two transposed convolutions, the second also fed the last input frame's 1/2-resolution
encoding, SimVP's skip).

``forward(x[B, t_in, C, H, W]) -> [B, t_out, C, H, W]``: the forecast is the last input
frame plus the decoded change. H and W are zero-padded up to a multiple of 4 inside
and the padding is cropped off the output. It has no gated form: use it through
``InputMasked`` (input times the per-patch gate), which gives accuracy and no speedup.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masked import InputMasked
from .registry import register_backbone


@dataclass
class SimVPOptions:
    """``hidden``: channels per frame in the encoder and decoder; ``translator``: channels
    of the translator's hidden layers; ``translator_depth``: its residual 3x3 layers."""

    hidden: int = 16
    translator: int = 64
    translator_depth: int = 3


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    groups = 2 if c_out % 2 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(groups, c_out),
        nn.SiLU(),
    )


def _up(c_in: int, c_out: int) -> nn.Sequential:
    groups = 2 if c_out % 2 == 0 else 1
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
        nn.GroupNorm(groups, c_out),
        nn.SiLU(),
    )


class SimVP(nn.Module):
    """Encoder / translator / decoder CNN.

    Args:
        height, width: field size; t_in, t_out: steps in and out; channels: C.
        hidden: channels per frame in the encoder and decoder.
        translator: channels of the translator's hidden layers; translator_depth: its 3x3
            conv layers (each residual).
    """

    def __init__(
        self,
        height: int,
        width: int,
        t_in: int,
        t_out: int,
        channels: int = 1,
        hidden: int = SimVPOptions.hidden,
        translator: int = SimVPOptions.translator,
        translator_depth: int = SimVPOptions.translator_depth,
    ) -> None:
        super().__init__()
        self.height, self.width = int(height), int(width)
        self.t_in, self.t_out, self.channels, self.hidden = t_in, t_out, channels, hidden
        self.enc1 = _conv(channels, hidden, 2)
        self.enc2 = _conv(hidden, hidden, 2)
        self.trans_in = _conv(t_in * hidden, translator)
        self.trans = nn.ModuleList(_conv(translator, translator) for _ in range(translator_depth))
        self.trans_out = nn.Conv2d(translator, t_out * hidden, 1)
        self.dec = _up(hidden, hidden)
        self.out = nn.ConvTranspose2d(2 * hidden, channels, 4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        want = (self.t_in, self.channels, self.height, self.width)
        if x.dim() != 5 or tuple(x.shape[1:]) != want:
            msg = f"SimVP: x must have shape [B, {', '.join(map(str, want))}], got {tuple(x.shape)}"
            if x.dim() == 5 and x.shape[2] != self.channels:
                msg += f" (the model has {self.channels} channel(s), the data {x.shape[2]})"
            raise ValueError(msg)
        b, t, c, h, w = x.shape
        ph, pw = -h % 4, -w % 4
        frames = F.pad(x, (0, pw, 0, ph)).reshape(b * t, c, h + ph, w + pw)
        skip = self.enc1(frames)  # [B*T, hidden, H/2, W/2]
        z = self.enc2(skip)  # [B*T, hidden, H/4, W/4]
        hh, ww = z.shape[-2:]
        z = self.trans_in(z.reshape(b, t * self.hidden, hh, ww))
        for layer in self.trans:
            z = z + layer(z)
        z = self.trans_out(z).reshape(b * self.t_out, self.hidden, hh, ww)
        up = self.dec(z)  # [B*t_out, hidden, H/2, W/2]
        last_skip = skip.reshape(b, t, *skip.shape[1:])[:, -1:]
        last_skip = last_skip.expand(b, self.t_out, -1, -1, -1).reshape_as(up)
        delta = self.out(torch.cat([up, last_skip], dim=1))
        delta = delta.reshape(b, self.t_out, c, h + ph, w + pw)
        return x[:, -1:] + delta[..., :h, :w]


@register_backbone(
    "simvp",
    options=SimVPOptions,
    space="grid",
    width="hidden",
    summary="SimVP-style CNN, gated through InputMasked: accuracy only, no speedup",
)
def build_simvp(space, t_in, t_out, channels, **options) -> InputMasked:
    g = space.grid
    return InputMasked(SimVP(g.height, g.width, t_in, t_out, channels, **options), space, t_in,
                       t_out, channels)  # fmt: skip
