"""MkDocs hooks that build the functional_cnn site from the repository as it is.

* The home page is the README, its ``docs/`` links pointed at the site's own pages.
* The API reference is generated from ``functional_cnn.__all__``: one page per group, one entry per public
  name, so a new public name cannot be left out.
* Every public name must have a docstring. A missing one is logged as a warning, and ``mkdocs build
  --strict`` turns that warning into a failed build.
* The navigation lists every guide in ``docs/``, every notebook in ``docs/notebooks`` (a link to
  ``examples/notebooks``) and the API pages.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, List

import griffe
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.functional_cnn")
ROOT = Path(__file__).resolve().parent.parent

#: Guides in reading order; any other page in docs/ follows them alphabetically.
GUIDE_ORDER = ["design.md", "state.md", "optim.md", "data.md", "examples.md", "errors.md", "performance.md"]

#: API groups: (page, title, the module prefixes whose public names belong on that page).
API_GROUPS = [
    ("layers", "Layers and combinators", ("functional_cnn.layer", "functional_cnn.combinators",
                                          "functional_cnn.branching", "functional_cnn.params")),
    ("losses", "Losses", ("functional_cnn.losses",)),
    ("optim", "Optimizers", ("functional_cnn.optim",)),
    ("training", "Training", ("functional_cnn.train", "functional_cnn.debug")),
    ("data", "Data and checkpoints", ("functional_cnn.datasets", "functional_cnn.idx", "functional_cnn.checkpoint",
                                      "functional_cnn._npz")),
    ("tools", "Gradient checking and summaries", ("functional_cnn.gradcheck", "functional_cnn.summary")),
    ("trees", "Trees", ("functional_cnn.tree",)),
]
OTHER = ("other", "Other public names")
MODULES = ("modules", "Modules")


def _public_names() -> Dict[str, griffe.Object]:
    """Each name in ``functional_cnn.__all__`` with the griffe object it resolves to."""
    package = griffe.load("functional_cnn", search_paths=[str(ROOT)], resolve_aliases=True,
                          resolve_external=False)
    names = package.exports
    if not names:
        log.warning("functional_cnn has no __all__: the API reference would be empty")
        return {}
    out = {}
    for name in names:
        member = package.members.get(name)
        if member is None:
            log.warning("functional_cnn.__all__ names %r, which the package does not define", name)
            continue
        out[name] = member.final_target if member.is_alias else member
    return out


def _group(obj: griffe.Object) -> str:
    if obj.is_module:
        return MODULES[0]
    path = obj.path
    for page, _, prefixes in API_GROUPS:
        if any(path == p or path.startswith(p + ".") for p in prefixes):
            return page
    if path.startswith("functional_cnn.layers."):
        return "layers"
    return OTHER[0]


def _api_pages() -> Dict[str, str]:
    """``{page name: markdown}`` for the API reference."""
    names = _public_names()
    pages: Dict[str, List[str]] = {}
    for name, obj in names.items():
        if not (obj.docstring and obj.docstring.value.strip()):
            log.warning("functional_cnn.%s (%s) has no docstring; the API reference needs one", name, obj.path)
        block = f"::: functional_cnn.{name}\n"
        if obj.is_module:
            block += "    options:\n      show_submodules: false\n      members: false\n"
        pages.setdefault(_group(obj), []).append(block)
    titles = {page: title for page, title, _ in API_GROUPS}
    titles.update({OTHER[0]: OTHER[1], MODULES[0]: MODULES[1]})
    return {page: f"# {titles[page]}\n\n" + "\n".join(blocks) for page, blocks in pages.items()}


def _home_page() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    # README links point into docs/; on the site those pages sit at the root.
    return re.sub(r"\]\(docs/", "](", text)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "index.md", content=_home_page()))
    api = _api_pages()
    for page, content in api.items():
        files.append(File.generated(config, f"api/{page}.md", content=content))

    docs = Path(config["docs_dir"])
    guides = sorted(p.name for p in docs.glob("*.md") if p.name != "index.md")
    ordered = [g for g in GUIDE_ORDER if g in guides] + [g for g in guides if g not in GUIDE_ORDER]
    notebooks = sorted(p.name for p in (docs / "notebooks").glob("*.ipynb")) if (docs / "notebooks").is_dir() else []
    order = [page for page, _, _ in API_GROUPS] + [OTHER[0], MODULES[0]]
    nav = [{"Home": "index.md"}, {"Guides": [f"{g}" for g in ordered]}]
    if notebooks:
        nav.append({"Notebooks": [f"notebooks/{n}" for n in notebooks]})
    nav.append({"API reference": [f"api/{p}.md" for p in order if p in api]})
    config["nav"] = nav
    return files
