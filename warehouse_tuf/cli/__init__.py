"""The extension's command line.

- ``tuf``: the click group a host attaches to its own (``warehouse tuf ...`` in
  Warehouse, ``python -m dev tuf ...`` here). Attach it with one line:
  ``warehouse.add_command(tuf)``. The root group's context object is the
  host's Pyramid Configurator (Warehouse's ``LazyConfig``); commands build a
  scripting request from its registry.
- ``main``: the ``warehouse-tuf`` console script, for what needs no index: the
  offline ``ceremony``, ``verify`` (an outsider's audit) and ``key-id``. A key
  holder on an offline machine needs only ``pip install warehouse-tuf``.

Modules are imported inside the commands: ``--help`` loads click alone.
The commands live in ``repository.py`` (``tuf``) and ``offline.py`` (``main`` and the
ceremony), what they share in ``common.py``.
"""

from warehouse_tuf.cli.common import relative, service, short_keyid
from warehouse_tuf.cli.offline import main
from warehouse_tuf.cli.repository import tuf

__all__ = ["main", "relative", "service", "short_keyid", "tuf"]
