"""The command line on click: usage errors exit 64 with the usage and one line, only the
invoked command's module is imported, the same metavars and an Examples section everywhere,
"did you mean" for a mistyped command, and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor import __version__
from gpudoctor.cli import COMMANDS, main
from tests.support.cli import run_gpudoctor
from tests.support.imports import modules_loaded_by

REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi"
FLEET_XML = REPO / "fixtures" / "fleets" / "nvidia-smi"


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """main(args) in this process: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["scan", "--bogus"], "gpudoctor scan: error: No such option '--bogus'."),
        (
            ["scan", "--format", "yaml"],
            "gpudoctor scan: error: Invalid value for '--format': 'yaml' is not one of",
        ),
        (
            ["preflight", "ubuntu", "--format", "prometheus"],
            "Invalid value for '--format': 'prometheus' is not one of 'table', 'json', 'oneline', 'html'.",
        ),
        (["preflight"], "gpudoctor preflight: error: Missing argument 'IMAGE...'."),
        (["preflight", "ubuntu", "--source", "ftp"], "Invalid value for '--source': 'ftp' is not one of"),
        (
            ["preflight", "ubuntu", "--node", str(XML)],
            f"Invalid value for '--node': File '{XML}' is a directory.",
        ),
        (["scan", "-o", str(XML)], f"Invalid value for '-o' / '--output': File '{XML}' is a directory."),
        (["scan", "--sysfs-root", str(XML / "Tesla-T4_515.105.01.xml")], "is a file"),
        (["preflight", "ubuntu", "--form", "json"], "No such option '--form'."),  # no abbreviations
        (["kernels", "--gpu"], "gpudoctor kernels: error: Option '--gpu' requires an argument."),
        (["kernels"], "Missing argument 'PATHS...'."),
        (["fleet", "--format", "csv"], "Missing argument 'PATHS...'."),
        (["explain"], "Missing argument 'LOG|-'."),
        (["rules"], "gpudoctor rules: error: Missing command."),
        (["rules", "nope"], "gpudoctor rules: error: No such command 'nope'."),
        (["rules", "show"], "gpudoctor rules show: error: Missing argument 'RULE_ID'."),
        (["bogus"], "gpudoctor: error: No such command 'bogus'."),
        (["--bogus", "scan"], "gpudoctor: error: No such option '--bogus'."),
        (["scan", "--version"], "gpudoctor scan: error: No such option '--version'."),
    ],
)
def test_usage_errors_exit_64_with_usage_and_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    code, out, err = run_main(capsys, *args)
    assert code == 64  # never click's 2: that is "fail" to a health checker
    assert out == ""
    usage, line = err.splitlines()
    assert usage.startswith("Usage: gpudoctor")
    assert line.startswith("gpudoctor") and error in line


def test_usage_error_from_the_console_script_is_64() -> None:
    done = run_gpudoctor("preflight", cwd=REPO)
    assert done.returncode == 64
    assert done.stderr.splitlines() == [
        "Usage: gpudoctor preflight [OPTIONS] IMAGE...",
        "gpudoctor preflight: error: Missing argument 'IMAGE...'.",
    ]


def test_no_command_prints_the_overview_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys)
    assert code == 64 and out == ""
    assert all(name in err for name in COMMANDS)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert run_main(capsys, flag) == (0, f"gpudoctor, version {__version__}\n", "")


def test_help_lists_every_command_with_its_help_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(capsys, "--help")
    assert code == 0 and err == ""
    text = " ".join(out.split())
    for name, (_, help_text) in COMMANDS.items():
        assert f"{name} {help_text}" in text
    assert "64 usage, 65 bad input data, 66 input missing" in text
    assert run_main(capsys, "-h")[1] == out


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["scan"],
            [
                "--format [table|json|prometheus|nfd|oneline|html]",
                "-o, --output FILE",
                "--sysfs-root DIRECTORY",
            ],
        ),
        (
            ["preflight"],
            ["--format [table|json|oneline|html]", "--platform OS/ARCH[/VARIANT]", "--pull-layers"],
        ),
        (["kernels"], ["--format [table|json]", "--gpu TEXT", "--node FILE"]),
        (["fleet"], ["--format [table|json|csv|html]", "--image REF", "--insecure-registry HOST:PORT"]),
        (
            ["explain"],
            ["--format [table|json]", "--scan", "Examples:", "kubectl logs POD | gpudoctor explain -"],
        ),
        (["rules"], ["lint", "list", "show"]),
        (["rules", "list"], ["--format [table|json]", "--rules PATH"]),
    ],
)
def test_command_help(capsys: pytest.CaptureFixture[str], command: list[str], expected: list[str]) -> None:
    code, out, _ = run_main(capsys, *command, "-h")
    assert code == 0
    assert out.startswith(f"Usage: gpudoctor {' '.join(command)} [OPTIONS]")
    for words in expected:
        assert words in out


MAIN = """
from gpudoctor.cli import main
try:
    main({args!r})
except SystemExit:
    pass
"""


def command_modules_loaded_by(*args: str) -> list[str]:
    return modules_loaded_by(MAIN.format(args=list(args)), ("rich", "yaml", "gpudoctor.commands"))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["bogus"]])
def test_version_and_help_import_no_command_module(args: list[str]) -> None:
    assert command_modules_loaded_by(*args) == []


def test_a_command_imports_only_its_own_module() -> None:
    assert command_modules_loaded_by("preflight", "--help") == [
        "gpudoctor.commands",
        "gpudoctor.commands.common",
        "gpudoctor.commands.preflight",
    ]


def test_repeatable_options_and_defaults() -> None:
    from gpudoctor.commands.preflight import command

    defaults = command.make_context("preflight", ["ubuntu"]).params
    assert (defaults["insecure_registries"], defaults["rule_dirs"], defaults["fmt"], defaults["output"]) == (
        (),
        (),
        "table",
        None,
    )
    assert (defaults["deep"], defaults["pull_layers"], defaults["node_file"], defaults["source"]) == (
        False,
        False,
        None,
        None,
    )
    args = command.make_context(
        "preflight",
        [
            "--insecure-registry",
            "a:5000",
            "ubuntu",
            "--insecure-registry=b:5000",
            "--rules",
            "x",
            "--rules",
            "y",
        ],
    ).params
    assert args["images"] == ("ubuntu",)
    assert args["insecure_registries"] == ("a:5000", "b:5000") and args["rule_dirs"] == ("x", "y")


def test_options_may_come_between_positional_values(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = FLEET_XML / "Tesla-T4_515.105.01.xml", FLEET_XML / "H800_580.65.06.xml"
    code, out, _ = run_main(capsys, "fleet", str(first), "--format", "json", str(second))
    assert code in (0, 1, 2, 3)
    assert json.loads(out)["nodes_total"] == 2


def test_output_option_short_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    code, out, _ = run_main(
        capsys,
        "scan",
        "--from-nvidia-smi",
        str(XML / "Tesla-T4_515.105.01.xml"),
        "--format",
        "json",
        "-o",
        str(target),
    )
    assert code in (0, 1, 2, 3) and out == ""
    assert json.loads(target.read_text())["verdict"]


def test_a_reader_that_goes_away_is_not_an_error() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gpudoctor", "rules", "list", "--format", "json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `| head -0`: gone before the first write
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert stderr == b""


def test_a_mistyped_command_names_the_close_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "preflihgt", "ubuntu")
    assert code == 64
    assert err.splitlines()[-1] == "gpudoctor: error: No such command 'preflihgt'. Did you mean 'preflight'?"


EVERY_COMMAND = [[name] for name in COMMANDS if name != "rules"] + [
    ["rules"],
    ["rules", "list"],
    ["rules", "show"],
    ["rules", "lint"],
]


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_every_help_has_examples_and_the_same_metavars(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, _ = run_main(capsys, *command, "--help")
    assert code == 0
    examples = out[out.index("Examples:") :].split("\n\n")[0].splitlines()[1:]
    assert examples and all(" gpudoctor " in f" {line} " for line in examples)
    # One spelling per shared option, whichever command has it.
    options = out[out.index("Options:") : out.index("Examples:")]
    for option, spelled in {
        "--node": "--node FILE ",
        "--output": "-o, --output FILE ",
        "--rules": "--rules PATH ",
        "--format": "--format [",
    }.items():
        if option in options:
            assert spelled in options


def test_bash_completion_of_command_names() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpudoctor"],
        env={
            **os.environ,
            "_GPUDOCTOR_COMPLETE": "bash_complete",
            "COMP_WORDS": "gpudoctor pre",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plain,preflight"]


def test_bash_completion_script() -> None:
    done = run_gpudoctor(cwd=REPO, env={"_GPUDOCTOR_COMPLETE": "bash_source"})
    assert done.returncode == 0
    assert "complete " in done.stdout and "_GPUDOCTOR_COMPLETE=bash_complete" in done.stdout
