"""Property-based fuzzing of POST /prediction (bodies, headers, query strings) and the GET routes.

Whatever arrives, the API answers with a status it means (200, 400, 401, 404, 413, 415), a JSON
error naming the request id when it refuses, and never a 500. Over 1,000 generated requests.
"""
from __future__ import annotations

import json
import math
import shutil
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import API_KEY, FEATURES, RECORD

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
OK_STATUSES = {200, 400, 413, 415}
NAMES = [*FEATURES, "corporation", "exited", "text", "records", "texts", "", "x" * 300, "ünï", "__proto__"]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, template_state):
    """One app for all cases (hypothesis runs many examples per test function)."""
    from api.app import create_app
    from tests.api.conftest import TEST_CSV

    state = tmp_path_factory.mktemp("fuzz") / "state"
    shutil.copytree(template_state, state, symlinks=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("API_KEY", API_KEY)
    app = create_app(overrides=[f"paths.state_dir={state}", f"data.test_path={TEST_CSV}",
                                "api.max_body_bytes=20000", "api.max_records=50"])
    yield app
    app.extensions["mlops"].close()
    mp.undo()


def check(response) -> None:
    assert response.status_code != 500, response.get_data(as_text=True)
    assert response.status_code in OK_STATUSES | {401, 403, 404, 405}, response.status_code
    body = response.get_json()
    assert body is not None, response.get_data(as_text=True)[:200]
    if response.status_code >= 400:
        assert body["error"]["request_id"] == response.headers["X-Request-ID"]
        assert body["error"]["message"]


# ---- strategies --------------------------------------------------------------------------
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.integers(min_value=-(10 ** 400), max_value=10 ** 400),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from([0, 1, -1, 0.5, 1e308, -0.0, 2 ** 53 + 1, "1", "nan", "", "\x00", "\ud800"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8), inner, max_size=5)),
    max_leaves=20)
feature_values = st.one_of(st.floats(min_value=-10, max_value=1e6), st.integers(min_value=-5, max_value=10 ** 6),
                           scalars, json_values)
records = st.fixed_dictionaries(
    {}, optional={**{f: feature_values for f in FEATURES}, "corporation": scalars, "exited": scalars,
                  "extra": scalars})
near_valid = st.lists(st.one_of(records, st.just(RECORD), json_values), max_size=60)
valid_value = st.one_of(st.integers(min_value=0, max_value=10 ** 9), st.floats(min_value=0, max_value=1e9))
valid_records = st.lists(st.fixed_dictionaries({f: valid_value for f in FEATURES},
                                               optional={"corporation": st.text(max_size=10), "exited": scalars}),
                         min_size=1, max_size=50)
bodies = st.one_of(
    st.builds(lambda r: {"records": r}, valid_records),
    st.builds(lambda r: {"records": r}, near_valid),
    st.builds(lambda t: {"texts": t}, st.lists(st.one_of(st.text(max_size=50), scalars), max_size=5)),
    st.dictionaries(st.sampled_from(["records", "texts", "other"]), json_values, max_size=3),
    json_values)
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/vnd.api+json", "text/csv",
    "text/csv; charset=latin-1", "application/csv", "text/plain", "", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "APPLICATION/JSON", "application/json; charset=utf-16"])
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
headers = st.dictionaries(
    st.sampled_from(["X-Request-ID", "X-API-Key", "Accept", "Accept-Encoding", "X-Forwarded-For",
                     "Authorization", "Origin", "X-Whatever", "If-None-Match"]),
    header_text, max_size=4)
query = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=4)


def csv_body(header: list[str], rows: list[list[str]]) -> bytes:
    return ("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n").encode("utf-8", "surrogatepass")


csv_cells = st.one_of(st.sampled_from(["1", "0", "-1", "2.5", "1e400", "nan", "inf", "", " 3 ", '"4"', "x",
                                       '"', "1_000", "0x10"]),
                      st.text(alphabet=string.printable, max_size=8))
csv_bodies = st.builds(
    csv_body,
    st.lists(st.sampled_from(NAMES[:5] + ["other", ""]), min_size=1, max_size=6),
    st.lists(st.lists(csv_cells, max_size=7), max_size=20))


# ---- the fuzz tests (1,000+ requests) ------------------------------------------------------
@settings(FUZZ, max_examples=500)
@given(body=bodies, content_type=st.one_of(st.just("application/json"), content_types), headers=headers,
       query=query)
def test_fuzz_json_bodies(fuzz_app, body, content_type, headers, query):
    data = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    client = fuzz_app.test_client()
    r = client.post("/prediction", data=data, headers={**headers, "Content-Type": content_type},
                    query_string=query)
    check(r)
    if r.status_code == 200:
        assert r.get_json()["n"] == len(body["records"]) == len(r.get_json()["predictions"])


@settings(FUZZ, max_examples=300)
@given(data=st.one_of(st.binary(max_size=3000), csv_bodies), content_type=content_types, headers=headers)
def test_fuzz_raw_and_csv_bodies(fuzz_app, data, content_type, headers):
    r = fuzz_app.test_client().post("/prediction", data=data, headers={**headers, "Content-Type": content_type})
    check(r)


@settings(FUZZ, max_examples=150)
@given(n=st.integers(min_value=0, max_value=25000), chunk=st.sampled_from([b"a", b"[", b'{"records":[', b"\x00"]))
def test_fuzz_body_sizes(fuzz_app, n, chunk):
    data = (chunk * n)[:n]
    r = fuzz_app.test_client().post("/prediction", data=data, content_type="application/json")
    check(r)
    if n > 20000:
        assert r.status_code == 413


@settings(FUZZ, max_examples=150)
@given(path=st.sampled_from(["/", "/health", "/summarystats", "/diagnostics", "/scoring", "/dashboard",
                             "/admin/jobs", "/admin/jobs/abc", "/prediction", "/nope"]),
       query=query, headers=headers, method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
def test_fuzz_routes_queries_and_headers(fuzz_app, path, query, headers, method):
    r = fuzz_app.test_client().open(path, method=method, query_string=query, headers=headers)
    assert r.status_code != 500, r.get_data(as_text=True)
    if path != "/dashboard" or r.status_code >= 400:
        check(r) if r.is_json else pytest.fail(f"{method} {path} -> {r.status_code} not JSON")


# ---- the validator's fast path agrees with the careful one ---------------------------------


@settings(FUZZ, max_examples=200)
@given(rows=st.lists(st.fixed_dictionaries({f: valid_value for f in FEATURES},
                                           optional={"corporation": st.text(max_size=10)}),
                     min_size=1, max_size=20),
       spoil=st.one_of(st.none(), st.tuples(st.integers(0, 19), st.sampled_from(FEATURES),
                                             st.sampled_from([-1, "1", None, True, math.inf, -math.inf]))))
def test_fast_and_checked_validation_agree(rows, spoil):
    from api.validation import Limits, RequestError, TabularSpec, _checked_batch, tabular_batch

    spec = TabularSpec(columns=tuple(FEATURES), minimum={f: 0.0 for f in FEATURES}, id_column="corporation",
                       ignored=frozenset({"exited"}))
    if spoil is not None:
        i, field, value = spoil
        rows[i % len(rows)][field] = value
    try:
        careful = _checked_batch(rows, spec, from_csv=False)
    except RequestError:
        careful = None
    try:
        fast = tabular_batch(rows, spec, Limits())
    except RequestError:
        fast = None
    assert (careful is None) == (fast is None)
    if spoil is not None:      # every spoiling value is invalid for a feature
        assert fast is None
    if careful is not None:
        np.testing.assert_array_equal(careful.matrix, fast.matrix)
        assert careful.ids == fast.ids
