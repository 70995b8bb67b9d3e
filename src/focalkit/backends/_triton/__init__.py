"""Triton kernels, one file per family (imported only when the Triton backend runs; each imports
``triton`` at the top). The launchers, and the one table of every specialisation they can request,
are in :mod:`focalkit.backends.triton`.

Compiled Triton reads no module global unless it is a ``tl.constexpr``: constants are written as
literals inside the kernels (the interpreter would accept a plain float global, a GPU does not).
"""
