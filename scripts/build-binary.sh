#!/usr/bin/env bash
# Build dist/rtcscope-server: one executable (PyInstaller --onefile) that
# carries templates/ and static/ and runs server.py. A build is kept under
# build/binary/<hash of everything it is made from>/, so `make binary` on an
# unchanged tree copies the cached executable instead of rebuilding.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SOURCES=(server.py handlers rtcscope templates static requirements.txt scripts/build-binary.sh)

hash=$( { "$PY" -VV; find "${SOURCES[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
          | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
cache="build/binary/$hash"
if [ ! -x "$cache/rtcscope-server" ]; then
  rm -rf build/binary
  mkdir -p "$cache"
  "$PY" -m PyInstaller --onefile --noconfirm --clean --log-level WARN \
    --name rtcscope-server --distpath "$cache" --workpath "$cache/work" --specpath "$cache/work" \
    --add-data "$PWD/templates:templates" --add-data "$PWD/static:static" \
    --collect-submodules handlers --collect-submodules rtcscope \
    server.py
  rm -rf "$cache/work"
fi
mkdir -p dist
cp "$cache/rtcscope-server" dist/rtcscope-server.tmp
mv dist/rtcscope-server.tmp dist/rtcscope-server
echo "dist/rtcscope-server ($(du -h dist/rtcscope-server | cut -f1), build $hash)"
