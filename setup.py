"""Builds the optional native CPU kernel (plain C, OpenMP, libmvec; no torch C++ API).

Metadata lives in pyproject.toml. The extension is optional: where nothing can compile it, the
install still succeeds and ``backend="auto"`` falls back to the eager backend with one warning.
"""

import sys

from setuptools import Extension, setup

# Linux (glibc): OpenMP threads and libmvec's vector exp / log. macOS: no OpenMP (Apple clang has no
# -fopenmp, and a bundled libomp would clash with the one torch loads), so the kernel runs on one
# thread, vectorised by clang. Windows (MSVC): C11, no OpenMP (MSVC's is 2.0: no simd / max reductions).
linux = sys.platform.startswith("linux")
if linux:
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-std=c11"]
    link_args = ["-fopenmp", "-lmvec", "-lm"]
elif sys.platform == "darwin":
    compile_args, link_args = ["-O3", "-fno-math-errno", "-std=c11"], []
elif sys.platform == "win32":
    compile_args, link_args = ["/O2", "/std:c11"], []
else:
    compile_args, link_args = [], []
ext = Extension(
    "focalkit._focal_native",
    sources=["src/focalkit/_native/focal.c"],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    optional=True,
)
setup(ext_modules=[ext])
