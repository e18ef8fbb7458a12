"""The documentation site: `mkdocs build --strict` passes, with an API page entry for every public name."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the site build needs the docs extra")
pytest.importorskip("mkdocstrings")

import functional_cnn as fc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


def test_every_public_name_has_an_api_entry(site):
    pages = "".join(p.read_text(encoding="utf-8") for p in (site / "api").rglob("index.html"))
    ids = set(re.findall(r'id="(functional_cnn\.[A-Za-z_0-9.]+)"', pages))
    missing = [name for name in fc.__all__ if f"functional_cnn.{name}" not in ids]
    assert not missing, f"no API entry for {missing}"


def test_guides_and_notebooks_are_pages(site):
    for guide in (ROOT / "docs").glob("*.md"):
        assert (site / guide.stem / "index.html").exists(), f"guide {guide.name} is not in the site"
    for nb in (ROOT / "examples" / "notebooks").glob("*.ipynb"):
        assert (site / "notebooks" / nb.stem / "index.html").exists(), f"notebook {nb.name} is not in the site"


def test_home_page_is_the_readme(site):
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Convolutional networks in NumPy where nothing is hidden" in home
