"""Installed package versions from the host's package databases, read as files.

dpkg: /var/lib/dpkg/status (deb822 paragraphs; a package counts when its Status
ends in "installed"). rpm: /var/lib/rpm/rpmdb.sqlite (rpm >= 4.16's sqlite backend:
table `Packages(hnum, blob)` of header blobs and the index table `Name(key, hnum)`),
opened read-only and immutable so a read-only host mount works. A header blob is
rpm's header format: big-endian index count and data size, 16-byte index entries
(tag, type, offset, count), then the data store; NAME/VERSION/RELEASE are tags
1000/1001/1002, NUL-terminated strings. The Berkeley DB format of older rpm
(/var/lib/rpm/Packages) is not read: its versions are unknown, with that reason.
"""

from __future__ import annotations

import struct

from gpudoctor.probes.fsroot import FsRoot, SourceUnreadable

DPKG_STATUS = "/var/lib/dpkg/status"
RPMDB_SQLITE = "/var/lib/rpm/rpmdb.sqlite"
RPMDB_BDB = "/var/lib/rpm/Packages"
_TAG_VERSION, _TAG_RELEASE = 1001, 1002
_STRING = 6  # RPM_STRING_TYPE


def dpkg_versions(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """name -> Version of each installed package in a dpkg status file."""
    found: dict[str, str] = {}
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # continuation lines (descriptions, conffiles)
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        name = fields.get("package")
        if name in names and fields.get("status", "").endswith(" installed") and fields.get("version"):
            found[name] = fields["version"]
    return found


def upstream_version(package_version: str) -> str:
    """The upstream part of a deb/rpm version: '1.17.8-1' -> '1.17.8', '1.18.0~rc.1-1' -> '1.18.0-rc.1'."""
    version = package_version.split(":", 1)[-1]  # epoch
    if "-" in version:
        version = version.rsplit("-", 1)[0]  # Debian revision / rpm release
    return version.replace("~", "-")


def rpm_header_strings(blob: bytes) -> dict[int, str]:
    """String tags of one rpm header blob (as stored in rpmdb.sqlite)."""
    if len(blob) < 8:
        raise ValueError("rpm header blob too short")
    count, size = struct.unpack_from(">II", blob, 0)
    store = 8 + 16 * count
    if count > 100_000 or store + size > len(blob):
        raise ValueError("rpm header blob truncated")
    strings: dict[int, str] = {}
    for index in range(count):
        tag, kind, offset, _ = struct.unpack_from(">iIiI", blob, 8 + 16 * index)
        if kind != _STRING or not 0 <= offset < size:
            continue
        start = store + offset
        end = blob.find(b"\0", start, store + size)
        if end >= 0:
            strings[tag] = blob[start:end].decode("utf-8", "replace")
    return strings


def rpm_versions(fs: FsRoot, names: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
    """(name -> "version-release", None) from rpmdb.sqlite, or ({}, why not)."""
    import sqlite3

    path = fs.path(RPMDB_SQLITE)
    if not path.exists():
        if fs.exists(RPMDB_BDB):
            return {}, f"{RPMDB_BDB} is a Berkeley DB rpm database, which gpudoctor does not read"
        return {}, None
    if not path.is_file():
        return {}, f"{RPMDB_SQLITE}: not a regular file"
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        return {}, f"{RPMDB_SQLITE}: {exc}"
    found: dict[str, str] = {}
    try:
        marks = ",".join("?" * len(names))
        rows = connection.execute(
            f"SELECT Name.key, Packages.blob FROM Name JOIN Packages ON Packages.hnum = Name.hnum "  # noqa: S608 - placeholders only
            f"WHERE Name.key IN ({marks})",
            names,
        ).fetchall()
        for name, blob in rows:
            tags = rpm_header_strings(bytes(blob))
            if _TAG_VERSION in tags:
                release = tags.get(_TAG_RELEASE)
                found[str(name)] = tags[_TAG_VERSION] + (f"-{release}" if release else "")
    except (sqlite3.Error, ValueError, struct.error) as exc:
        return found, f"{RPMDB_SQLITE}: {exc}"
    finally:
        connection.close()
    return found, None


def installed_versions(
    fs: FsRoot, names: tuple[str, ...]
) -> tuple[dict[str, tuple[str, str]], list[str], list[str]]:
    """name -> (upstream version, database path) from dpkg and rpm; the databases gpudoctor does
    not read (their format); and the databases that are there but could not be read (failures)."""
    found: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    errors: list[str] = []
    try:
        # A description in another encoding is not worth losing the versions over.
        status = fs.read_source(DPKG_STATUS, limit=64 << 20, strict=False)
    except SourceUnreadable as exc:
        status = None
        errors.append(str(exc))
    if status is not None:
        for name, version in dpkg_versions(status, names).items():
            found[name] = (upstream_version(version), DPKG_STATUS)
    rpms, problem = rpm_versions(fs, names)
    if problem:
        (problems if problem.startswith(RPMDB_BDB) else errors).append(problem)
    for name, version in rpms.items():
        found.setdefault(name, (upstream_version(version), RPMDB_SQLITE))
    return found, problems, errors
