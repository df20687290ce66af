"""The development host's renderers, standing in for Warehouse's.

- ``.html``: templates of ``dev/templates`` (Mako, HTML-escaped by default),
  as Warehouse renders its Jinja2 templates (``renderer="api/simple/detail.html"``);
- ``json``: compact JSON with sorted keys and a final newline, as **bytes**, as
  Warehouse's orjson renderer (``OPT_SORT_KEYS | OPT_APPEND_NEWLINE``) returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mako.lookup import TemplateLookup
from markupsafe import Markup
from pyramid.renderers import JSON

from dev.models import normalize_name  # noqa: F401 (the templates import it from here)

TEMPLATES = Path(__file__).parent / "templates"


def dumps(value: Any, default: Any = None, **kw: Any) -> bytes:
    """What ``orjson.dumps(value, option=OPT_SORT_KEYS | OPT_APPEND_NEWLINE)`` returns."""
    text = json.dumps(value, default=default, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def link_attributes(file: dict) -> Markup:
    """The optional attributes of a simple page link, as Warehouse's template writes them."""
    attributes = Markup("")
    if file.get("requires-python"):
        attributes += Markup('data-requires-python="{}" ').format(file["requires-python"])
    if file["yanked"]:
        reason = file["yanked"] if isinstance(file["yanked"], str) else ""
        attributes += Markup('data-yanked="{}" ').format(reason)
    if file.get("core-metadata"):
        digest = file["core-metadata"]["sha256"]
        attributes += Markup('data-dist-info-metadata="sha256={0}" data-core-metadata="sha256={0}"').format(digest)
    return attributes


class TemplateRendererFactory:
    """``renderer="api/simple/detail.html"``: a template of ``dev/templates``, rendered to text."""

    def __init__(self) -> None:
        self.lookup = TemplateLookup(directories=[str(TEMPLATES)], default_filters=["h"],
                                     input_encoding="utf-8", strict_undefined=True,
                                     imports=["from dev.rendering import link_attributes, normalize_name"])

    def __call__(self, info: Any) -> Any:
        template = self.lookup.get_template("/" + info.name.split(":")[-1].lstrip("/"))

        def render(value: dict, system: dict) -> str:
            return template.render(**value, request=system.get("request"))

        return render


def includeme(config: Any) -> None:
    config.add_renderer("json", JSON(serializer=dumps))
    config.add_renderer(".html", TemplateRendererFactory())
