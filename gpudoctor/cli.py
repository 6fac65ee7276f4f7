"""Command-line entry point: a click group, wiring only.

Each command lives in gpudoctor/commands/<name>.py as a click command named
`command` (its options, help with examples, and logic). The group loads only
the invoked command's module (click's "lazily loading subcommands" pattern), so
`--version` and `--help` do not import rich, yaml, pynvml or docker.

Shell completion is click's: `eval "$(_GPUDOCTOR_COMPLETE=bash_source gpudoctor)"`
(zsh_source, fish_source for the other shells).
"""

from __future__ import annotations

import importlib
import io
import os
import sys

import click

from gpudoctor import __version__, exitcodes

# name -> (module, one-line help). The help is kept here so `gpudoctor --help`
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

COMPLETE_VAR = "_GPUDOCTOR_COMPLETE"

# Every command and sub-command: "-h" as well as "--help", help at most 80 columns wide.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 80}


class LazyGroup(click.Group):
    """The commands of COMMANDS, each imported when it is invoked (or completed)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = importlib.import_module(COMMANDS[cmd_name][0]).command
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if name not in COMMANDS and not name.startswith("-") and not ctx.resilient_parsing:
            # click's own error names close matches ("Did you mean 'scan'?") from the
            # commands it holds; this group holds none until one is loaded.
            raise click.exceptions.NoSuchCommand(name, possibilities=list(COMMANDS), ctx=ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in COMMANDS.items()])


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  gpudoctor scan
  gpudoctor preflight nvcr.io/nvidia/pytorch:25.01-py3
  gpudoctor COMMAND --help

\b
Shell completion (bash; zsh_source and fish_source for the others):
  eval "$(_GPUDOCTOR_COMPLETE=bash_source gpudoctor)"
""",
)
@click.version_option(__version__, "-V", "--version", prog_name="gpudoctor")
def cli() -> None:
    """gpudoctor: will this GPU software stack run on this node, and run fast?

    \b
    Exit codes: 0 ok, 1 warn, 2 fail, 3 unknown (could not diagnose);
    64 usage, 65 bad input data, 66 input missing, 69 service unavailable,
    70 internal error, 73 cannot write output, 75 temporary failure (retry later),
    77 permission refused by a registry.
    """


def _show_usage_error(exc: click.UsageError) -> None:
    """Two lines on stderr: the usage, then the error. With no command at all, the help
    (as click would print it)."""
    ctx = exc.ctx
    if isinstance(exc, click.exceptions.NoArgsIsHelpError) and ctx is not None:
        click.echo(ctx.get_help(), err=True)
        return
    prog = ctx.command_path if ctx is not None else "gpudoctor"
    if ctx is not None:
        click.echo(ctx.get_usage(), err=True)
    click.echo(f"{prog}: error: {exc.format_message()}", err=True)


def run(argv: list[str]) -> int:
    """Parse argv and run the command it names; its exit code (0-3). click's exceptions
    (--help, --version, usage errors) and GpudoctorError propagate to main."""
    with cli.make_context("gpudoctor", argv) as ctx:
        code = cli.invoke(ctx)
    return code if isinstance(code, int) else exitcodes.OK


def main(argv: list[str] | None = None) -> None:
    """The console script: run the command, exit with its code (0-3, or a sysexits code)."""
    from gpudoctor.errors import GpudoctorError, one_line

    if COMPLETE_VAR in os.environ:
        cli.main(argv, prog_name="gpudoctor", complete_var=COMPLETE_VAR)  # prints completions, exits
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Text the output encoding cannot carry (a lone surrogate a hostile input smuggled
        # past its parser, any non-ASCII text under an ASCII locale) is shown escaped, as
        # on stderr, instead of ending the run in an internal error.
        sys.stdout.reconfigure(errors="backslashreplace")
    _drop_unusable_terminal_size()
    try:
        code = run(sys.argv[1:] if argv is None else list(argv))
        _flush_stdout()  # a reader that went away (`| head`) or a full disk is seen here, not at exit
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # click exits 2 on a usage error, and 2 means "fail" to a health checker.
        _show_usage_error(exc)
        sys.exit(exitcodes.USAGE)
    except click.ClickException as exc:  # click.FileError and the like: one line
        click.echo(f"gpudoctor: {exc.format_message()}", err=True)
        sys.exit(exitcodes.USAGE)
    except GpudoctorError as exc:
        print(f"gpudoctor: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # Not an error. Point stdout at /dev/null so the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(exitcodes.OK)
    except (KeyboardInterrupt, click.exceptions.Abort):
        print("gpudoctor: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, exit 70
        text = one_line(f"{type(exc).__name__}: {exc}")
        print(f"gpudoctor: internal error: {text} (please report this)", file=sys.stderr)
        sys.exit(exitcodes.SOFTWARE)
    # Commands return their exit code (0-3) instead of calling sys.exit themselves.
    sys.exit(code)


def _drop_unusable_terminal_size() -> None:
    """rich and shutil int() COLUMNS and LINES when isdigit() says so: "²" or 5,000 digits
    was an internal error. A value that is no count is as good as none."""
    for name in ("COLUMNS", "LINES"):
        if name in os.environ:
            from gpudoctor.versions import count_from

            if count_from(os.environ[name]) is None:
                del os.environ[name]


def _flush_stdout() -> None:
    from gpudoctor.fileio import stdout_errors

    with stdout_errors():
        sys.stdout.flush()


if __name__ == "__main__":
    main()
