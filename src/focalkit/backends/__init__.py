"""How an op is computed. ``eager`` is the reference: PyTorch tensor ops on the closed forms of
:mod:`focalkit.core`, wrapped in ``torch.autograd.Function`` so that the gradient is computed in
the forward pass and backward only scales it. Faster backends must reproduce it exactly.
"""

from focalkit.backends import eager

__all__ = ["eager"]
