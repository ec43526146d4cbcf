"""Sphinx configuration for the mailmaps documentation (``nox -s docs``)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# autodoc imports the package from the source tree, so the docs build without installing it.
sys.path.insert(0, str(ROOT / "src"))

with (ROOT / "pyproject.toml").open("rb") as _file:
    release: str = tomllib.load(_file)["project"]["version"]
version = release

project = "mailmaps"
author = "mailmaps developers"
project_copyright = "mailmaps developers"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
nitpicky = False
# Names that ``mailmaps`` re-exports are documented both there and in their own module, so a short
# reference such as ``:raises SpecError:`` finds two targets for the same object; either will do.
suppress_warnings = ["ref.python"]

html_theme = "alabaster"
html_title = f"mailmaps {release}"
