"""``status``: role versions and expiries, pending changes, the signers, storage, and every problem."""

from __future__ import annotations

import datetime
from typing import Any

from tuf.api.metadata import Metadata, Root, Targets

from warehouse_tuf import db, devkeys, roles, signing, trust, trust_model
from warehouse_tuf.clock import utcnow
from warehouse_tuf.exceptions import DevelopmentKeyError
from warehouse_tuf.recovery import storage_check
from warehouse_tuf.repository import Repository

#: ``status`` warns this long before root or targets expires: a ceremony takes weeks to arrange.
OFFLINE_EXPIRY_WARNING = datetime.timedelta(days=60)


def status(repo: Repository, *, deep: bool = False) -> dict[str, Any]:
    """Role versions and expiries, pending changes, last publish, and problems.

    Storage is checked for what clients need first (root chain, timestamp,
    its snapshot and targets); with ``deep``, for every bin as well. The
    database is read in aggregates (the health gauges and a bin summary),
    never one row per bin.
    """
    settings = repo.settings
    with repo.sessions() as reader:
        now = utcnow()
        health = db.health(reader)
        top = db.top_level_rows(reader)
        summary = db.bin_summary(reader) if top else None
    if summary is None:
        return {"bootstrapped": False, "pending": health.pending, "problems": ["not bootstrapped"]}
    root = Metadata[Root].from_bytes(top[roles.ROOT].signed_bytes or b"").signed
    targets = Metadata[Targets].from_bytes(top[roles.TARGETS].signed_bytes or b"").signed
    role_rows = [
        {"role": name, "version": top[name].version, "expires": top[name].expires.isoformat(),
         "length": top[name].length, "threshold": root.roles[name].threshold,
         "keyids": sorted(root.roles[name].keyids),
         "expires_in_seconds": (top[name].expires - now).total_seconds()}
        for name in roles.TOP_LEVEL if name in top
    ]
    assert summary.earliest_expiry is not None  # a bootstrapped repository has bins
    expiries = [(row.name, row.expires) for row in top.values()]
    expiries.append((summary.earliest_name or "", summary.earliest_expiry))
    problems = [f"{name} expired at {expires.isoformat()}" for name, expires in expiries if expires <= now]
    model = trust_model.status(root, settings.targets_online)
    if model["name"] != model["setting"]:
        problems.append(f"tuf.targets_online asks for the {model['setting']} model but root v{root.version} "
                        f"puts {model['name']} in force: install a root that switches (docs/ceremony.md)")
    for name in trust_model.offline_roles(root):
        if name in top and now < top[name].expires <= now + OFFLINE_EXPIRY_WARNING:
            problems.append(
                f"{name} expires at {top[name].expires.isoformat()}: run the signing ceremony "
                f"('tuf ceremony prepare --{name}-expiry ...')"
            )
    layout_problem = trust.layout_problem(settings, trust.delegated_layout(targets))
    if layout_problem:
        problems.append(f"{layout_problem}; publish and refresh refuse until then")
    signers = [signing.split_signer_entry(entry) for entry in settings.online_signers]
    development = trust.development_key_problems(settings, root, targets)
    problems.extend(f"{problem}: refused in production" for problem in development)
    try:
        trust.online_signers(settings, root, targets)
    except signing.SigningError as exc:
        if not (development and isinstance(exc, DevelopmentKeyError)):  # listed just above
            problems.append(f"online signer: {exc}")
    if summary.unfinished_roles:
        problems.append(f"{summary.unfinished_roles} role(s) waiting to be re-signed: an interrupted "
                        "publish, or a backfill under way (the next publish signs them)")
    storage = storage_check(repo, deep=deep)
    problems.extend(storage.problems)
    return {
        "bootstrapped": True,
        "trust_model": model,
        "roles": role_rows,
        "bins": {
            "count": summary.bins,
            "max_version": summary.max_version,
            "earliest_expiry": summary.earliest_expiry.isoformat(),
            "earliest_expiring": summary.earliest_name,
            "earliest_expiry_seconds": (summary.earliest_expiry - now).total_seconds(),
            "keyids": sorted(trust.delegated_keyids(targets)),
        },
        "targets": summary.targets,
        "pending": health.pending,
        "oldest_pending": health.oldest_pending.isoformat() if health.oldest_pending else None,
        "oldest_pending_seconds": health.oldest_pending_seconds(now),
        "seconds_to_earliest_expiry": health.seconds_to_expiry(now),
        "online_signers": [
            {"keyid": keyid or None, "uri": signing.redact_uri(uri)} for keyid, uri in signers
        ],
        "last_publish": top[roles.TIMESTAMP].updated_at.isoformat(),
        "last_publish_seconds": (now - top[roles.TIMESTAMP].updated_at).total_seconds(),
        "metadata_url": settings.metadata_url or None,
        "development_keys": bool(devkeys.trusted_problems(root, targets, devkeys.known(settings.dev_keys_path))),
        "now": now.isoformat(),
        "problems": problems,
        "storage": storage.as_dict(),
    }
