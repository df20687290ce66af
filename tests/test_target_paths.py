"""The one target-path rule: what it refuses, and that all it accepts reaches real clients.

``validate_path`` is the rule for every signed target and for the development
host's filename check. The property test publishes paths the rule accepts and
downloads each one through a served development host with python-tuf's
ngclient and with tuf-js, which must also refuse a tampered copy.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from tuf.api import exceptions as tuf_exceptions

from dev.files import LocalFileStorage
from dev.testing.devhost import HTTPClient, dev_config, run_tufjs, start_server, stop
from warehouse_tuf.services import TUFManager
from warehouse_tuf.storage import LocalStorage
from warehouse_tuf.targets import MAX_SEGMENT_BYTES, InvalidTargetError, page_paths, validate_path


@pytest.mark.parametrize(("path", "reason"), [
    ("C:/Windows/system32/evil.dll", "contains ':'"),
    ("c:evil.whl", "contains ':'"),
    ("pkg/file.whl:stream", "contains ':'"),
    ("aux/con.txt", "'aux', a device name on Windows"),
    ("pkg/NUL", "'NUL', a device name on Windows"),
    ("pkg/com1.tar.gz", "a device name on Windows"),
    ("pkg/LPT9.whl", "a device name on Windows"),
    ("pkg/conin$", "a device name on Windows"),
    ("pkg/file.whl.", "ending in a dot or a space"),
    ("pkg./file.whl", "ending in a dot or a space"),
    ("pkg/file.whl ", "contains ' '"),
    ("pkg/\x00.whl", "control character U+0000"),
    ("pkg/\x7f.whl", "control character U+007F"),
    ("pkg/\x85.whl", "control character U+0085"),
    ("pkg/\x9b.whl", "control character U+009B"),
    ("pkg/a\u2028b.whl", "separator U+2028"),
    ("pkg/a\u2029b.whl", "separator U+2029"),
    ("pkg/evil\u202egpj.exe", "bidirectional control U+202E"),
    ("pkg/a\u2066b.whl", "bidirectional control U+2066"),
    ("pkg/a%3Fb.whl", "'%', which a client would have to quote"),
    ("pkg/a?b.whl", "'?', which a client would have to quote"),
    ("pkg/a#b.whl", "'#', which a client would have to quote"),
    ("pkg/caf\u00e9.whl", "which a client would have to quote"),
    ("pkg/a*b.whl", "Windows refuses"),
    ("pkg/a|b.whl", "Windows refuses"),
    ("pkg\\file.whl", "backslash"),
    ("pkg/" + "a" * (MAX_SEGMENT_BYTES + 1), f"segment over {MAX_SEGMENT_BYTES} bytes"),
])
def test_unportable_or_unquoted_paths_are_refused_with_the_reason(path, reason):
    with pytest.raises(InvalidTargetError) as refused:
        validate_path(path)
    assert reason in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("path", [
    "6c/4f/0a1b2c3d/demo_pkg-1.0-py3-none-any.whl",
    "ab/cd/ef/pkg-1.0+local.7-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "ab/cd/ef/pkg-1!2.0.tar.gz",
    "demo-pkg/demo-pkg.html",
    "pkg/console.whl",  # a device name only as a whole stem
    "pkg/" + "a" * MAX_SEGMENT_BYTES,
])
def test_the_paths_warehouse_publishes_are_accepted(path):
    assert validate_path(path) == path


def test_a_project_named_like_a_windows_device_has_no_page_targets():
    assert page_paths("con") == page_paths("lpt1") == {}
    assert page_paths("console") == {"html": "console/console.html", "json": "console/console.json"}
    with pytest.raises(InvalidTargetError):
        page_paths("a:b")


_PORTABLE_CHARACTERS = "abcXYZ019-._~!$&'()+,;=@"
portable_paths = st.lists(
    st.one_of(st.text(_PORTABLE_CHARACTERS, min_size=1, max_size=24),
              st.sampled_from(["~", "@", "a" * MAX_SEGMENT_BYTES, "con.d", "x.y.whl"])),
    min_size=1, max_size=4,
).map("/".join).filter(lambda path: _accepted(path))  # noqa: PLW0108 (defined below)


def _accepted(path: str) -> bool:
    try:
        validate_path(path)
    except InvalidTargetError:
        return False
    return True


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A served development host, and a manager on its database and storage."""
    data = tmp_path_factory.mktemp("paths") / "data"
    config = dev_config(data, f"sqlite:///{data / 'index.sqlite'}")
    settings = config.registry.settings
    server, base = start_server({"TUF_DEV_DATA": str(data), "TUF_BIN_COUNT": "16"},
                                log=data.parent / "serve.log")
    engine = create_engine(f"sqlite:///{data / 'index.sqlite'}")
    yield base, engine, config.registry["tuf.settings"], settings, tmp_path_factory
    stop(server)
    engine.dispose()


@pytest.mark.e2e
@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(paths=st.lists(portable_paths, min_size=1, max_size=6, unique_by=lambda p: p.split("/")[0]))
def test_every_accepted_path_downloads_through_the_host_with_ngclient_and_tuf_js(served, paths):
    base, engine, tuf_settings, settings, factory = served
    work = factory.mktemp("example")
    # Each example in a folder of its own: "a" of one example and "a/b" of another can't clash.
    paths = [f"{work.name}/{path}" for path in paths]
    assume(all(_accepted(path) for path in paths))
    files = LocalFileStorage(settings["files.path"])
    contents = {}
    with Session(engine) as db:
        manager = TUFManager(db, tuf_settings, LocalStorage(settings["tuf.storage.path"]),
                             LocalStorage(settings["tuf.simple.path"]))
        for index, path in enumerate(paths):
            data = f"target {index} at {path} in {work.name}".encode()
            source = work / f"source-{index}"
            source.write_bytes(data)
            files.store(path, source)
            manager.record_target(path, len(data), {"sha256": hashlib.sha256(data).hexdigest(),
                                                    "blake2b-256": hashlib.blake2b(data, digest_size=32).hexdigest()})
            contents[path] = data
        db.commit()
        assert manager.publish().published

    client = HTTPClient(base)
    assert {path: client.download(path) for path in paths} == contents
    result = run_tufjs(base, work / "tufjs", [(path, False) for path in paths])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"path": path, "found": True, "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in contents.items()
    ]

    # Both clients refuse a tampered copy of the first one.
    tampered = paths[0]
    with files.get(tampered) as stored:
        original = stored.read()
    source = work / "tampered"
    source.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    files.store(tampered, source)
    with pytest.raises(tuf_exceptions.LengthOrHashMismatchError):
        client.download(tampered)
    assert run_tufjs(base, work / "tufjs-tampered", [(tampered, False)]).returncode != 0
