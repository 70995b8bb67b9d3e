"""Wheels carry the C kernel (issue 20): ``python -m build --wheel`` and ``auditwheel repair`` here, then
the repaired wheel installed into a fresh venv with no C compiler on ``PATH`` has the native backend,
with the same values as this (source) install. And an sdist installed without a compiler says once,
at import, that it runs on the eager backend and how to get the kernel.

The fresh venvs are made ``--without-pip``; they run this environment's pip, setuptools, torch and
numpy through a path file, so nothing is downloaded, and focalkit itself is only what was installed
into them. (cibuildwheel's manylinux_2_28 builds are .github/workflows/release.yml's: they cannot run
here; auditwheel takes this machine's glibc, so the wheel here is manylinux_2_35.)"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import focalkit as fk
from focalkit.backends import native

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("auditwheel") is None
                                and not (Path(sys.executable).parent / "auditwheel").exists(),
                                reason="the wheel test builds a manylinux wheel: Linux, with auditwheel (test extra)")

PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    import focalkit as fk
    from focalkit.backends import native
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 7, generator=g, dtype=torch.float64)
    y = (torch.rand(300, 7, generator=g) < 0.3).double()
    t = torch.randint(0, 7, (300,), generator=g)
    values = [fk.sigmoid_focal_loss(x, y).item(), fk.softmax_focal_loss(x, t).item(),
              fk.sigmoid_focal_loss(x.float(), y.float(), reduction="sum").item()]
print(json.dumps({"file": fk.__file__, "native": native.available(), "why": native.why_unavailable(),
                  "values": values, "warnings": [str(w.message) for w in caught
                                                 if issubclass(w.category, RuntimeWarning)]}))
"""


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _venv(path: Path) -> Path:
    """A fresh venv without pip whose path file reaches this environment's packages (after its own)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    py = path / "bin" / "python"
    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    Path(own, "zz_outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return py


def _no_compiler_env(tmp: Path) -> dict:
    bare = tmp / "bare-bin"  # PATH holds nothing but this empty folder: no cc, gcc, clang
    bare.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CC", "CXX", "LDSHARED")}
    return dict(env, PATH=str(bare), CC="/nonexistent/cc", LDSHARED="/nonexistent/cc", PIP_NO_INDEX="1",
                PIP_DISABLE_PIP_VERSION_CHECK="1")


def _probe(py: Path, tmp: Path) -> dict:
    r = subprocess.run([str(py), "-c", PROBE], capture_output=True, text=True, env=_no_compiler_env(tmp),
                       cwd=str(tmp), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _source_tree(tmp: Path) -> Path:
    src = tmp / "focalkit-src"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    return src


def _here() -> list:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 7, generator=g, dtype=torch.float64)
    y = (torch.rand(300, 7, generator=g) < 0.3).double()
    t = torch.randint(0, 7, (300,), generator=g)
    return [fk.sigmoid_focal_loss(x, y).item(), fk.softmax_focal_loss(x, t).item(),
            fk.sigmoid_focal_loss(x.float(), y.float(), reduction="sum").item()]


@pytest.mark.skipif(not native.available(), reason="compares with this install's native kernel")
def test_repaired_wheel_carries_the_kernel_without_a_compiler(tmp_path):
    src = _source_tree(tmp_path)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=900)
    (wheel,) = (tmp_path / "dist").glob("focalkit-*.whl")
    tools = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    r = subprocess.run([_tool("auditwheel"), "repair", "-w", str(tmp_path / "wheelhouse"), str(wheel)],
                       capture_output=True, text=True, timeout=600, env=tools)  # patchelf beside it
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (repaired,) = (tmp_path / "wheelhouse").glob("focalkit-*.whl")
    assert "manylinux_" in repaired.name and repaired.name.endswith("_x86_64.whl") or "aarch64" in repaired.name
    shown = subprocess.run([_tool("auditwheel"), "show", str(repaired)], capture_output=True, text=True,
                           env=tools).stdout
    assert "libmvec.so.1" in shown and "GLIBC_2.22" in shown, shown  # the vector exp / log it needs

    py = _venv(tmp_path / "venv")
    env = _no_compiler_env(tmp_path)
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", str(repaired)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got = _probe(py, tmp_path)
    assert str(tmp_path / "venv") in got["file"], got["file"]  # the wheel's copy, not this checkout
    assert got["native"], got["why"]
    assert got["warnings"] == []
    assert got["values"] == pytest.approx(_here(), rel=1e-12)


def test_sdist_without_a_compiler_warns_once_at_import(tmp_path):
    src = _source_tree(tmp_path)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=600)
    (sdist,) = (tmp_path / "dist").glob("focalkit-*.tar.gz")
    py = _venv(tmp_path / "venv")
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-build-isolation", str(sdist)],
                       capture_output=True, text=True, env=_no_compiler_env(tmp_path), timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]  # the extension is optional: it installs
    got = _probe(py, tmp_path)
    assert str(tmp_path / "venv") in got["file"] and not got["native"], got
    assert len(got["warnings"]) == 1, got["warnings"]  # once, at import; not again at the calls
    message = got["warnings"][0]
    assert "eager backend" in message and "--only-binary=focalkit" in message and "compiler" in message
    with torch.no_grad():
        assert got["values"] == pytest.approx(_here(), rel=1e-6)  # eager equals the kernel
