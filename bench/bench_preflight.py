"""`gpudoctor preflight` and `fleet --image` x 20 against `skopeo inspect --config`, on a
registry 50 ms away.

1. A real distribution registry (Debian `docker-registry`) on 127.0.0.1, behind a relay
   (tests/support/relay.py, in this process) that holds every request 50 ms before passing
   it on: the round trips a user pays against a real registry, which loopback hides.
2. One image with a big layer (zeros streamed through the blob upload API) and a config
   with the real vllm/vllm-openai:v0.23.0 environment (fixtures/facts/images/).
   Alternating runs of
     gpudoctor preflight REF --insecure-registry RELAY --node fixtures/nvidia-smi/A100...xml --format json
     skopeo inspect --config --tls-verify=false docker://REF
   Per process: wall time, HTTP requests the relay saw, and body bytes it relayed back.
   Target: preflight makes no more requests and moves no more bytes than skopeo, and no
   layer is fetched. Wall times are printed side by side (Python's start-up is in them).
3. 20 images (the fixture image environments, each under its own repository):
     gpudoctor fleet fixtures/fleets/demo --image REF1 ... --image REF20 --format json
   against a loop of `skopeo inspect --config` over the same 20 references.
   Target: the fleet run at least 4x faster than the loop.

    .venv/bin/python bench/bench_preflight.py [--runs 5] [--layer-mib 256] [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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

from tests.support.relay import Relay, relaying  # noqa: E402
from tests.support.services import (  # noqa: E402
    OCI_MANIFEST,
    Registry,
    build_image,
    canonical,
    digest_of,
    image_config,
    push_image,
    running_registry,
)

NODE = REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml"
FLEET = REPO / "fixtures" / "fleets" / "demo"
IMAGE_FACTS = REPO / "fixtures" / "facts" / "images"
CHUNK = 8 << 20
FLEET_IMAGES = 20


def zeros(total: int) -> Iterator[bytes]:
    block = bytes(CHUNK)
    left = total
    while left > 0:
        yield block[: min(CHUNK, left)]
        left -= CHUNK


def push_big_image(registry: Registry, layer_bytes: int) -> str:
    env: dict[str, str] = json.loads((IMAGE_FACTS / "vllm-openai_v0.23.0-cuda13.0.2_amd64.json").read_text())[
        "env"
    ]
    hasher = hashlib.sha256()
    for chunk in zeros(layer_bytes):
        hasher.update(chunk)
    layer_digest = "sha256:" + hasher.hexdigest()
    registry.push_blob_stream("bench/vllm", layer_digest, layer_bytes, zeros(layer_bytes))
    config = canonical(image_config(env, "amd64", None, [layer_digest]))
    registry.push_blob("bench/vllm", config)
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                       "digest": digest_of(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer_bytes,
                        "digest": layer_digest}],
        }
    )  # fmt: skip
    registry.push_manifest("bench/vllm", "cu13", manifest, OCI_MANIFEST)
    return layer_digest


def push_fleet_images(registry: Registry, host: str) -> list[str]:
    """20 distinct images, each in its own repository, from the fixture environments."""
    facts = [json.loads(p.read_text()) for p in sorted(IMAGE_FACTS.glob("*.json"))]
    refs = []
    for index in range(FLEET_IMAGES):
        fact = facts[index % len(facts)]
        arch = (fact.get("platform") or {}).get("architecture") or "amd64"
        image = build_image(
            fact["env"], arch=arch, labels={**fact.get("labels", {}), "bench.index": str(index)}
        )
        push_image(registry, f"bench/fleet{index:02d}", "1", image)
        refs.append(f"{host}/bench/fleet{index:02d}:1")
    return refs


def measure(relay: Relay, command: list[str], env: dict[str, str]) -> tuple[float, int, int, int]:
    """(wall seconds, requests, body bytes, exit code) of one process."""
    requests, sent = len(relay.requests), relay.bytes_out
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, timeout=300, cwd=REPO, env=env)
    wall = time.perf_counter() - started
    return wall, len(relay.requests) - requests, relay.bytes_out - sent, done.returncode


def gpudoctor_command() -> list[str]:
    """The `gpudoctor` console script next to this interpreter, as users run it."""
    script = Path(sys.executable).parent / "gpudoctor"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gpudoctor"]


def skopeo(ref: str) -> list[str]:
    return ["skopeo", "inspect", "--config", "--tls-verify=false", f"docker://{ref}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layer-mib", type=int, default=256)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        print("skopeo not installed (apt-get install skopeo)", file=sys.stderr)
        return 69
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and "proxy" not in k.lower()}
    env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="gpd-bench-pyc-")
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"  # the registry, not a local engine
    ok = True
    with running_registry() as registry, relaying(registry.host, delay_s=args.delay_ms / 1000) as relay:
        layer = push_big_image(registry, args.layer_mib << 20)
        ref = f"{relay.host}/bench/vllm:cu13"
        print(f"registry {registry.host} behind a {args.delay_ms:g} ms-per-request relay at {relay.host}; "
              f"{args.layer_mib} MiB layer {layer[:19]}")  # fmt: skip
        preflight = [*gpudoctor_command(), "preflight", ref, "--insecure-registry", relay.host,
                     "--node", str(NODE), "--format", "json"]  # fmt: skip
        measure(relay, preflight, env)  # bytecode written once, not counted
        results: dict[str, list[tuple[float, int, int, int]]] = {
            "gpudoctor preflight": [],
            "skopeo inspect": [],
        }
        for _ in range(args.runs):
            mark = len(relay.requests)
            results["gpudoctor preflight"].append(measure(relay, preflight, env))
            preflight_uris = relay.requests[mark:]
            mark = len(relay.requests)
            results["skopeo inspect"].append(measure(relay, skopeo(ref), env))
            skopeo_uris = relay.requests[mark:]
        print("\n1. one image (wall: median of runs; requests and body bytes: per process)")
        for name, runs in results.items():
            walls = [r[0] for r in runs]
            print(f"   {name:20s} wall {statistics.median(walls) * 1000:7.1f} ms (min {min(walls) * 1000:.1f})  "
                  f"requests {max(r[1] for r in runs)}  bytes {max(r[2] for r in runs)}  "
                  f"exit {sorted({r[3] for r in runs})}")  # fmt: skip
        print(f"   gpudoctor asked: {preflight_uris}\n   skopeo asked:    {skopeo_uris}")
        ours, theirs = results["gpudoctor preflight"], results["skopeo inspect"]
        layer_fetched = any(layer in uri for uri in relay.requests)
        single_ok = (
            max(r[1] for r in ours) <= min(r[1] for r in theirs)
            and max(r[2] for r in ours) <= min(r[2] for r in theirs)
            and not layer_fetched
        )
        print(
            f"   requests <= skopeo's, bytes <= skopeo's, no layer fetched: {single_ok} (layer fetched: {layer_fetched})"
        )
        ok &= single_ok

        refs = push_fleet_images(registry, relay.host)
        fleet = [
            *gpudoctor_command(),
            "fleet",
            str(FLEET),
            "--format",
            "json",
            "--insecure-registry",
            relay.host,
        ]
        for image_ref in refs:
            fleet += ["--image", image_ref]
        measure(relay, fleet, env)  # warm: bytecode
        fleet_walls, loop_walls = [], []
        for _ in range(max(1, args.runs // 2)):
            wall, requests, sent, code = measure(relay, fleet, env)
            fleet_walls.append(wall)
            started = time.perf_counter()
            loop_requests = len(relay.requests)
            for image_ref in refs:
                subprocess.run(skopeo(image_ref), capture_output=True, timeout=120, check=True, env=env)
            loop_walls.append(time.perf_counter() - started)
            loop_requests = len(relay.requests) - loop_requests
        ratio = statistics.median(loop_walls) / statistics.median(fleet_walls)
        print(f"\n2. {FLEET_IMAGES} images x the demo fleet ({len(list(FLEET.glob('*.json')))} node reports)")
        print(f"   gpudoctor fleet --image x{FLEET_IMAGES}   wall {statistics.median(fleet_walls):6.2f} s  "
              f"requests {requests}  bytes {sent}  exit {code}")  # fmt: skip
        print(
            f"   skopeo inspect --config loop  wall {statistics.median(loop_walls):6.2f} s  requests {loop_requests}"
        )
        print(f"   speed-up {ratio:.1f}x (target >= 4x)")
        ok &= ratio >= 4
    shutil.rmtree(env["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
