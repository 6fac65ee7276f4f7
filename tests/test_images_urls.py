"""URL splitting and addresses without urllib.parse (gpudoctor/images/urls.py): the split
agrees with urlsplit, a join with urljoin, and a netloc is refused wherever urlsplit would
have failed, and wherever a host the client should not connect to hides."""

from __future__ import annotations

import socket
from urllib.parse import urljoin, urlsplit

import pytest

from gpudoctor.images.urls import BadURL, host_and_port, join_url, literal_family, split_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/v2/app/manifests/1",
        "https://registry.example.com/v2/",
        "http://h/p?x=1&y=2",
        "http://h/p?",
        "http://h/p#frag",
        "http://h/p?x#f?y",
        "http://h#f",
        "http://h?q",
        "http://h",
        "HTTPS://Host.Example/P",
        " \x01http://h/p",
        "ht\ttp://h/\r\np\n",
        "http://[::1]:5000/v2/",
        "http:relative",
        "mailto:someone",
        "//h/p",
        "/just/a/path",
        "1http://h/",
        "ht~tp://h/",
        "",
    ],
)
def test_split_agrees_with_urlsplit(url: str) -> None:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    assert split_url(url) == (parts.scheme, parts.netloc, target)


@pytest.mark.parametrize(
    ("netloc", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 80)),
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("Registry.Example.COM:443", ("registry.example.com", 443)),
        ("localhost:", ("localhost", 80)),
        ("[::1]", ("::1", 80)),
        ("[::1]:5000", ("::1", 5000)),
        ("[FE80::1%eth0]:65535", ("fe80::1%eth0", 65535)),
        ("[::ffff:127.0.0.1]:1", ("::ffff:127.0.0.1", 1)),
        ("under_score.local", ("under_score.local", 80)),
    ],
)
def test_host_and_port(netloc: str, expected: tuple[str, int]) -> None:
    assert host_and_port(netloc, 80) == expected
    if "%" not in netloc:  # urlsplit's own reading, where it has one
        parts = urlsplit(f"//{netloc}")
        assert (parts.hostname, parts.port or 80) == expected


@pytest.mark.parametrize(
    ("netloc", "message"),
    [
        ("host:65536", "bad port in 'host:65536'"),
        ("host:0", "bad port in 'host:0'"),
        ("host:-1", "bad port in 'host:-1'"),
        ("host:5o00", "bad port in 'host:5o00'"),
        ("host:1:2", "bad port in 'host:1:2'"),
        ("host: 80", "bad port in 'host: 80'"),
        ("[::1]:x", "bad port in '[::1]:x'"),
        ("[::1", "bad IPv6 address in '[::1'"),
        ("::1]", "bad host '::1]'"),
        ("[127.0.0.1]", "bad IPv6 address in '[127.0.0.1]'"),
        ("[::1]junk", "bad IPv6 address in '[::1]junk'"),
        ("[registry]", "bad IPv6 address in '[registry]'"),
        ("[fe80::1%]", "bad IPv6 address in '[fe80::1%]'"),
        ("[fe80::1%e/0]", "bad IPv6 address in '[fe80::1%e/0]'"),
        ("[v1.future]", "bad IPv6 address in '[v1.future]'"),
        ("user:secret@host", "URLs with user info are not supported"),
        ("host@", "URLs with user info are not supported"),
        ("", "bad host ''"),
        (":5000", "bad host ':5000'"),
        ("bad host", "bad host 'bad host'"),
        ("nul\x00host", "bad host 'nul\\x00host'"),
        ('quo"te', "bad host 'quo\"te'"),
        ("hö.example", "host 'hö.example' is not ASCII"),
        ("١٢٣.example:١", "host '١٢٣.example:١' is not ASCII"),
    ],
)
def test_netlocs_the_client_refuses(netloc: str, message: str) -> None:
    with pytest.raises(BadURL) as err:
        host_and_port(netloc, 80)
    assert str(err.value) == message
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", socket.AF_INET),
        ("::1", socket.AF_INET6),
        ("fe80::1%eth0", socket.AF_INET6),
        ("::ffff:10.0.0.1", socket.AF_INET6),
        ("127.1", None),  # not strict dotted-quad: left to getaddrinfo, as socket.connect does
        ("localhost", None),
        ("127.0.0.1%eth0", None),
        ("fe80::1%", None),
        ("a\x00b", None),
    ],
)
def test_literal_family(host: str, family: int | None) -> None:
    assert literal_family(host) == family


@pytest.mark.parametrize(
    "location",
    [
        "http://other:5000/cdn/blob?sig=1",
        "HTTPS://other/x",
        " http://other/x",
        "/v2/elsewhere",
        "../up",
        "./here",
        "sibling",
        "?q=1",
        "//other/x",
        "http:relative",
        "ftp://files/x",
    ],
)
def test_join_agrees_with_urljoin(location: str) -> None:
    base = "http://registry:5000/v2/app/blobs/sha256:abc"
    assert split_url(join_url(base, location)) == split_url(urljoin(base, location))
