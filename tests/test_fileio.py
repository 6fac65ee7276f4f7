"""--output and every other file gpudoctor writes: regular files are replaced atomically
with their mode and owner kept; devices, FIFOs and symlinks are written through or
refused, never replaced (gpudoctor/fileio.py)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from gpudoctor.errors import CannotWrite
from gpudoctor.fileio import write_atomic
from tests.support.cli import run_gpudoctor

XML = Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi" / "Tesla-T4_515.105.01.xml"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="making device nodes and other owners needs root")


def _device(tmp_path: Path, name: str, minor: int) -> Path:
    """A copy of /dev/null (1, 3) or /dev/full (1, 7) under tmp_path: tests never touch /dev."""
    node = tmp_path / name
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return node


def test_a_new_file_is_written_0644(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_atomic(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]  # no temp file left


@needs_root
def test_an_existing_file_keeps_its_owner(tmp_path: Path) -> None:
    target = tmp_path / "owned.json"
    target.write_text("old")
    os.chown(target, 4242, 4343)
    write_atomic(target, "new")
    assert (target.stat().st_uid, target.stat().st_gid) == (4242, 4343)


@needs_root
def test_a_null_device_is_written_through_not_replaced(tmp_path: Path) -> None:
    null = _device(tmp_path, "null", 3)
    write_atomic(null, "report")
    assert stat.S_ISCHR(null.stat().st_mode)


@needs_root
def test_a_full_device_is_exit_73_and_stays_a_device(tmp_path: Path) -> None:
    full = _device(tmp_path, "full", 7)
    with pytest.raises(CannotWrite, match="No space left on device"):
        write_atomic(full, "report")
    assert stat.S_ISCHR(full.stat().st_mode)
    done = run_gpudoctor("scan", "--from-nvidia-smi", str(XML), "--output", str(full))
    assert done.returncode == 73, done.stderr
    assert done.stderr.count("\n") == 1 and "No space left on device" in done.stderr
    assert stat.S_ISCHR(full.stat().st_mode)


def test_a_symlink_is_written_through_and_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(CannotWrite):
        write_atomic(tmp_path / "a", "x")
    assert (tmp_path / "a").is_symlink()


def test_a_fifo_without_reader_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with pytest.raises(CannotWrite, match="no process is reading"):
        write_atomic(fifo, "x")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_fifo_with_a_reader_gets_the_data(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before the write
    reader = threading.Thread(target=lambda: received.append(_read_all(fd)))
    reader.start()
    write_atomic(fifo, "x" * 200_000)  # more than a pipe buffer: the writer has to wait
    reader.join(10)
    assert received == [b"x" * 200_000]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, True)
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            if chunks:
                break
            continue  # no writer yet
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CannotWrite, match="is a directory"):
        write_atomic(tmp_path, "x")


# rules printed straight to stdout: a full disk was exit 70 (found by the red-team run)
@pytest.mark.parametrize(
    "args",
    [
        ("scan", "--from-nvidia-smi", str(XML)),
        ("rules", "list"),
        ("rules", "list", "--format", "json"),
        ("rules", "show", "GD-DRV-001"),
        ("rules", "lint"),
    ],
)
def test_stdout_on_a_full_disk_is_exit_73(args: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        done = run_gpudoctor_to(full, *args)
    assert done.returncode == 73, done.stderr
    assert done.stderr.count("\n") == 1 and "standard output" in done.stderr


def run_gpudoctor_to(stdout: object, *args: str) -> object:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gpudoctor", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


def test_output_to_dev_stdout_writes_into_the_pipe() -> None:
    done = run_gpudoctor("scan", "--from-nvidia-smi", str(XML), "--format", "json", "--output", "/dev/stdout")
    assert done.returncode in (0, 1, 2, 3), done.stderr
    assert json.loads(done.stdout)["node"]["source"] == "nvidia-smi-xml"
    assert os.path.islink("/dev/stdout")


@pytest.mark.parametrize("columns", ["²", "9" * 5000, "-1", "80x"])
def test_a_terminal_size_that_is_no_count_is_ignored(columns: str) -> None:
    """rich int()s COLUMNS and LINES when isdigit() says so: "²" and 5,000 digits were exit 70
    (found by the red-team run); such a value counts as unset (80 columns when piped)."""
    done = run_gpudoctor("scan", "--from-nvidia-smi", str(XML), env={"COLUMNS": columns, "LINES": columns})
    assert done.returncode in (0, 1, 2, 3), done.stderr
    unset = run_gpudoctor("scan", "--from-nvidia-smi", str(XML), env={"COLUMNS": "", "LINES": ""})
    assert done.stdout == unset.stdout
