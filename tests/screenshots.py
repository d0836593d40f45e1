"""Where the browser tests (tests/test_ui_browser.py) write their screenshots: a temporary
directory of the test run, never the repository, unless ``NETATLAS_SCREENSHOTS_DIR`` names a
directory. ``scripts/screenshots.sh`` sets it to docs/screenshots to refresh the README's pictures
on purpose."""
from __future__ import annotations

import os
from pathlib import Path

ENV = "NETATLAS_SCREENSHOTS_DIR"


def screenshots_dir(tmp_path_factory, environ=os.environ) -> Path:
    """The directory of this run's screenshots: ``$NETATLAS_SCREENSHOTS_DIR`` (created), else a new
    temporary directory of ``tmp_path_factory``."""
    chosen = environ.get(ENV, "").strip()
    if not chosen:
        return tmp_path_factory.mktemp("screenshots")
    path = Path(chosen).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
