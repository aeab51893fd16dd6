"""The unprivileged OS account Postgres runs as when we are root (PostgreSQL refuses to run as root).

The owner of an existing data dir, else ``tunepool`` (created with ``useradd --system`` if missing;
``$TUNEPOOL_PG_OS_USER`` overrides), else ``nobody``. Directories on the way to the data dir and the binaries
get o+x (traverse only) where that account could not otherwise reach them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PG_OS_USER = "tunepool"  # OS account Postgres runs as when we are root


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int
    name: str


def pg_account(pgdata: Path) -> Account | None:
    """The OS account Postgres runs as, or None for "the current user" (non-root)."""
    if os.geteuid() != 0:
        return None
    import pwd

    if pgdata.exists():
        st = pgdata.stat()
        if st.st_uid != 0:  # initialized before: keep its owner
            try:
                name = pwd.getpwuid(st.st_uid).pw_name
            except KeyError:
                name = str(st.st_uid)
            return Account(st.st_uid, st.st_gid, name)
    wanted = os.environ.get("TUNEPOOL_PG_OS_USER", PG_OS_USER)
    for attempt in range(2):
        try:
            pw = pwd.getpwnam(wanted)
            return Account(pw.pw_uid, pw.pw_gid, pw.pw_name)
        except KeyError:
            pass
        if attempt == 0:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["useradd", "--system", "--user-group", "--no-create-home",
                     "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", wanted],
                    check=False, capture_output=True, timeout=30,
                )  # fmt: skip
    pw = pwd.getpwnam("nobody")
    log.warning("could not create OS user %r; running Postgres as 'nobody'", wanted)
    return Account(pw.pw_uid, pw.pw_gid, pw.pw_name)


def make_traversable(path: Path, acct: Account) -> None:
    """Give o+x to `path` and its ancestors where `acct` could not traverse them."""
    for p in [path, *path.parents]:
        st = p.stat()
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid == acct.uid:
            ok = bool(mode & stat.S_IXUSR)
        elif st.st_gid == acct.gid:
            ok = bool(mode & stat.S_IXGRP)
        else:
            ok = bool(mode & stat.S_IXOTH)
        if not ok:
            log.warning("chmod o+x %s so that Postgres (running as %s) can reach it", p, acct.name)
            os.chmod(p, mode | stat.S_IXOTH)
