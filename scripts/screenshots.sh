#!/usr/bin/env bash
# Refresh the README's screenshots (docs/screenshots/*.png) on purpose: runs the browser tests
# (tests/test_ui_browser.py, tests/test_performance_browser.py) with NETATLAS_SCREENSHOTS_DIR=docs/screenshots. A plain test run
# writes them to a temporary directory and leaves the repository alone.
#   bash scripts/screenshots.sh [extra pytest arguments, e.g. -k loopback for one picture]
# Needs Debian's chromium (scripts/test.sh installs it) and the test extra (pip install -e '.[test]');
# PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x /usr/bin/chromium ]]; then
    echo "scripts/screenshots.sh: /usr/bin/chromium is missing (apt-get install chromium); no screenshot written" >&2
    exit 2
fi
rc=0
NETATLAS_SCREENSHOTS_DIR="$PWD/docs/screenshots" "${PYTHON:-python}" -m pytest -q -p no:cacheprovider \
    tests/test_ui_browser.py tests/test_performance_browser.py tests/test_workbooks_browser.py "$@" || rc=$?
if ((rc == 5)); then
    echo "scripts/screenshots.sh: pytest ran no test, so no screenshot was written" >&2
    exit 1
fi
exit "$rc"
