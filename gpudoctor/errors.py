"""The one exception type that crosses module boundaries up to the CLI.

Anything raised as GpudoctorError is printed as one line on stderr and exits
with its sysexits code; anything else is a bug (exit 70, still one line).
Messages must never contain credentials or tokens.
"""

from __future__ import annotations

from gpudoctor import exitcodes

# An error message is one line of at most this many characters: a hostile input
# (a 10 MB line quoted back, a path of control characters) cannot flood a log.
MESSAGE_LIMIT = 1000


def one_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """`message` with line breaks and other control characters shown escaped, cut to `limit`."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message[: limit * 4])
    if len(text) <= limit:
        return text
    suffix = f"... ({len(message)} chars)"
    return text[: limit - len(suffix)] + suffix


class GpudoctorError(Exception):
    exit_code: int = exitcodes.SOFTWARE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(GpudoctorError):
    exit_code = exitcodes.USAGE


class BadInput(GpudoctorError):
    """Malformed input data: XML, JSON report, rule file, archive, registry answer."""

    exit_code = exitcodes.DATAERR


class InputMissing(GpudoctorError):
    exit_code = exitcodes.NOINPUT


class ServiceUnavailable(GpudoctorError):
    """Registry, Docker engine or another service could not be reached or refused."""

    exit_code = exitcodes.UNAVAILABLE


class CannotWrite(GpudoctorError):
    exit_code = exitcodes.CANTCREAT


class TemporaryFailure(GpudoctorError):
    """A service that may answer later: rate limited, 503, timed out after retries."""

    exit_code = exitcodes.TEMPFAIL


class PermissionRefused(GpudoctorError):
    """A service refused the credentials, or denied access with them."""

    exit_code = exitcodes.NOPERM
