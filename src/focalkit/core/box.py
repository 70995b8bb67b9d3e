r"""IoU-family geometry for axis-aligned boxes :math:`(x_1, y_1, x_2, y_2)`.

Widths and heights are clamped at 0, so a degenerate box (zero or negative extent) has area 0;
the intersection is :math:`\max(0,\min x_2-\max x_1)\max(0,\min y_2-\max y_1)`. For valid boxes this
is torchvision's geometry exactly (it masks instead of clamping). The enclosing box :math:`C` has
width :math:`c_w` and height :math:`c_h`; :math:`\rho^2` is the squared distance between centres.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class BoxGeometry(NamedTuple):
    inter: Tensor
    union: Tensor
    w1: Tensor
    h1: Tensor
    w2: Tensor
    h2: Tensor
    cw: Tensor
    ch: Tensor
    rho2: Tensor


def geometry(b1: Tensor, b2: Tensor) -> BoxGeometry:
    x1, y1, x2, y2 = b1.unbind(-1)
    u1, v1, u2, v2 = b2.unbind(-1)
    w1, h1 = (x2 - x1).clamp(min=0), (y2 - y1).clamp(min=0)
    w2, h2 = (u2 - u1).clamp(min=0), (v2 - v1).clamp(min=0)
    iw = (torch.minimum(x2, u2) - torch.maximum(x1, u1)).clamp(min=0)
    ih = (torch.minimum(y2, v2) - torch.maximum(y1, v1)).clamp(min=0)
    inter = iw * ih
    union = w1 * h1 + w2 * h2 - inter
    cw = torch.maximum(x2, u2) - torch.minimum(x1, u1)
    ch = torch.maximum(y2, v2) - torch.minimum(y1, v1)
    rho2 = ((x1 + x2 - u1 - u2) ** 2 + (y1 + y2 - v1 - v2) ** 2) / 4
    return BoxGeometry(inter, union, w1, h1, w2, h2, cw, ch, rho2)


def iou(g: BoxGeometry, eps: float) -> Tensor:
    return g.inter / (g.union + eps)


def giou_penalty(g: BoxGeometry, eps: float) -> Tensor:
    area_c = g.cw * g.ch
    return (area_c - g.union) / (area_c + eps)


def diou_penalty(g: BoxGeometry, eps: float) -> Tensor:
    return g.rho2 / (g.cw ** 2 + g.ch ** 2 + eps)


def ciou_v(g: BoxGeometry) -> Tensor:
    r""":math:`v=\frac{4}{\pi^2}(\arctan(w_2/h_2)-\arctan(w_1/h_1))^2`; sizes floored at 1e-12 so a
    degenerate box gives a finite value and gradient (torchvision divides by a zero height)."""
    tiny = 1e-12
    a2 = torch.atan(g.w2.clamp(min=tiny) / g.h2.clamp(min=tiny))
    a1 = torch.atan(g.w1.clamp(min=tiny) / g.h1.clamp(min=tiny))
    return (4 / math.pi ** 2) * (a2 - a1) ** 2


def eiou_penalty(g: BoxGeometry, eps: float) -> Tensor:
    r"""Zhang et al.: :math:`\rho^2/(c_w^2+c_h^2)+(w_1-w_2)^2/c_w^2+(h_1-h_2)^2/c_h^2`."""
    cw2, ch2 = g.cw ** 2, g.ch ** 2
    return g.rho2 / (cw2 + ch2 + eps) + (g.w1 - g.w2) ** 2 / (cw2 + eps) + (g.h1 - g.h2) ** 2 / (ch2 + eps)


def focal_l1(x: Tensor, alpha: float, beta: float) -> Tensor:
    r"""Focal-L1 of an absolute error :math:`x\ge0` (Zhang et al. §3.2):
    :math:`-\alpha x^2(2\ln(\beta x)-1)/4` on :math:`[0,1]`, :math:`-\alpha\ln(\beta)x+C` beyond, with
    :math:`C=(2\alpha\ln\beta+\alpha)/4` making it continuous; 0 with gradient 0 at :math:`x=0`."""
    safe = torch.where(x > 0, x, torch.ones_like(x))
    head = -alpha * safe ** 2 * (2 * torch.log(beta * safe) - 1) / 4
    head = torch.where(x > 0, head, torch.zeros_like(head))
    tail = -alpha * math.log(beta) * x + (2 * alpha * math.log(beta) + alpha) / 4
    return torch.where(x <= 1, head, tail)
