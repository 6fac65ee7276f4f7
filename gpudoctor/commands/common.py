"""Options and output handling shared by the commands.

The options every command spells the same way (`--node FILE`, `--format`,
`-o, --output FILE`, `--rules PATH`) are defined once here, as click decorators.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gpudoctor import exitcodes
from gpudoctor.progress import set_quiet

if TYPE_CHECKING:
    from gpudoctor.facts import NodeFacts
    from gpudoctor.images import RegistryOptions

F = TypeVar("F", bound=Callable[..., object])

# --format NAME -> module gpudoctor.report.<module> exposing render(report: dict) -> str
RENDERERS = {
    "table": "table",
    "json": "json_render",
    "prometheus": "prometheus",
    "nfd": "nfd",
    "oneline": "oneline",
    "html": "html",
}

RULES_ENV = "GPUDOCTOR_RULES"

# A file that may not exist yet (the command says so, with its own exit code), but not a directory.
FILE = click.Path(dir_okay=False)


# -q / -v of the running command (set by Command.invoke, read by write_text and the renderers).
VERBOSITY: dict[str, Any] = {"quiet": False, "verbose": False, "timings": {}}


class Command(click.Command):
    """click.Command whose usage errors all name the command: click raises "Option '--gpu'
    requires an argument" without its context, and the CLI prints that context's usage.

    Every command also takes -q/--quiet (the verdict line only; --output still gets the whole
    report) and -v/--verbose (the table adds each finding's evidence; the time each stage
    took goes to stderr)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(
            click.Option(
                ["-q", "--quiet"], is_flag=True, help="Print only the verdict line (same exit code)."
            )
        )
        self.params.append(
            click.Option(
                ["-v", "--verbose"],
                is_flag=True,
                help="Add each finding's evidence (table) and the time each stage took (stderr).",
            )
        )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.ctx = exc.ctx or ctx
            raise

    def invoke(self, ctx: click.Context) -> Any:
        quiet, verbose = ctx.params.pop("quiet", False), ctx.params.pop("verbose", False)
        if quiet and verbose:
            raise click.UsageError("--quiet and --verbose exclude each other", ctx)
        VERBOSITY.update(quiet=quiet, verbose=verbose, timings={})
        set_quiet(quiet)
        start = time.perf_counter()
        try:
            return super().invoke(ctx)
        finally:
            if verbose:
                VERBOSITY["timings"]["total"] = time.perf_counter() - start
                stages = ", ".join(
                    f"{name} {seconds * 1000:.0f} ms" for name, seconds in VERBOSITY["timings"].items()
                )
                print(f"gpudoctor: {ctx.info_name}: {stages}", file=sys.stderr)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Record how long a stage took, for --verbose."""
    start = time.perf_counter()
    try:
        yield
    finally:
        VERBOSITY["timings"][stage] = time.perf_counter() - start


class Group(click.Group):
    """click.Group of Commands (above)."""

    command_class = Command


def render(report: dict[str, object], fmt: str) -> str:
    text: str = importlib.import_module(f"gpudoctor.report.{RENDERERS[fmt]}").render(report)
    return text


def write_text(text: str, output: str | None, verdict: str | None = None) -> None:
    """To --output atomically, else to stdout (ending in a newline). With --quiet, stdout gets
    only the verdict line (`verdict` given), the --output file still the whole text."""
    from gpudoctor.fileio import stdout_errors, write_atomic

    if output:
        write_atomic(output, text)
    if VERBOSITY["quiet"] and verdict is not None:
        from gpudoctor.report.style import verdict_text

        text = f"verdict: {verdict_text(verdict)}\n"
    elif output:
        return
    with stdout_errors():
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def emit(report: dict[str, object], fmt: str, output: str | None) -> int:
    """Render, write to --output atomically or to stdout, return the exit code."""
    if fmt == "table" and VERBOSITY["verbose"]:
        from gpudoctor.report.table import render as render_table

        text = render_table(report, verbose=True)
    else:
        text = render(report, fmt)
    write_text(text, output, str(report["verdict"]))
    return exitcodes.for_verdict(str(report["verdict"]))


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


def output_option(function: F) -> F:
    return click.option(
        "-o", "--output", type=FILE, default=None, help="Write here (atomically) instead of stdout."
    )(function)


def node_option(help_text: str) -> Callable[[F], F]:
    """--node FILE: a saved gpudoctor JSON report or `nvidia-smi -q -x` XML; what it is for is the command's."""
    return click.option("--node", "node_file", type=FILE, default=None, help=help_text)


def rules_option(function: F) -> F:
    return click.option(
        "--rules",
        "rule_dirs",
        multiple=True,
        metavar="PATH",
        help=f"Extra site-local rule files or directories (repeatable; also ${RULES_ENV}, ':'-separated).",
    )(function)


def root_options(function: F) -> F:
    """--host-root / --sysfs-root: where a live scan reads the node's files from.

    --host-root DIR: a host mounted into a container on that host (the Kubernetes DaemonSet's
    /host): host files (procfs, sysfs, /etc, package databases, CDI specs) under DIR, NVML still
    queried through the libnvidia-ml the NVIDIA container runtime injected, the host's kernel.
    --sysfs-root DIR: a recorded tree (tests, bug reports): files only, nothing live, no NVML."""
    function = click.option(
        "--sysfs-root",
        type=click.Path(file_okay=False),
        default=None,
        help="Read /proc, /sys and /etc of a RECORDED tree under DIRECTORY; nothing live (no NVML).",
    )(function)
    return click.option(
        "--host-root",
        type=click.Path(file_okay=False),
        default=None,
        help="Read the host's files under DIRECTORY (a host mounted into a container) and still "
        "query NVML through the library the container runtime injected.",
    )(function)


def collect_live(host_root: str | None, sysfs_root: str | None, other: str | None = None) -> NodeFacts:
    """The node a live scan sees, after checking the root options (other: a conflicting input option)."""
    from gpudoctor.errors import InputMissing, UsageError
    from gpudoctor.probes.collect import collect_node

    if host_root is not None and sysfs_root is not None:
        raise UsageError("--host-root and --sysfs-root cannot be combined: one root is read")
    for name, root in (("--host-root", host_root), ("--sysfs-root", sysfs_root)):
        if root is None:
            continue
        if other is not None:
            raise UsageError(f"{name} is for a live scan; it cannot be combined with {other}")
        if not Path(root).is_dir():
            raise InputMissing(f"{root}: no such directory ({name})")
    return collect_node(sysfs_root=sysfs_root, host_root=host_root)


def rule_dirs_from(options: tuple[str, ...]) -> list[str]:
    """Site-local rule files and directories: the --rules values, then $GPUDOCTOR_RULES."""
    env = os.environ.get(RULES_ENV, "")
    return [*options, *(p for p in env.split(os.pathsep) if p)]


def registry_options(function: F) -> F:
    """How registries are reached (preflight, fleet): --insecure-registry, --ca-bundle,
    --proxy, --registry-mirror (mirrors are read under the host root: preflight's root option,
    fleet's registry_host_root_option)."""
    options = [
        click.option(
            "--insecure-registry",
            "insecure_registries",
            multiple=True,
            metavar="HOST:PORT",
            help="Use plain HTTP for this registry (repeatable). Loopback registries (127.0.0.0/8, ::1, "
            "localhost) are insecure by default, as dockerd treats them; every other one uses verified TLS.",
        ),
        click.option(
            "--ca-bundle",
            type=FILE,
            default=None,
            help="PEM file of CA certificates to trust for registry TLS.",
        ),
        click.option(
            "--proxy",
            default=None,
            metavar="URL",
            help="HTTP(S) proxy for registry requests (default: $HTTPS_PROXY / $HTTP_PROXY; $NO_PROXY applies).",
        ),
        click.option(
            "--registry-mirror",
            "registry_mirrors",
            multiple=True,
            metavar="URL|REGISTRY=URL",
            help="Try this mirror first: for Docker Hub (URL) or for REGISTRY (repeatable). The node's "
            "/etc/docker/daemon.json registry-mirrors and /etc/containerd/certs.d/*/hosts.toml apply too.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


# fleet reads no live node: there --host-root only says where the node's daemon.json and
# containerd hosts.toml are (preflight's --host-root, from root_options, means that too).
registry_host_root_option = click.option(
    "--host-root",
    type=click.Path(file_okay=False),
    default="/",
    show_default=True,
    metavar="DIR",
    help="Read the node's daemon.json and containerd hosts.toml under DIR (a host mounted in a container).",
)


def registry_options_from(
    insecure_registries: tuple[str, ...],
    ca_bundle: str | None,
    proxy: str | None,
    registry_mirrors: tuple[str, ...],
    host_root: str,
) -> RegistryOptions:
    """RegistryOptions from the option values (a --ca-bundle that does not exist is 66)."""
    from gpudoctor.errors import InputMissing
    from gpudoctor.images import RegistryOptions

    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        raise InputMissing(f"{ca_bundle}: no such file (--ca-bundle)")
    if proxy is not None and "://" not in proxy:
        proxy = f"http://{proxy}"
    return RegistryOptions(
        insecure_registries=tuple(insecure_registries),
        ca_bundle=ca_bundle,
        proxy=proxy,
        mirrors=tuple(registry_mirrors),
        host_root=host_root,
    )
