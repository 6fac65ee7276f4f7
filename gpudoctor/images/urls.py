"""URLs and addresses for registry requests without urllib.parse, ipaddress or socket.

Why: `urllib.parse` costs ~2.5 ms to import (it imports ipaddress) and `socket` ~3.6 ms,
against ~0.7 ms for the C module `_socket` it wraps; preflight's budget is counted in
milliseconds (docs/startup.md). A registry read only ever asks for absolute
`http(s)://host[:port]/path?query` URLs, so they are split here the way `urlsplit` splits
them; only a redirect to a relative Location needs real joining and imports urllib.parse.

Malformed input raises `BadURL` (a ValueError) with a one-line reason that names the
host but never a query or user info (they may carry secrets).
"""

from __future__ import annotations

try:
    import _socket as sockets  # what socket.py wraps: inet_pton, getaddrinfo, socket objects
except ImportError:  # an interpreter that only offers the wrapper
    import socket as sockets  # type: ignore[no-redef]

# Stripped from the front, and tabs and line breaks removed everywhere, as urlsplit does
# (WHATWG URL parsing): a header value cannot put a line break into a request line.
_C0_CONTROL_OR_SPACE = "".join(map(chr, range(0x21)))
_UNSAFE = ("\t", "\r", "\n")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_SCHEME_CHARS = frozenset(_ALNUM + "+-.")
# RFC 3986: a reg-name is unreserved, pct-encoded and sub-delims characters; an RFC 6874
# zone id is unreserved ones. Anything else (space, controls, quotes, slashes) is refused
# before the resolver sees it.
_UNRESERVED = frozenset(_ALNUM + "-._~")
_HOST_CHARS = _UNRESERVED | frozenset("%!$&'()*+,;=")


class BadURL(ValueError):
    """A URL the client will not use."""


def split_url(url: str) -> tuple[str, str, str]:
    """`scheme://netloc/path?query#fragment` -> (scheme, netloc, request target), split as
    `urlsplit` splits it: the scheme lower-cased, the fragment dropped, an empty path "/"
    and an empty query left out. A URL without `//` has an empty netloc."""
    url = url.lstrip(_C0_CONTROL_OR_SPACE)
    for char in _UNSAFE:
        url = url.replace(char, "")
    scheme = ""
    colon = url.find(":")
    if colon > 0 and url[0].isascii() and url[0].isalpha() and _SCHEME_CHARS.issuperset(url[:colon]):
        scheme, url = url[:colon].lower(), url[colon + 1 :]
    netloc = ""
    if url.startswith("//"):
        ends = [at for at in (url.find(char, 2) for char in "/?#") if at >= 0]
        end = min(ends, default=len(url))
        netloc, url = url[2:end], url[end:]
    path, _, query = url.partition("#")[0].partition("?")
    return scheme, netloc, (path or "/") + (f"?{query}" if query else "")


def host_and_port(netloc: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host lower-cased without brackets, port).

    Stricter than urlsplit, never looser: user info, a non-ASCII host (a URI's host is
    ASCII; a str host would also load the idna codec), characters no host has, a bracket
    that is not an IPv6 address, and a port that is not 1-65535 are refused. An empty port
    is the default, as in urlsplit.
    """
    if "@" in netloc:
        raise BadURL("URLs with user info are not supported")
    if not netloc.isascii():
        raise BadURL(f"host {netloc!r} is not ASCII")
    if netloc.startswith("["):
        host, closed, after = netloc[1:].partition("]")
        if not closed or literal_family(host) != sockets.AF_INET6 or after[:1] not in ("", ":"):
            raise BadURL(f"bad IPv6 address in {netloc!r}")
        port = after[1:]
    else:
        host, _, port = netloc.partition(":")
        if not host or not _HOST_CHARS.issuperset(host):
            raise BadURL(f"bad host {netloc!r}")
    if not port:
        return host.lower(), default_port
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise BadURL(f"bad port in {netloc!r}")
    return host.lower(), int(port)


def literal_family(host: str) -> int | None:
    """AF_INET or AF_INET6 for an IP address literal (an IPv6 one may carry a %zone), else
    None: a name for the resolver. inet_pton is strict: "127.1" is a name here, as it is to
    the address parser behind socket.connect, and getaddrinfo then reads it as before."""
    address, percent, zone = host.partition("%")
    if percent and not (zone and _UNRESERVED.issuperset(zone)):
        return None
    for family in (sockets.AF_INET6,) if percent else (sockets.AF_INET, sockets.AF_INET6):
        try:
            sockets.inet_pton(family, address)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            continue
        return family
    return None


def join_url(base: str, location: str) -> str:
    """A redirect's Location against the URL that was asked. An absolute http(s) URL is
    used as it is (urljoin would hand it back unchanged); anything relative goes through
    urllib.parse.urljoin, imported only here, since resolving `..` and friends is its job."""
    if location.lstrip(_C0_CONTROL_OR_SPACE)[:8].lower().startswith(("http://", "https://")):
        return location
    from urllib.parse import urljoin

    return urljoin(base, location)
