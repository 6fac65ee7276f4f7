"""Reading files that someone else supplied: node reports, nvidia-smi XMLs, fleet
directories, rule and signature files, logs (docs/threat-model.md).

Every such file is opened here, once: it must be a regular file (a FIFO would block
the read forever, /dev/zero would never end, a device is no report), and it is read
up to a cap, so no input can hang gpudoctor or make it hold more than the cap in
memory. Symlinks are followed when the file is named on the command line; a walked
directory refuses symlinks that lead out of it (gpudoctor.fleet.load). Errors are one
line naming the file: InputMissing (66) when it cannot be read, BadInput (65) when
it is too large.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from typing import Any, BinaryIO

from gpudoctor.errors import BadInput, InputMissing

MIB = 1024 * 1024

# A real nvidia-smi XML of a 16-GPU node, or a gpudoctor report of one, is well under
# 2 MiB; the cap keeps a wrong file (a core dump, a tarball) from being read whole.
NODE_REPORT_MAX_BYTES = 64 * MIB
# The largest shipped rule file is 20 KB; site rule files get 800 times that.
RULE_FILE_MAX_BYTES = 16 * MIB


class UnusableInput(InputMissing):
    """A file that cannot be used as input; `reason` is the message without the path."""

    def __init__(self, path: str, reason: str, exit_code: int | None = None) -> None:
        super().__init__(f"{path}: {reason}", exit_code)
        self.reason = reason


class TooLarge(UnusableInput):
    exit_code = BadInput.exit_code


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """The file at `path` opened for reading, if it is a regular file (after symlinks).

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer;
    the file type is then checked on the open descriptor, so nothing can swap the file
    between the check and the read."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnusableInput(name, "no such file") from None
    except OSError as exc:
        reason = "a symlink loop" if exc.errno == errno.ELOOP else f"cannot read: {exc.strerror or exc}"
        raise UnusableInput(name, reason) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        expected = "expected a file" if stat.S_ISDIR(mode) else "only regular files are read"
        raise UnusableInput(name, f"is {_kind(mode)}, {expected}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_capped(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The whole regular file at `path`; TooLarge (exit 65) beyond `limit` bytes. `what`
    names the input in the message ("a node report")."""
    name = os.fspath(path)
    with open_regular(name) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            data = handle.read(limit + 1) if size <= limit else b""
        except OSError as exc:
            raise UnusableInput(name, f"cannot read: {exc.strerror or exc}") from None
    if size > limit or len(data) > limit:
        raise TooLarge(name, f"larger than {_size(limit)}, the limit for {what}")
    return data


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"


# "\ud800": JSON may escape a UTF-16 surrogate, and json accepts one without its pair, but
# such a string is no text: writing it out as UTF-8 fails. Only an escape can make one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def lone_surrogate(data: bytes, document: Any) -> bool:
    """Whether `document`, parsed from the JSON `data`, holds a lone surrogate (documents
    without a surrogate escape are not walked)."""
    if _SURROGATE_ESCAPE.search(data) is None:
        return False
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json(data: bytes | str, what: str) -> Any:
    """Any supplied JSON document; BadInput (65) naming `what` for any malformation, never
    json's own exceptions."""
    try:
        return json.loads(data)
    except RecursionError:
        raise BadInput(f"{what}: invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer over 4300 digits
        raise BadInput(f"{what}: invalid JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from None


def parse_toml(text: str, what: str) -> dict[str, Any]:
    """A supplied TOML document (a runtime's config under the host root); BadInput (65) naming
    `what` for any malformation, an integer over 4300 digits or nesting too deep included."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise BadInput(f"{what}: not valid TOML (nested too deeply)") from None
    except ValueError as exc:  # TOMLDecodeError, an integer over 4300 digits
        raise BadInput(f"{what}: not valid TOML ({str(exc)[:80]})") from None


# Values one YAML document may expand to through aliases: the largest shipped rule file holds
# under 1,000; an alias bomb (aliases of lists of aliases) would expand to billions.
MAX_YAML_VALUES = 1_000_000


class BadYaml(BadInput):
    """`reason`: the message without the file's name."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}:{reason}")
        self.reason = reason.strip()


def parse_yaml(text: str, what: str) -> Any:
    """A supplied YAML document (safe loader: no tags that build objects), refused as BadYaml
    naming `what` when it is not YAML, nests too deeply, holds an integer over Python's digit
    limit, or expands through aliases to more than MAX_YAML_VALUES values."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadYaml(what, f"{where} invalid YAML: {problem}") from None
    except (ValueError, RecursionError) as exc:  # an integer over 4300 digits, nesting too deep
        raise BadYaml(what, f" invalid YAML: {exc or 'nested too deeply'}") from None
    if not _expands_within(doc, MAX_YAML_VALUES):
        raise BadYaml(what, f" YAML aliases expand it to more than {MAX_YAML_VALUES:,} values")
    return doc


def _expands_within(doc: Any, limit: int) -> bool:
    """True when `doc`, with every alias expanded, holds at most `limit` values. Counts
    without expanding (a shared list is walked once per reference, but the walk stops at
    the limit), so it costs at most `limit` steps."""
    budget = limit
    stack = [doc]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
            budget -= len(item)
        elif isinstance(item, list):
            stack.extend(item)
    return True
