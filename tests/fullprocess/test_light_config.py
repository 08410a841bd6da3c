"""The tick composes the config without Hydra: it must give exactly what Hydra gives."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import REPO_ROOT
from utils.pipeline.config import load_config
from utils.tick.light_config import _PLAIN, NeedsHydra, _compose, load_light_config, parse_overrides, to_plain

CASES = [
    [],
    ["paths.state_dir=/srv/mlops", "data.source_dir=/data/incoming"],
    ["paths.state_dir=relative/state", "data.source_dir=01_data/sourcedata/tabular"],
    ["training.C=0.5", "main.steps='model_training,model_scoring'"],
    ["+extra.key=3", "++training.C=2", "deployment.force=true"],
    ["drift.policy=always", "drift.alpha=0.05", "fullprocess.timeout_s=60"],
    ["drift.policy=[performance]", "notify.smtp.to=[a@example.org,b@example.org]"],
    ["notify.smtp.host=localhost", "notify.smtp.port=2525", "notify.webhook.url=http://127.0.0.1:9/hook"],
    ["task.features.lastmonth_activity.min=5", "training.seed=007", "training.solver=yes"],
    ["main.experiment_name=a b", "scoring.batch_size=0x10", "training.C=1e-3"],
    ["task=tabular", "hydra.run.dir=/tmp/elsewhere", "training.C=-3"],
    ["fullprocess.lock_max_age_s=null", "paths.state_dir=${oc.env:HOME}/state"],
]
if (REPO_ROOT / "utils" / "conf" / "task" / "nlu.yaml").is_file():
    CASES += [["task=nlu"], ["task=nlu", "training.epochs=1", "data.source_dir=/data/nlu"]]


@pytest.mark.parametrize("overrides", CASES, ids=[" ".join(c) or "defaults" for c in CASES])
def test_light_config_equals_hydra(overrides: list[str]) -> None:
    light = _compose(overrides)  # the light path itself, no fallback
    assert to_plain(light) == to_plain(load_config(overrides))


BAD = [["x=1"], ["+training.C=2"], ["~training.class_weight"], ["main.steps=a,b"], ["task=nope"]]


@pytest.mark.parametrize("overrides", BAD, ids=[" ".join(c) for c in BAD])
def test_what_the_light_path_cannot_do_goes_to_hydra(overrides: list[str]) -> None:
    """Unknown keys, sweeps, bad groups: the light path declines and Hydra gives its error."""
    with pytest.raises(NeedsHydra):
        _compose(overrides)
    with pytest.raises(Exception) as hydra_error:
        load_config(overrides)
    with pytest.raises(type(hydra_error.value)):
        load_light_config(overrides)


@pytest.fixture(scope="module")
def hydra_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


@settings(max_examples=200, deadline=None)
@given(line=st.from_regex(_PLAIN, fullmatch=True))
def test_plain_overrides_parse_as_hydra_parses_them(hydra_parser, line: str) -> None:
    """Overrides read without Hydra's grammar get exactly Hydra's key, value and type."""
    ours = parse_overrides([line])[0]
    theirs = hydra_parser.parse_override(line)
    assert ours[1] == theirs.key_or_group
    assert ours[2] == theirs.value() and type(ours[2]) is type(theirs.value())
