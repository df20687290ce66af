"""One uploader of the concurrency soak: real requests through the host's upload and delete views.

``python -m dev.soak.uploader CONFIG`` where CONFIG is JSON: ``settings`` (the
host's), ``uploader`` (its number), ``uploads``, ``seed``. It uploads wheels
to projects of its own, and between uploads deletes a file, a release or a
whole project now and then, as a maintainer would. Every request goes through
the WSGI app (authentication, views, ``request.tm``, the extension's session
listeners, the publish task sent after commit). Prints one JSON line: counts
and the failed requests.
"""

from __future__ import annotations

import base64
import json
import random
import sys

from webtest import TestApp

from dev.app import make_wsgi_app
from dev.models import normalize_name

#: Share of actions that delete, by what they delete (the rest are uploads).
DELETES = {"file": 0.06, "release": 0.03, "project": 0.01}


def main(config: dict) -> dict:
    rng = random.Random(config["seed"])
    app = TestApp(make_wsgi_app(config["settings"]))
    token = base64.b64encode(b"tuf-dev:tuf-dev").decode()
    auth = {"Authorization": f"Basic {token}"}
    owned: dict[str, dict[str, list[str]]] = {}  # project -> version -> filenames
    counts = {"uploads": 0, "file": 0, "release": 0, "project": 0}
    failed: list[str] = []
    prefix = f"soak-{config['uploader']}"
    step = 0
    while counts["uploads"] < config["uploads"]:
        step += 1
        action = _choose(rng)
        if action != "upload" and owned:
            project = rng.choice(sorted(owned))
            version = rng.choice(sorted(owned[project]))
            if action == "project":
                url = f"/manage/project/{project}/"
                del owned[project]
            elif action == "release" or len(owned[project][version]) == 1:
                action = "release"
                url = f"/manage/project/{project}/release/{version}/"
                del owned[project][version]
            else:
                filename = owned[project][version].pop(rng.randrange(len(owned[project][version])))
                url = f"/manage/project/{project}/release/{version}/file/{filename}"
            if project in owned and not owned[project]:
                del owned[project]
            response = app.delete(url, headers=auth, expect_errors=True)
            if response.status_int != 200:
                failed.append(f"DELETE {url}: {response.status}")
            else:
                counts[action] += 1
            continue
        project = normalize_name(f"{prefix}-{rng.randrange(config.get('projects', 40))}")
        version = f"1.{rng.randrange(4)}"
        filename = f"{project.replace('-', '_')}-{version}-{step}-py3-none-any.whl"
        data = f"{filename} {rng.random()}".encode()
        response = app.post(
            "/legacy/",
            {":action": "file_upload", "name": project, "version": version, "filetype": "bdist_wheel",
             "pyversion": "py3"},
            upload_files=[("content", filename, data)], headers=auth, expect_errors=True,
        )
        if response.status_int != 200:
            failed.append(f"upload {filename}: {response.status}")
        else:
            owned.setdefault(project, {}).setdefault(version, []).append(filename)
        counts["uploads"] += 1
    return {"counts": counts, "failed": failed}


def _choose(rng: random.Random) -> str:
    roll = rng.random()
    for action, share in DELETES.items():
        if roll < share:
            return action
        roll -= share
    return "upload"


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
