"""The documentation site (issue 20): the strict Sphinx build of docs/ (every warning an error, every
reference resolved, every public name documented, one page per public name), and the built site
opened in headless Chromium: the search finds an API page, and that page renders its formulas (MathML
laid out as maths: superscripts raised). The screenshot is written to build/docs-site.png.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright; where it is missing and apt can
install it (CI runs as root on Debian), the fixture installs it."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
STRICT = ["-W", "--keep-going", "-n", "-q", "-b", "html"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _build(src: Path, out: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", *STRICT, "-d", str(out / ".doctrees"), str(src), str(out)],
                          capture_output=True, text=True, timeout=1200, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    r = _build(DOCS, out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    return out


def _sections():
    sys.path.insert(0, str(DOCS))
    try:
        import conf  # docs/conf.py: the reference's sections and their modules
    finally:
        sys.path.remove(str(DOCS))
    return conf


def test_strict_build_gives_every_public_name_a_page(site):
    conf = _sections()
    missing = [f"{module}.{name}" for _, module, _ in conf.SECTIONS for name in conf.public_names(module)
               if not (site / "reference" / "generated" / f"{module}.{name}.html").exists()]
    assert not missing, missing
    cli = (site / "reference" / "cli.html").read_text()
    assert "usage: focalkit compare" in cli and "usage: focalkit demo" in cli
    for guide in ("math", "api", "install", "backends", "adapters", "compat", "recipes", "demo"):
        assert (site / f"{guide}.html").exists(), guide
    page = (site / "reference" / "generated" / "focalkit.sigmoid_focal_loss.html").read_text()
    assert "<math" in page and "<script type=\"math/tex" not in page  # MathML at build time, no script


def _probe_project(tmp: Path, body: str) -> Path:
    """A one-page project with docs/conf.py's settings and hooks (fast: no API reference)."""
    src = tmp / "probe"
    src.mkdir()
    (src / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(DOCS)!r})
        from conf import *  # noqa: F401,F403 - the site's strictness
        from conf import setup  # noqa: F401
        exclude_patterns = []
        templates_path = []
    """))
    (src / "index.rst").write_text("Probe\n=====\n\n" + body + "\n")
    return src


def test_a_broken_reference_fails_the_build(tmp_path):
    src = _probe_project(tmp_path, "See :func:`focalkit.no_such_loss`.")
    r = _build(src, tmp_path / "out")
    assert r.returncode != 0 and "focalkit.no_such_loss" in r.stderr, r.stderr[-2000:]


def test_a_public_name_without_a_docstring_fails_the_build(tmp_path):
    (tmp_path / "focalkit_probe.py").write_text("def undocumented(x):\n    return x\n")
    src = _probe_project(tmp_path, ".. autofunction:: focalkit_probe.undocumented")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    r = _build(src, tmp_path / "out", env=env)
    assert r.returncode != 0 and "focalkit_probe.undocumented has no docstring" in r.stderr, r.stderr[-2000:]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:  # CI: Debian, as root
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if subprocess.run(install, check=False, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, timeout=900)
            subprocess.run(install, check=False, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.fail("the browser check needs Chromium: apt-get install chromium (Debian), or put it on PATH")
    return found


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_site_renders_search_and_formulas_in_headless_chromium(served):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        # the search index: a query finds the loss's API page
        page.goto(f"{served}/search.html?q=softmax_focal_loss")
        page.wait_for_selector("#search-results li a", timeout=60000)
        links = page.eval_on_selector_all("#search-results li a", "els => els.map(e => e.getAttribute('href'))")
        assert any(h.startswith("reference/generated/focalkit.softmax_focal_loss.html") for h in links), links
        # one API page: its formulas are laid out as maths
        page.goto(f"{served}/reference/generated/focalkit.sigmoid_focal_loss.html")
        assert page.inner_text("h1").startswith("focalkit.sigmoid_focal_loss")
        layout = page.evaluate("""() => {
            const maths = Array.from(document.querySelectorAll('math'));
            const sups = Array.from(document.querySelectorAll('msup')).map(s => {
                const [base, sup] = Array.from(s.children).map(c => c.getBoundingClientRect());
                return [base.top, sup.top, base.height, sup.height]; });
            return {count: maths.length, blocks: maths.filter(m => m.getAttribute('display') === 'block').length,
                    visible: maths.filter(m => m.getBoundingClientRect().width > 0).length, sups: sups};
        }""")
        assert layout["count"] >= 10 and layout["blocks"] >= 1 and layout["visible"] == layout["count"], layout
        # every superscript sits above its base: MathML laid out as maths, not shown as a line of text
        assert layout["sups"] and all(sup_top < base_top for base_top, sup_top, _, _ in layout["sups"]), layout["sups"]
        (ROOT / "build").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "build" / "docs-site.png"))
        browser.close()
