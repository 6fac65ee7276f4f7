#!/bin/sh
# The one prepared device check (H200, CC 9.0). From the repo root:
#   sh tools/h200_kernel_check/run.sh            (results under $OUT, default ./h200-out)
# Builds the launcher with nvcc when present, else with g++ and the carried cuda.h
# (tools/h200_kernel_check/build/include), then runs check.py; executables need
# libcudart.so.13 (from the nvidia-cuda-runtime wheel) in build/lib.
set -eu
HERE=$(dirname "$0")
OUT=${OUT:-./h200-out}
BUILD="$HERE/build"
mkdir -p "$OUT" "$BUILD"
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
if [ ! -x "$BUILD/launcher" ]; then
  if command -v nvcc >/dev/null 2>&1; then
    nvcc "$HERE/launcher.cpp" -o "$BUILD/launcher" -ldl
  else
    g++ -O1 -I"$BUILD/include" "$HERE/launcher.cpp" -o "$BUILD/launcher" -ldl
  fi
fi
export LD_LIBRARY_PATH="$BUILD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
timeout 300 python3 "$HERE/check.py" --launcher "$BUILD/launcher" --out "$OUT" 2>&1 | tee "$OUT/h200_kernel_check.txt"
