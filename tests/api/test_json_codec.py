"""The prediction path's JSON codec (api/json_codec.py) accepts and answers what ``json`` did."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from api import json_codec


def _reject(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


@pytest.mark.parametrize("body", [
    b'{"records": [{"a": 1, "b": 2.5, "c": -0.0, "d": 1e-7, "e": null, "f": true}]}',
    b'{"texts": ["caf\\u00e9 \xe2\x82\xac", "\\n\\t\\"q\\""], "x": {"y": [[], {}]}}',
    b'{"records": [{"a": 0.1}, {"a": 12345678901234567}, {"a": 1.7976931348623157e308}]}',
    b'  {"k": "dup", "k": "last"}  ',
])
def test_accepted_bodies_decode_as_json_does(body: bytes):
    assert json_codec.loads(body, _reject) == json.loads(body, parse_constant=_reject)


@pytest.mark.parametrize("body, fragment", [
    (b'{"a": NaN}', "NaN is not a number JSON allows"),          # orjson refuses: json's message
    (b'{"a": -Infinity}', "-Infinity is not a number JSON allows"),
    (b"{not json", "Expecting property name"),
])
def test_refused_bodies_raise_jsons_error(body: bytes, fragment: str):
    with pytest.raises(ValueError, match=fragment):
        json_codec.loads(body, _reject)


def test_what_orjson_refuses_but_json_accepts_still_decodes():
    assert json_codec.loads(b'{"a": 1e400}', _reject) == {"a": math.inf}      # overflow: inf, as before
    assert json_codec.loads(b'{"t": "\\ud800"}', _reject) == {"t": "\ud800"}  # a lone surrogate


def test_dumps_is_compact_json_and_takes_numpy_scalars():
    value = {"predictions": [{"label": 1, "probability": 0.7234234234}, {"label": "yes", "p": 1e-05}]}
    assert json.loads(json_codec.dumps(value)) == value and " " not in json_codec.dumps(value)
    assert json.loads(json_codec.dumps({"x": np.float32(0.5)})) == {"x": 0.5}
    assert json_codec.dumps([math.nan]) == "[null]"    # valid JSON, not NaN
