"""The autograd Function shape shared by the core's log-space pieces whose derivatives are closed forms
(``log(1 - p_t)``, ``log|sigma(x) - y|``): a function of ``(log p, log(1-p), y)`` whose subclass
gives ``forward`` and ``partials(lp, ln, y, out)``, the three partial derivatives. Backward, the
forward-mode ``jvp`` and the ``torch.func.vmap`` rule follow from them, made of differentiable tensor
ops, so second derivatives and every ``torch.func`` transform compose."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


class ClosedForm3(torch.autograd.Function):
    """Subclass with ``forward(lp, ln, y)`` and ``partials(lp, ln, y, out) -> (d_lp, d_ln, d_y)`` (static)."""

    generate_vmap_rule = True  # forward and the derivatives are plain tensor ops

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        partials = cls.partials

        def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
            ctx.save_for_backward(*inputs, output)
            ctx.save_for_forward(*inputs, output)

        def backward(ctx, g: Tensor) -> tuple:
            return tuple(g * d for d in partials(*ctx.saved_tensors))

        def jvp(ctx, *tangents: Optional[Tensor]) -> Tensor:
            return sum(d * t for d, t in zip(partials(*ctx.saved_tensors), tangents) if t is not None)

        cls.setup_context, cls.backward, cls.jvp = (staticmethod(setup_context), staticmethod(backward),
                                                    staticmethod(jvp))
