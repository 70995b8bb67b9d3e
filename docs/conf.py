"""The focalkit documentation site: Sphinx, built from the docstrings (autodoc + napoleon, one page per
public name through autosummary) with the Markdown guides of this folder (MyST), the furo theme, and
the maths rendered to MathML at build time (latex2mathml): the pages need no script and no network.

Build and view: ``python -m sphinx -W --keep-going -n -b html docs build/site`` then open
``build/site/index.html`` (or ``python -m http.server -d build/site``). ``tests/test_docs_site.py``
runs the strict build and opens the site in headless Chromium.

Strict: warnings are errors (``-W``), every cross-reference must resolve (``-n``; only names of
other libraries, which have no inventory offline, are exempt), and a public name without a
docstring is a warning (``_missing_docstring``)."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
os.environ.setdefault("KERAS_BACKEND", "torch")  # the Keras adapter and preset import Keras

project = "focalkit"
author = "focalkit developers"
copyright = "focalkit developers"  # noqa: A001 - Sphinx's name
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]  # a class page documents its own members, not torch.nn.Module's
exclude_patterns = ["_build", "images/README.md"]
html_theme = "furo"
html_title = "focalkit"
html_static_path = ["_static"]
html_css_files = ["focalkit.css"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
autosummary_generate = True
autodoc_default_options = {"members": False}
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
suppress_warnings = ["myst.xref_missing"]  # links to repository files (tests/, benchmarks/) outside the site
nitpicky = True
# Other libraries' names: no inventory offline (intersphinx would fetch one). focalkit's own stay strict.
nitpick_ignore_regex = [
    (r"py:.*", r"focalkit(\.\w+)*\._\w+"),  # private helpers in signatures and bases: not API
    (r"py:.*", r"(torch|numpy|np|nn|keras|xgb|xgboost|lgb|lightgbm|cb|catboost|sklearn|pandas|pd|dask|"
               r"ctypes|typing|collections|abc|enum|pathlib|argparse|os)(\..*)?"),
    (r"py:.*", r"(Tensor|Module|Optional|Union|Any|Sequence|Callable|Iterable|Mapping|Literal|NamedTuple|"
               r"ndarray|DataFrame|Path|float|int|str|bool|tuple|list|dict|None|Alpha|Normalizer|Reduction|"
               r"SoftTarget|Scalar|QualityTargets|NumBoxes|ArrayLike|Bunch|optional|callable|array-like|"
               r"default|the|of|shape|or|and)\b.*"),
]

# ---- the API reference: one page per public name, from each module's __all__ ---------------------

SECTIONS = [
    ("Losses and Modules", "focalkit", "The public API: every loss as a function and a Module twin."),
    ("Calibration", "focalkit.calibration", "Calibration error and the focal calibration map."),
    ("Data sets", "focalkit.data", "The vendored data sets."),
    ("Adapters: XGBoost", "focalkit.adapters.xgboost", "Focal objectives, metrics and a classifier."),
    ("Adapters: LightGBM", "focalkit.adapters.lightgbm", "Focal objectives, metrics and a classifier."),
    ("Adapters: CatBoost", "focalkit.adapters.catboost", "Focal objectives, metrics and a classifier."),
    ("Adapters: Keras 3", "focalkit.adapters.keras", "Keras losses on every backend."),
] + [(f"Preset: {name}", f"focalkit.compat.{mod}", f"``focalkit.compat.{mod}``: {name}'s names and values.")
     for name, mod in [("torchvision", "torchvision"), ("fvcore", "fvcore"), ("kornia", "kornia"),
                       ("MONAI", "monai"), ("segmentation_models_pytorch", "smp"), ("mmdet", "mmdet"),
                       ("ultralytics", "ultralytics"), ("YOLOv5", "yolov5"), ("Keras", "keras"),
                       ("Hugging Face transformers", "transformers")]]


def public_names(module_name: str) -> list:
    """Every public name of a module: its ``__all__``."""
    module = importlib.import_module(module_name)
    return [n for n in module.__all__ if not n.startswith("__")]


def _write_reference() -> None:
    out = HERE / "reference"
    out.mkdir(exist_ok=True)
    pages = []
    for title, module_name, blurb in SECTIONS:
        slug = module_name.replace(".", "_")
        pages.append(slug)
        lines = [title, "=" * len(title), "", f".. automodule:: {module_name}", "   :no-members:", "", blurb, ""]
        lines += [f".. currentmodule:: {module_name}", "", ".. autosummary::", "   :toctree: generated",
                  "   :nosignatures:", ""]
        lines += [f"   {n}" for n in public_names(module_name)]
        (out / f"{slug}.rst").write_text("\n".join(lines) + "\n")
    cli = ["Command line: ``focalkit``", "=" * 26, "", ".. automodule:: focalkit.cli", "   :no-members:", "",
           ".. autofunction:: focalkit.cli.main", "", "``focalkit --help``, and each command's:", ""]
    from focalkit import cli as _cli

    parser = _cli._parser()
    subparsers = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    helps = [("focalkit --help", parser.format_help())]
    for action in subparsers:
        for name, sub in action.choices.items():
            helps.append((f"focalkit {name} --help", sub.format_help()))
    for head, text in helps:
        cli += [f"``{head}``:", "", ".. code-block:: text", ""] + ["   " + ln for ln in text.splitlines()] + [""]
    (out / "cli.rst").write_text("\n".join(cli) + "\n")
    pages.append("cli")
    index = ["API reference", "=============", "",
             "Every public name of focalkit, from its docstring. The guides say how the pieces fit.", "",
             ".. toctree::", "   :maxdepth: 1", ""] + [f"   {p}" for p in pages]
    (out / "index.rst").write_text("\n".join(index) + "\n")


_write_reference()


# ---- maths: MathML at build time ------------------------------------------------------------------

def _mathml(latex: str, block: bool) -> str:
    from latex2mathml.converter import convert

    return convert(latex.strip(), display="block" if block else "inline")


def _visit_inline(self, node):
    self.body.append(f'<span class="math">{_mathml(node.astext(), False)}</span>')
    raise _skip()


def _visit_block(self, node):
    latex = node.astext()
    self.body.append(f'<div class="math-display">{_mathml(latex, True)}</div>')
    raise _skip()


def _skip():
    from docutils import nodes

    return nodes.SkipNode


# ---- strictness: a public name without a docstring is a warning (an error under -W) ------------------

def _missing_docstring(app, what, name, obj, options, lines):
    if what in ("function", "class", "method") and name.startswith("focalkit") and not any(ln.strip() for ln in lines):
        if inspect.isclass(obj) and any(c.__doc__ for c in obj.__mro__[1:2]):
            return
        from sphinx.util import logging

        logging.getLogger("focalkit.docs").warning(f"{name} has no docstring", type="focalkit", subtype="docstring")


def setup(app):
    app.add_html_math_renderer("mathml", (_visit_inline, None), (_visit_block, None))
    app.config.html_math_renderer = "mathml"
    app.connect("autodoc-process-docstring", _missing_docstring)
    return {"parallel_read_safe": True}
