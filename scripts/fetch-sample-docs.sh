#!/usr/bin/env bash
# Fetch real sample documents for the demo: the R manuals as PDFs from Debian's r-doc-pdf
# package. Usage: scripts/fetch-sample-docs.sh DEST
set -euo pipefail
dest=${1:?usage: fetch-sample-docs.sh DEST}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! command -v apt-get >/dev/null; then
  echo "apt-get not found: put your own PDFs in a folder and run 'embedtune run --docs FOLDER'." >&2
  exit 1
fi
(cd "$tmp" && { apt-get download r-doc-pdf >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get download r-doc-pdf; }; })
dpkg-deb -x "$tmp"/r-doc-pdf_*.deb "$tmp/x"
mkdir -p "$dest"
# The seven manuals (about 1,000 pages); the 3,000-page reference manuals are left out.
find "$tmp/x" -name 'R-*.pdf' -exec cp {} "$dest/" \;
echo "fetched $(ls "$dest" | wc -l) PDFs into $dest"
