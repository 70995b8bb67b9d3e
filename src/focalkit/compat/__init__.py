"""Drop-in presets: ``focalkit.compat.<peer>`` has the peer's public names, signatures, defaults and
values, computed by focalkit's losses (faster, and finite where the peer is not). A preset never
imports its peer. Every deliberate difference is listed in ``docs/compat.md``.

So far: :mod:`focalkit.compat.kornia`, :mod:`focalkit.compat.fvcore`, :mod:`focalkit.compat.torchvision`,
:mod:`focalkit.compat.keras`.
"""
