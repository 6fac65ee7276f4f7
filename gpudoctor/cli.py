"""Command-line entry point: wiring only.

Subcommands live in gpudoctor/commands/<name>.py and are imported only when
invoked, so `gpudoctor --version` and `--help` stay fast (no rich, yaml, pynvml
or docker import on that path).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from gpudoctor import __version__, exitcodes

# name -> (module, one-line help). Help text is kept here so `gpudoctor --help`
# does not import every command module.
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("gpudoctor.commands.scan", "Probe this node (or a saved nvidia-smi XML) and diagnose it."),
    "preflight": ("gpudoctor.commands.preflight", "Decide before the pull whether IMAGE will run on a node."),
    "kernels": (
        "gpudoctor.commands.kernels",
        "List CUDA kernels in binaries and say per GPU: native, jit or none.",
    ),
    "rules": ("gpudoctor.commands.rules", "List, show and lint the rules."),
    "fleet": (
        "gpudoctor.commands.fleet",
        "Aggregate node reports into node classes and an image runnability matrix.",
    ),
    "explain": (
        "gpudoctor.commands.explain",
        "Name the cause of a GPU stack failure from its log, with the fix.",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[cmd_name]
        command: click.Command = importlib.import_module(module_name).command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="gpudoctor")
def cli() -> None:
    """gpudoctor: will this GPU software stack run on this node, and run fast?

    Exit codes: 0 ok, 1 warn, 2 fail, 3 unknown (could not diagnose);
    64 usage, 65 bad input data, 66 input missing, 69 service unavailable,
    70 internal error, 73 cannot write output.
    """


def main(argv: list[str] | None = None) -> Any:
    from gpudoctor.errors import GpudoctorError

    try:
        rv = cli.main(args=argv, prog_name="gpudoctor", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("gpudoctor: aborted", err=True)
        sys.exit(exitcodes.USAGE)
    except click.ClickException as exc:
        # click uses 2 for usage errors; 2 means "fail" to a health checker.
        exc.show()
        sys.exit(exitcodes.USAGE if exc.exit_code == 2 else exc.exit_code or exitcodes.USAGE)
    except GpudoctorError as exc:
        click.echo(f"gpudoctor: {exc}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(exitcodes.OK)
    except KeyboardInterrupt:
        click.echo("gpudoctor: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, exit 70
        click.echo(f"gpudoctor: internal error: {type(exc).__name__}: {exc} (please report this)", err=True)
        sys.exit(exitcodes.SOFTWARE)
    # Commands return their exit code (0-3) instead of calling sys.exit themselves.
    sys.exit(rv if isinstance(rv, int) else exitcodes.OK)


if __name__ == "__main__":
    main()
