"""`gpudoctor preflight` on an image with a 1 GB layer, beside `skopeo inspect --config`.

1. A real distribution registry (Debian `docker-registry`) on 127.0.0.1.
2. One image: a 1 GiB layer (zeros streamed through the blob upload API, so nothing
   that size is held in memory) and a config with the real vllm/vllm-openai:v0.23.0
   environment (fixtures/facts/images/, CUDA 13.0).
3. Alternating runs of
     gpudoctor preflight REF --insecure-registry HOST --node fixtures/nvidia-smi/A100...xml --format json
     skopeo inspect --config --tls-verify=false docker://REF
   Wall time of each process; bytes sent by the registry per process, summed from its
   own log (`http.response.written`), and the URIs asked for (no layer may appear).

    .venv/bin/python bench/bench_preflight.py [--runs 7] [--layer-mib 1024]
Targets: preflight under 64 KB transferred, and within 3x of skopeo's wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.services import (  # noqa: E402
    OCI_MANIFEST,
    Registry,
    build_image,
    canonical,
    digest_of,
    image_config,
    running_registry,
)

NODE = REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml"
IMAGE_ENV = REPO / "fixtures" / "facts" / "images" / "vllm-openai_v0.23.0-cuda13.0.2_amd64.json"
CHUNK = 8 << 20
WRITTEN = re.compile(r'http\.request\.uri="?([^"\s]+)"?.*?http\.response\.written=(\d+)')


def zeros(total: int) -> Iterator[bytes]:
    block = bytes(CHUNK)
    left = total
    while left > 0:
        yield block[: min(CHUNK, left)]
        left -= CHUNK


def zeros_digest(total: int) -> str:
    hasher = hashlib.sha256()
    for chunk in zeros(total):
        hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def push_big_image(registry: Registry, layer_bytes: int) -> str:
    env: dict[str, str] = json.loads(IMAGE_ENV.read_text())["env"]
    layer_digest = zeros_digest(layer_bytes)
    registry.push_blob_stream("bench/vllm", layer_digest, layer_bytes, zeros(layer_bytes))
    config = canonical(image_config(env, "amd64", None, [layer_digest]))
    registry.push_blob("bench/vllm", config)
    small = build_image(env, media_type=OCI_MANIFEST)  # its layer is pushed too: a two-layer image
    registry.push_blob("bench/vllm", small.layers[0])
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config), "digest": digest_of(config)},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer_bytes, "digest": layer_digest},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": len(small.layers[0]),
                 "digest": digest_of(small.layers[0])},
            ],
        }
    )  # fmt: skip
    registry.push_manifest("bench/vllm", "cu13", manifest, OCI_MANIFEST)
    return layer_digest


def measure(registry: Registry, command: list[str], env: dict[str, str]) -> tuple[float, int, list[str], int]:
    mark = registry.log_mark()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, timeout=120, cwd=REPO, env=env)
    wall = time.perf_counter() - started
    time.sleep(0.05)  # let the registry flush its log line
    entries = WRITTEN.findall(registry.log_since(mark))
    return wall, sum(int(n) for _, n in entries), [uri for uri, _ in entries], done.returncode


STAGES = """
import time
t0 = time.perf_counter()
import gpudoctor.cli
t1 = time.perf_counter()
from gpudoctor.nodeinput import load_node
node = load_node({node!r})
t2 = time.perf_counter()
from gpudoctor.images import fetch_image
image = fetch_image({ref!r}, insecure_registries=[{host!r}])
t3 = time.perf_counter()
from gpudoctor.pipeline import diagnose
report = diagnose(node, image)
t4 = time.perf_counter()
from gpudoctor.commands.common import render
render(report, "json")
t5 = time.perf_counter()
names = ("import cli", "load_node (XML)", "fetch_image", "diagnose", "render json")
print("  ".join(f"{{n}} {{1000 * d:.1f}} ms" for n, d in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4))))
"""


def stage_times(registry: Registry, ref: str, env: dict[str, str]) -> str:
    """Where preflight's time goes, in-process (after interpreter start-up)."""
    code = STAGES.format(node=str(NODE), ref=ref, host=registry.host)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO, env=env
    )
    return done.stdout.strip() or done.stderr.strip()[-300:]


def gpudoctor_command() -> list[str]:
    """The `gpudoctor` console script next to this interpreter, as users run it (pip installs
    it into the venv's bin/); `python -m gpudoctor` where there is none."""
    script = Path(sys.executable).parent / "gpudoctor"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gpudoctor"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--layer-mib", type=int, default=1024)
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        print("skopeo not installed (apt-get install skopeo)", file=sys.stderr)
        return 69
    with running_registry() as registry:
        started = time.perf_counter()
        layer = push_big_image(registry, args.layer_mib << 20)
        print(f"pushed {args.layer_mib} MiB layer {layer[:19]} in {time.perf_counter() - started:.1f}s")
        ref = f"{registry.host}/bench/vllm:cu13"
        preflight = [*gpudoctor_command(), "preflight", ref, "--insecure-registry", registry.host,
                     "--node", str(NODE), "--format", "json"]  # fmt: skip
        print(f"preflight command: {' '.join(preflight[:2])} ...")
        skopeo = ["skopeo", "inspect", "--config", "--tls-verify=false", f"docker://{ref}"]
        # As installed (pip writes bytecode), not as this checkout with PYTHONDONTWRITEBYTECODE:
        # bytecode goes to a private cache dir, warmed by one run that is not counted.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="gpd-bench-pyc-")
        measure(registry, preflight, env)
        results: dict[str, list[tuple[float, int, list[str], int]]] = {"preflight": [], "skopeo": []}
        for _ in range(args.runs):
            results["preflight"].append(measure(registry, preflight, env))
            results["skopeo"].append(measure(registry, skopeo, env))
        breakdown = stage_times(registry, ref, env)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        interpreter_ms = (time.perf_counter() - started) * 1000
        shutil.rmtree(env["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    rows = {}
    for name, runs in results.items():
        walls = [r[0] for r in runs]
        rows[name] = (
            statistics.median(walls),
            min(walls),
            max(r[1] for r in runs),
            runs[-1][2],
            {r[3] for r in runs},
        )
        print(f"{name:9s} wall median {rows[name][0] * 1000:7.1f} ms (min {rows[name][1] * 1000:.1f})  "
              f"bytes from registry {rows[name][2]:6d}  requests {len(rows[name][3])}  exit {sorted(rows[name][4])}")  # fmt: skip
        for uri in rows[name][3]:
            print(f"            {uri}")
    print(f"preflight stages: python start-up {interpreter_ms:.1f} ms  {breakdown}")
    layer_fetched = any(layer in uri for runs in results.values() for r in runs for uri in r[2])
    ratio = rows["preflight"][0] / rows["skopeo"][0]
    bytes_ok = rows["preflight"][2] < 64 * 1024
    print(f"preflight/skopeo wall ratio {ratio:.2f} (target <= 3)  bytes {rows['preflight'][2]} (target < 65536)  "
          f"layer fetched: {layer_fetched}")  # fmt: skip
    return 0 if bytes_ok and ratio <= 3 and not layer_fetched else 1


if __name__ == "__main__":
    sys.exit(main())
