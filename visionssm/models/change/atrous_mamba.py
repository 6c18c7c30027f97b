"""AtrousMambaBCD: binary change detection with atrous-window selective scans in a Siamese VMamba encoder.

Our design after Wang et al., "AtrousMamba: An Atrous-Window Scanning Visual State Space Model for Remote Sensing
Change Detection" (arXiv 2507.16172; the paper calls the binary framework AWMambaBCD). The paper has no public code;
only its abstract was available to us, so everything below that the abstract does not state is our choice.

Architecture (``spatial_dims=2``; x1, x2: (B, in_channels, H, W)):

- **Encoder:** MambaBCD's Siamese VMamba-v2 (one set of weights for both dates, per-stage output LayerNorms;
  features (B, dims[i], H / 2^(i+2), W / 2^(i+2))) in which every mixer scans its feature map with an **atrous-window
  scan** (``scan_plan("atrous", (H_i, W_i), rate=r, window=w)``): the tokens are split into the r x r phases
  (i mod r, j mod r); each phase's sub-grid ``x[p::r, q::r]`` is walked window by window (w x w sub-grid windows,
  i.e. dilated windows spanning (w - 1) * r + 1 pixels, smaller at the edges), raster order inside a window. The
  rate of block j of a stage is ``atrous_rates[j % len(atrous_rates)]``.
- **Change decoder:** MambaBCD's :class:`~visionssm.models.change.mamba_cd.ChangeDecoder` (parallel / cross /
  sequential spatio-temporal VSS blocks per scale, FPN merge), unchanged.
- **Head:** 1x1 conv to ``out_channels``, logits bilinearly upsampled to the input size.

Design choices:

- *Stated in the paper (abstract):* a VSS module with an atrous-window selective scan (AWVSS) whose scanning range
  grows gradually with adjustable rates, so that tokens adjacent in the sequence are close in the image (fine local
  detail) while the model keeps global context; Siamese end-to-end Mamba frameworks for binary (AWMambaBCD) and
  semantic (AWMambaSCD) change detection.
- *Rates grow block by block and restart at every stage* (default 1, 2, 3): the "gradual expansion of the scanning
  range" read as a sawtooth schedule, as hybrid dilated convolutions do. Rate 1 is the plain window scan (the finest
  detail); rates 1-2-3 rather than 1-2-4 share no common factor, the usual guard against gridding.
- *Window 7* (LocalMamba's and Swin's window), on the dilated sub-grid.
- *Two directions per mixer:* the atrous-window order and its reversal, summed (``reverse=True``, merge "sum"). A
  causal scan only sees tokens before it; the reversal gives each token context from both sides of its window.
  Column-major windows are not defined for this scan, so a mixer has K = 2 S6 parameter sets (VMamba's cross-scan:
  4). The scan still visits all H * W tokens with the state carried across windows and phases, so every mixer mixes
  globally; no padding tokens enter the sequence, any H, W works.
- *Backbone sizes:* MambaCD's VMamba-v2 Tiny / Small / Base (the paper compares against ChangeMamba and names its
  frameworks after it); d_state 1, ssm_ratio 2, MLP ratio 4.
- *Decoder:* MambaCD's change decoder with VMamba's cross-scan: its cross and sequential arrangements are defined by
  row- and column-major scans over H x 2W grids (dates alternating, all of T1 then T2), which a window scan would
  reorder.
- *Pre-training:* :meth:`AtrousMambaBCD.load_encoder_checkpoint` loads VMamba (cross-scan, K = 4) weights by keeping
  the S6 parameters of the row-major direction and its reversal for our two directions.
- The loss is not part of the model (MambaCD trains BCD with cross-entropy + 0.75 Lovasz-softmax).

Inputs and errors as MambaBCD: ``model(x1, x2)`` or ``model(x)`` with x (B, 2, C, H, W); two dates of different
shapes raise an ``InputError`` naming both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.models.backbones.vmamba import checkpoint_filter_fn
from visionssm.models.registry import register

from .mamba_cd import ChangeDecoder, _SiameseVMamba

__all__ = ["AtrousMambaBCD"]

# S6 parameters stacked per direction (leading axis K or K * d_inner) in VMamba's layout.
_PER_DIRECTION = ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")
# VMamba's cross-scan directions are (row, col, row_rev, col_rev); ours are (atrous window, its reversal).
_FROM_CROSS = [0, 2]


def _checked_rates(rates: Sequence[int]) -> tuple[int, ...]:
    ok = isinstance(rates, Sequence) and len(rates) > 0
    ok = ok and all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates)
    if not ok:
        raise InputError(f"AtrousMambaBCD: atrous_rates={rates!r} must be a non-empty sequence of integers >= 1")
    return tuple(rates)


@register("atrous_mamba_bcd", "change_detection")
class AtrousMambaBCD(_SiameseVMamba):
    """AtrousMamba binary change detector (AWMambaBCD): Siamese VMamba-v2 encoder with atrous-window scans.

    Args:
        spatial_dims: must be 2.
        in_channels: channels of each date's image.
        out_channels: change classes (2: no change / change).
        variant: "tiny", "small" or "base" (MambaCD's encoder dims, depths and drop path).
        dims, depths, drop_path_rate: override the variant's encoder sizes (e.g. ``dims=16, depths=(1, 1, 1, 1)``).
        atrous_rates: dilation rates of the encoder blocks; block j of every stage uses
            ``atrous_rates[j % len(atrous_rates)]``.
        atrous_window: window side on the dilated sub-grid (tokens).
        decoder_channels: decoder width (128). decoder_drop_path: stochastic depth of the decoder's VSS blocks (0.1).
        d_state, ssm_ratio, mlp_ratio: VSS block sizes, encoder and decoder (1, 2.0, 4.0).
        backend: selective-scan backend.

    Shapes: ``model(x1, x2)`` with x1, x2 (B, in_channels, H, W), or ``model(x)`` with x (B, 2, in_channels, H, W)
    -> logits (B, out_channels, H, W).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        variant: str = "tiny",
        dims: int | Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        drop_path_rate: float | None = None,
        atrous_rates: Sequence[int] = (1, 2, 3),
        atrous_window: int = 7,
        decoder_channels: int = 128,
        decoder_drop_path: float = 0.1,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        mlp_ratio: float = 4.0,
        backend: str = "auto",
    ) -> None:
        rates = _checked_rates(atrous_rates)
        super().__init__(
            spatial_dims, in_channels, variant, dims, depths, drop_path_rate, decoder_channels, decoder_drop_path,
            d_state, ssm_ratio, mlp_ratio, None, backend, encoder_scan="atrous",
            encoder_scan_options=dict(window=atrous_window, reverse=True),
            encoder_block_scan_options=[{"rate": rate} for rate in rates],
        )  # fmt: skip
        self.atrous_rates = rates
        self.atrous_window = atrous_window
        self.encoder_rates = [
            [block.mixer.scan_options["rate"] for block in stage.blocks] for stage in self.encoder.stages
        ]
        self.out_channels = out_channels
        self.decoder = ChangeDecoder(self.encoder_dims, decoder_channels, **self.block_kwargs)
        self.head = nn.Conv2d(decoder_channels, out_channels, 1)

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        x1, x2 = self.split_inputs(x1, x2)
        pre, post = self.encode_pair(x1, x2)
        logits = self.head(self.decoder(pre, post))
        return F.interpolate(logits, size=x1.shape[-2:], mode="bilinear", align_corners=False)

    def load_encoder_checkpoint(self, state_dict: Mapping[str, Tensor], strict: bool = True) -> None:
        """Load VMamba (ImageNet) weights into the encoder, as :meth:`MambaBCD.load_encoder_checkpoint`.

        A cross-scan checkpoint has 4 S6 parameter sets per mixer (row, col, row_rev, col_rev); our mixers have 2
        (atrous window, its reversal), which take the row-major and reversed row-major sets. Checkpoints with 2 sets
        (e.g. saved from this model's encoder) load unchanged.
        """
        mapped = checkpoint_filter_fn(state_dict, self.encoder)
        own = self.encoder.state_dict()
        adapted = {}
        for key, value in mapped.items():
            target = own.get(key)
            if (
                target is not None
                and key.rsplit(".", 1)[-1] in _PER_DIRECTION
                and value.shape[0] == 2 * target.shape[0]
                and value.shape[1:] == target.shape[1:]
            ):
                value = value.unflatten(0, (4, -1))[_FROM_CROSS].flatten(0, 1)
            adapted[key] = value
        super().load_encoder_checkpoint(adapted, strict=strict)
