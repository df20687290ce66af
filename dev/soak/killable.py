"""One operation in a process that SIGKILLs itself at its k-th kill point.

``python -m dev.soak.killable CONFIG OPERATION [--kill-at K] [--upload NAME]``

Kill points are the moments where a crash can leave a different state behind:
every flush and every commit (before and after) of any database session, and
every rename and fsync (of a file or a directory) of the storage writes. With ``--upload NAME`` the
process first records one file in a transaction of its own, as an upload
request would, so a kill can also land before or after an upload's commit.
Every operation but refresh ends with a publish, as the task queued by the
upload (or the periodic one) would run. On success it prints one JSON line:
how many kill points it passed.

CONFIG (JSON) holds the database URL, the ``tuf.*`` settings, the packages
folder, the online keys by key id (``keyring``) and, for ``rotate``, the
ceremony payload of the next root and targets.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from dev.models import File, Project, Release
from dev.soak.harness import CRASH_OPERATIONS, installed_roles, record_file
from warehouse_tuf import ceremony, signing
from warehouse_tuf.models import RoleVersion
from warehouse_tuf.services import TUFManager
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.storage import LocalStorage


class KillPoints:
    """Counts kill points and dies, for real, at the chosen one."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.passed = 0
        self._lock = threading.Lock()  # LocalStorage fsyncs on a few threads

    def __call__(self, *args, **kwargs) -> None:
        with self._lock:
            self.passed += 1
            if self.passed == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    def around(self, function):
        def wrapped(*args, **kwargs):
            self()
            result = function(*args, **kwargs)
            self()
            return result
        return wrapped

    def install(self) -> None:
        for name in ("after_flush", "before_commit", "after_commit"):
            event.listen(Session, name, self)
        # LocalStorage looks these up on the os module at call time.
        os.replace = self.around(os.replace)
        os.fsync = self.around(os.fsync)


def online_signer_entries(session: Session, keyring: dict[str, str]) -> tuple[str, ...]:
    """``KEYID=URI`` of every online key the installed root and targets trust."""
    root, targets = installed_roles(session)
    trusted = signing.online_keys(root.signed, targets.signed)
    return tuple(f"{keyid}=file2:{keyring[keyid]}" for keyid in trusted.keys)


def run(operation: str, manager: TUFManager, config: dict) -> None:
    if operation == "refresh":
        # A window longer than every online expiry: every bin, snapshot and timestamp.
        manager.refresh(window=max(manager.settings.expiry.values()) * 2)
    elif operation == "backfill":
        manager.backfill(batch_files=3, batch_bins=4)
    elif operation == "rotate":
        payload = ceremony.Payload.from_file(config["payload"])
        # Installed before a crash: the publish that follows finishes what it left unfinished.
        if manager.db.get(RoleVersion, "root").version < payload.root.signed.version:
            both = tuple(f"{keyid}=file2:{path}" for keyid, path in config["keyring"].items()
                         if keyid in config["rotating"])
            manager.install(payload.role_bytes("root"), payload.role_bytes("targets"), both)


def manager_for(session: Session, config: dict) -> TUFManager:
    """A manager whose online signers are those the installed root trusts (as the operator sets)."""
    values = dict(config["settings"])
    values["tuf.online_signers"] = " ".join(online_signer_entries(session, config["keyring"]))
    session.rollback()
    settings = TUFSettings.from_settings(values, environ={})
    return TUFManager(session, settings, LocalStorage(settings.storage_path),
                      LocalStorage(settings.simple_path), models=(Project, Release, File))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dev.soak.killable")
    parser.add_argument("config", help="JSON: database url, tuf.* settings, packages, keyring")
    parser.add_argument("operation", choices=CRASH_OPERATIONS)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--upload", help="record this file in its own transaction first")
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    engine = create_engine(config["url"])
    points = KillPoints(args.kill_at)
    points.install()
    with Session(engine) as session:
        manager = manager_for(session, config)
        if args.upload:
            record_file(manager, Path(config["packages"]), args.upload)
            session.commit()
        run(args.operation, manager, config)
        if args.operation != "refresh":
            # As the publish task queued by the upload (or the periodic one) would.
            manager_for(session, config).publish()
    print(json.dumps({"points": points.passed}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
