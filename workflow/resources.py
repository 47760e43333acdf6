"""Where the files the program reads at run time live: next to the installed code, never the checkout.

The top-level ``templates/`` folder of the source tree (``mail``, ``web`` with ``web/static``, ``reports``)
is installed as the package ``branchflow_templates`` (see ``[tool.setuptools.package-dir]`` in
pyproject.toml). Run from a source tree that has not been installed (``pythonpath = .``), the same folder is
found beside this package.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

TEMPLATES_PACKAGE = "branchflow_templates"


@lru_cache(maxsize=1)
def templates_root() -> Path:
    """The folder holding ``mail/``, ``web/`` and ``reports/``."""
    spec = importlib.util.find_spec(TEMPLATES_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "mail").is_dir():
                return Path(location)
    here = Path(__file__).resolve().parent.parent / "templates"
    if (here / "mail").is_dir():
        return here
    raise RuntimeError(f"找不到模板目录（应随程序安装为 {TEMPLATES_PACKAGE}；请重新安装 branchflow）")


def template_dir(kind: str) -> Path:
    """``mail``, ``web`` or ``reports``."""
    return templates_root() / kind
