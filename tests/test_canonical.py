"""The fast canonical JSON encoder is byte-identical to securesystemslib's."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Signature

from warehouse_tuf import canonical

# Any text, control characters, quotes, backslashes and astral characters
# included (surrogates are not text UTF-8 can carry).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
tricky = st.sampled_from(['"', "\\", "\\n", "\\u0000", "\x00", "\x1f", "\x7f", "\u2028", "é", "😀", "\\\\\""])
strings = st.one_of(texts, tricky, st.lists(tricky, max_size=6).map("".join))
scalars = st.one_of(strings, st.integers(min_value=-2**70, max_value=2**70), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(strings, children, max_size=5),
    ),
    max_leaves=40,
)


@pytest.mark.slow
@settings(max_examples=400)
@given(values)
def test_encode_matches_securesystemslib(value):
    expected = encode_canonical(value).encode("utf-8")
    assert canonical.encode(value) == expected
    assert canonical.encode(value, checked=True) == expected


@pytest.mark.slow
@settings(max_examples=100)
@given(st.dictionaries(strings, values, max_size=6))
def test_envelope_is_json_whose_signed_part_is_the_value(signed):
    data = canonical.encode(signed)
    sig = Signature("ab" * 32, "cd" * 64)
    document = json.loads(canonical.envelope(data, [sig]))
    assert document["signed"] == json.loads(json.dumps(signed))
    assert document["signatures"] == [sig.to_dict()]


def test_metadata_shaped_value():
    bin_role = {
        "_type": "targets", "expires": "2030-01-01T00:00:00Z", "spec_version": "1.0.31", "version": 7,
        "targets": {
            'ab/cd/ef/Ünï"code\\-1.0-py3-none-any.whl': {"hashes": {"sha256": "0" * 64}, "length": 12},
            "a/b.whl": {"hashes": {"sha256": "f" * 64}, "length": 0},
        },
    }
    assert canonical.encode(bin_role) == encode_canonical(bin_role).encode("utf-8")


@pytest.mark.parametrize("value", [1.5, {"a": 0.0}, [float("nan")], {1: "x"}, {"a": object()}, b"bytes"])
def test_what_canonical_json_cannot_encode_is_refused(value):
    with pytest.raises(canonical.CanonicalError):
        canonical.encode(value)
