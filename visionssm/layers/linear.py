"""Per-position linear layer on channels-first tensors (a 1x1 convolution with ``nn.Linear`` parameters)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PointwiseLinear(nn.Linear):
    """``nn.Linear`` applied at every spatial position of a channels-first tensor.

    Equivalent to a 1x1 (x1) convolution, but the weight keeps the ``nn.Linear`` layout (out, in), so it initialises
    like a Linear and loads VMamba's ``Linear2d`` / ``nn.Linear`` weights unchanged.

    Shapes: x (B, C_in, *spatial) -> (B, C_out, *spatial).
    """

    def forward(self, x: Tensor) -> Tensor:
        batch, _, *spatial = x.shape
        y = F.conv1d(x.reshape(batch, x.shape[1], -1), self.weight[:, :, None], self.bias)
        return y.view(batch, self.out_features, *spatial)
