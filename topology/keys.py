"""API key files: one client a line, "id scopes sha256-hex", as the replicas
read them (serve-go/apikey). The key itself is printed once, when added,
and never stored.

    python -m topology keys add FILE ID SCOPES   SCOPES: predict,read,write (a comma list)
    python -m topology keys revoke FILE ID
    python -m topology keys list FILE

Every change replaces the file atomically (write beside it, rename): the
replicas re-read it on their next check, so a key works or stops working
at once and no request sees a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path

SCOPES = ("predict", "read", "write")


class KeyFileError(ValueError):
    pass


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read(path: Path) -> list[tuple[str, str, str]]:
    """The entries (id, scopes, hash) of the file; none if it does not exist."""
    if not path.exists():
        return []
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise KeyFileError(f"{path} line {n}: want 'id scopes sha256', got {len(fields)} fields")
        entries.append((fields[0], fields[1], fields[2]))
    return entries


def _write(path: Path, entries: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:  # mkstemp: mode 0600
        out.write("# skl2go API keys: id scopes sha256(key). Managed by python -m topology keys.\n")
        out.writelines(f"{i} {s} {h}\n" for i, s, h in entries)
    os.replace(tmp, path)


def add(path: Path, client: str, scopes: str) -> str:
    """Add a client with a new key; returns the key (shown once)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", client):
        raise KeyFileError(f"client id must be 1-64 of A-Z a-z 0-9 _ . -, got {client!r}")
    wanted = scopes.split(",")
    if not scopes or any(s not in SCOPES for s in wanted):
        raise KeyFileError(f"scopes must be a comma list of {', '.join(SCOPES)}, got {scopes!r}")
    entries = read(path)
    if any(i == client for i, _, _ in entries):
        raise KeyFileError(f"client {client!r} already has a key in {path}: revoke it first")
    key = secrets.token_urlsafe(32)
    _write(path, [*entries, (client, ",".join(dict.fromkeys(wanted)), digest(key))])
    return key


def revoke(path: Path, client: str) -> None:
    entries = read(path)
    kept = [e for e in entries if e[0] != client]
    if len(kept) == len(entries):
        raise KeyFileError(f"no client {client!r} in {path}")
    _write(path, kept)


def main(args: list[str]) -> int:
    match args:
        case ["add", file, client, scopes]:
            print(add(Path(file), client, scopes))
        case ["revoke", file, client]:
            revoke(Path(file), client)
        case ["list", file]:
            for client, scopes, _ in read(Path(file)):
                print(client, scopes)
        case _:
            print(__doc__.split("\n\n")[1])
            return 2
    return 0
