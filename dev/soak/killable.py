"""One publisher process that SIGKILLs itself at its k-th kill point.

``python -m dev.soak.killable CONFIG OPERATION [--kill-at K] [--upload NAME]``

Kill points are the moments where a crash can leave a different state behind:
every flush and every commit (before and after) of any database session, and
every rename and sync of the storage writes. With ``--upload NAME`` the
process first records one file in a transaction of its own, as an upload
request would, so a kill can also land before or after an upload's commit.
On success it prints one JSON line: the operation's result and how many kill
points it passed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from warehouse_tuf.services import TUFManager
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.storage import LocalStorage

OPERATIONS = ("publish", "refresh")


class KillPoints:
    """Counts kill points and dies, for real, at the chosen one."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.passed = 0

    def __call__(self, *args, **kwargs) -> None:
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
        os.sync = self.around(os.sync)


def run(operation: str, manager: TUFManager) -> dict:
    if operation == "refresh":
        # A window longer than every online expiry: every bin, snapshot and timestamp.
        result = manager.refresh(window=max(manager.settings.expiry.values()) * 2)
    else:
        result = manager.publish()
    return {"bins": len(result.bins), "changes": result.changes,
            "timestamp": result.timestamp_version}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dev.soak.killable")
    parser.add_argument("config", help="JSON: database url and tuf.* settings")
    parser.add_argument("operation", choices=OPERATIONS)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--upload", help="record this file in its own transaction first")
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    settings = TUFSettings.from_settings(config["settings"], environ={})
    engine = create_engine(config["url"])
    points = KillPoints(args.kill_at)
    points.install()
    with Session(engine) as session:
        manager = TUFManager(session, settings, LocalStorage(settings.storage_path),
                             LocalStorage(settings.simple_path))
        if args.upload:
            from dev.soak.harness import record_file

            record_file(manager, Path(config["packages"]), args.upload)
            session.commit()
        outcome = run(args.operation, manager)
    outcome["points"] = points.passed
    print(json.dumps(outcome))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
