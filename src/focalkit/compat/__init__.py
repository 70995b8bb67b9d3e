"""Drop-in presets: ``focalkit.compat.<peer>`` has the peer's public names, signatures, defaults and
values, computed by focalkit's losses (faster, and finite where the peer is not). A preset never
imports its peer (the Keras one derives from Keras's own ``Loss``; ``transformers.deformable_detr_loss``
uses transformers' matcher, imported when it is called). Every deliberate difference is
listed in ``docs/compat.md``.

:mod:`focalkit.compat.torchvision`, :mod:`~focalkit.compat.fvcore`, :mod:`~focalkit.compat.kornia`,
:mod:`~focalkit.compat.monai`, :mod:`~focalkit.compat.smp` (segmentation_models_pytorch),
:mod:`~focalkit.compat.mmdet`, :mod:`~focalkit.compat.ultralytics`, :mod:`~focalkit.compat.yolov5`,
:mod:`~focalkit.compat.keras`, :mod:`~focalkit.compat.transformers` (Hugging Face detectors).
"""
