"""Every recipe of docs/recipes.md runs, as written: the page's code blocks, each after its
``<!-- recipe: NAME; needs: MODULES -->`` line, executed in a fresh namespace wherever those modules
import (torchvision's recipes in the benchmark venv: ``.bench/bin/python -m pytest -o addopts=
tests/test_recipes.py``)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
_BLOCK = re.compile(r"<!-- recipe: (?P<name>[\w-]+); needs:(?P<needs>[^>]*)-->\n```python\n(?P<code>.*?)```", re.S)


def _recipes():
    found = [(m["name"], m["needs"].split(), m["code"]) for m in _BLOCK.finditer(PAGE.read_text())]
    assert len(found) >= 8, "docs/recipes.md lost its recipe markers"
    return found


RECIPES = _recipes()


@pytest.mark.parametrize("name,needs,code", RECIPES, ids=[r[0] for r in RECIPES])
def test_recipe_runs(name, needs, code):
    for module in needs:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - a library that does not import here: the recipe cannot run
            pytest.skip(f"{module} does not import here ({type(e).__name__}); runs where it does")
    exec(compile(code, f"docs/recipes.md:{name}", "exec"), {"__name__": f"recipe_{name.replace('-', '_')}"})


def test_every_recipe_named_in_the_issue_is_on_the_page():
    names = {r[0] for r in RECIPES}
    assert {"retinanet-patch", "retinanet-head", "segmentation", "lightning", "hf-trainer", "keras-save-load",
            "yolov5", "mmdet-config", "per-sample-gradients", "hf-deformable-detr"} <= names
