#!/bin/sh
# Run here (no GPU needed) before the device run: builds the launcher and gathers
# what run.sh needs into build/ (git-ignored; pass it as a carried path).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD="$HERE/build"
mkdir -p "$BUILD/lib" "$BUILD/include"
nvcc "$HERE/launcher.cpp" -o "$BUILD/launcher" -ldl
cp "$(dirname "$(readlink -f "$(command -v nvcc)")")/../include/cuda.h" "$BUILD/include/" 2>/dev/null \
  || cp /usr/local/cuda/include/cuda.h "$BUILD/include/" 2>/dev/null || true
# libcudart.so.13 for the fixture executables (built with -cudart shared).
WHEELS=$(mktemp -d)
python3 -m pip download -q --no-deps nvidia-cuda-runtime -d "$WHEELS"
python3 - "$WHEELS" "$BUILD/lib" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if "/lib/libcudart.so" in name:
            (pathlib.Path(sys.argv[2]) / pathlib.PurePosixPath(name).name).write_bytes(archive.read(name))
PY
rm -rf "$WHEELS"
ls -la "$BUILD" "$BUILD/lib"
