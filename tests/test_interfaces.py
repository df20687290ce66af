"""The interfaces are the code: what a host finds through them is what the classes provide."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyClass

from warehouse_tuf.interfaces import IMetadataStorage, ITUFService
from warehouse_tuf.services import TUFManager
from warehouse_tuf.storage import LocalStorage


@pytest.mark.parametrize(("interface", "implementation"), [
    (ITUFService, TUFManager),
    (IMetadataStorage, LocalStorage),
])
def test_the_classes_implement_their_interfaces(interface, implementation):
    assert verifyClass(interface, implementation)
