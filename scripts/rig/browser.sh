# shellcheck shell=bash
# The browser of the UI tests (tests/ui, marker `ui`): Debian's chromium, driven by Playwright for Python.
#
# Sourced by scripts/services (which defines say, apt_install, ROOT, PY), or run on its own:
#
#   scripts/rig/browser.sh      install what is missing (as root)
#
#   browser_up       apt-get install chromium; pip install playwright into the venv unless present
#   browser_status   one status line
#
# Playwright only drives /usr/bin/chromium (`executable_path`): never run `playwright install`, which
# downloads browsers. Once `playwright` is in the dev extra, the pip step is a no-op.

GENIUS_CHROMIUM=${GENIUS_CHROMIUM:-/usr/bin/chromium}

browser_up() {
  if [ ! -x "$GENIUS_CHROMIUM" ]; then
    local try
    for try in $(seq 1 60); do # another apt (a parallel rig step) may hold the dpkg lock
      apt_install chromium && break
      say "apt-get failed (lock held by another apt?), retrying in 5 s ($try/60)"
      sleep 5
    done
    [ -x "$GENIUS_CHROMIUM" ] || { say "chromium did not install at $GENIUS_CHROMIUM"; return 1; }
  fi
  if ! "$PY" -c "import playwright.sync_api" 2>/dev/null; then
    say "installing playwright (Python package only; the browser is Debian's chromium)"
    "$PY" -m pip install -q playwright 2>&1 | grep -v '^WARNING: Location' || true
    "$PY" -c "import playwright.sync_api" || { say "playwright did not install"; return 1; }
  fi
}

browser_status() {
  local version
  version=$("$GENIUS_CHROMIUM" --version 2>/dev/null || true)
  if [ -n "$version" ] && "$PY" -c "import playwright.sync_api" 2>/dev/null; then
    echo "up    browser ($version, playwright)"
  else
    echo "down  browser (chromium at $GENIUS_CHROMIUM and the playwright package; scripts/rig/browser.sh)"
  fi
}

# Run on its own: provide what scripts/services would, then install.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ROOT=$(cd "$(dirname "$0")/../.." && pwd)
  PY=${GENIUS_PYTHON:-$ROOT/.venv/bin/python}
  say() { printf '[browser] %s\n' "$*" >&2; }
  apt_install() {
    local missing=() pkg
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
  }
  browser_up
  browser_status
fi
