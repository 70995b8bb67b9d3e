"""Builds the optional native CPU kernel (plain C, OpenMP, libmvec; no torch C++ API).

Metadata lives in pyproject.toml. The extension is optional: where nothing can compile it, the
install still succeeds and ``backend="auto"`` falls back to the eager backend with one warning.
"""

import sys

from setuptools import Extension, setup

linux = sys.platform.startswith("linux")
ext = Extension(
    "focalkit._focal_native",
    sources=["src/focalkit/_native/focal.c"],
    extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-std=c11"] if linux else [],
    extra_link_args=(["-fopenmp", "-lmvec", "-lm"]) if linux else [],
    optional=True,
)
setup(ext_modules=[ext])
