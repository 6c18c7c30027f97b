"""Session-wide test setup.

Without CUDA, Triton kernels run in Triton's CPU interpreter. TRITON_INTERPRET must be set before triton is first
imported (``import visionssm`` imports it through timm and the models), so it is set here, before any test module.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
