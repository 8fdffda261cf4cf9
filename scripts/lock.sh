#!/usr/bin/env bash
# Resolve requirements/lock.txt again, the measured set that `make setup` installs as
# constraints over pyproject.toml's ranges: run it (`make lock`) after changing the ranges.
# Versions already in the lock are kept; delete a package's line to let it move to the newest
# release that the ranges allow. Needs uv (`make setup` puts one in .venv/bin); UV names it.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-uv}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp requirements/lock.txt "$tmp/pins.txt"
# pip's find-links (on the project's machines, where torch's CPU build lies): the pin
# torch==2.13.0 then resolves to 2.13.0+cpu there, and no CUDA library enters the lock.
links=${PIP_FIND_LINKS:-$(python3.11 -m pip config get global.find-links 2>/dev/null || true)}
"$uv" pip compile pyproject.toml --extra dev --extra models --python-version 3.11.7 \
    ${links:+--find-links "$links"} -c "$tmp/pins.txt" --no-header -q -o "$tmp/lock.txt"
{
    echo "# The measured set: every package \`make setup\` installs with embedtune[dev,models], at the"
    echo "# versions its tests and benchmarks ran with (Python 3.11, Linux x86_64). Installed as"
    echo "# constraints (pip install -c), so the versions hold while pyproject.toml's ranges decide"
    echo "# what is needed. torch is written without the +cpu of the build measured, so that pip"
    echo "# takes a local CPU build where one lies in find-links and PyPI's build elsewhere."
    echo "# Made by scripts/lock.sh (make lock); edit pyproject.toml, not this file."
    # the +cpu label goes; so do the annotations naming the old lock as a source
    sed -e 's/+cpu$//' -e '/^    # via -c /d' -e '/^    #   -c /d' "$tmp/lock.txt"
} > requirements/lock.txt
echo "wrote requirements/lock.txt ($(grep -c '==' requirements/lock.txt) packages)"
