"""The served model: loaded from `models/production`, swapped when the link moves.

Hot reload without a restart and without a failed request: each worker looks at the link
(one readlink, microseconds) at most every `api.reload_check_ms`; when it points elsewhere,
the request that noticed loads the new version while concurrent requests keep using the old
one, then the reference is swapped. Under gevent workers a reload runs in a real thread
(`run_off_loop`): a NLU model takes over a second to load, and on the loop it would stop every
other request of that worker for as long. A request holds its own reference for its whole life,
so the answer and the reported version always match. A version that fails to load is
logged and retried later; the old model keeps serving.
"""
from __future__ import annotations

import gc
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np

from api.validation import TabularSpec
from utils.models.model_store import ModelStore
from utils.monitoring.off_loop import run_off_loop

log = logging.getLogger("api.model")

RETRY_FAILED_S = 30.0          # a version that failed to load is retried after this long
_CACHE_SIZE = 4                # loaded models kept per process (versions are immutable)
_cache: dict[tuple[str, int, bool], "ServedModel"] = {}
_cache_lock = threading.Lock()



class ModelLoadError(RuntimeError):
    """A model folder that cannot be served (missing, unreadable, unknown task)."""


@dataclass
class ServedModel:
    """One loaded store version; immutable once built, shared by all threads of a worker."""

    version: str
    task: str
    model_dir: Path
    metadata: dict[str, Any]
    loaded_at: float
    spec: TabularSpec | None = None          # tabular only
    _estimator: Any = field(default=None, repr=False)    # sklearn flavor (fast path)
    _pyfunc: Any = field(default=None, repr=False)       # generic pyfunc (NLU, non-sklearn tabular)
    classes: list[Any] = field(default_factory=list)
    takes_matrix: bool = False     # the estimator gives the same answer for a plain float matrix
    fast: Any = field(default=None, repr=False)    # fast_tabular.LinearProbaModel: same answers, no checks

    # ---- tabular ---------------------------------------------------------------------------
    def predict_batch(self, batch: Any) -> list[dict[str, Any]]:
        """A validated TabularBatch: the float matrix, or (mixed kinds) a DataFrame of its rows."""
        if batch.matrix is not None:
            return self.predict_matrix(batch.matrix)
        return self._predict(self._mixed_frame(batch.rows), as_matrix=False)

    def predict_matrix(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        """label and its probability per row (the binary case's other probability is 1 - p)."""
        return self._predict(matrix, as_matrix=True)

    def _predict(self, data: Any, as_matrix: bool) -> list[dict[str, Any]]:
        """label in its own type and, for classifiers, the probability of that label."""
        if as_matrix and self.fast is not None:     # checked equal to the estimator at load
            return self._answers(self.fast.predict_proba(data))
        features = data if (not as_matrix or self.takes_matrix) else self._frame(data)
        if self._estimator is not None and hasattr(self._estimator, "predict_proba"):
            import sklearn

            # inputs are validated (finite or allowed-null, right shape): skip sklearn's own re-checks
            with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                return self._answers(self._estimator.predict_proba(features))
        if self._estimator is not None:
            predicted = self._estimator.predict(features)
        else:
            predicted = self._pyfunc.predict(features if not as_matrix else self._frame(data))
        return [{"label": _plain(v), "probability": None} for v in np.asarray(predicted).tolist()]

    def _answers(self, proba: np.ndarray) -> list[dict[str, Any]]:
        """The most probable label of each row and its probability, as plain Python values."""
        classes = self.class_labels
        best = proba.argmax(axis=1)
        return [{"label": classes[b], "probability": p}          # plain Python values: cheap JSON
                for b, p in zip(best.tolist(), proba[np.arange(len(best)), best].tolist())]

    def _frame(self, matrix: np.ndarray) -> Any:
        import pandas as pd

        return pd.DataFrame(matrix, columns=list(self.spec.columns if self.spec else ()))

    def _mixed_frame(self, rows: list[list[Any]]) -> Any:
        """Rows of numbers and category texts -> the frame the pipeline was trained on."""
        import pandas as pd

        frame = pd.DataFrame(rows, columns=list(self.spec.columns), dtype=object)
        for name in self.spec.columns:
            if self.spec.kinds.get(name, "numeric") in ("numeric", "integer"):
                frame[name] = frame[name].astype("float64")
            else:
                frame[name] = frame[name].where(frame[name].notna(), np.nan)
        return frame

    # ---- NLU -------------------------------------------------------------------------------
    def predict_texts(self, texts: list[str]) -> list[dict[str, Any]]:
        """intent, confidence, tags and slot spans per text (the NLU pyfunc contract)."""
        direct = self._direct_texts
        if direct is not None:      # the NLU pyfunc's own list-in, dicts-out call: no DataFrame round trip
            rows = direct(list(texts))
        else:
            from utils.models.scoring_lib import pyfunc_rows

            rows = pyfunc_rows(self._pyfunc, texts)
        return [{"intent": str(r.get("intent")), "confidence": _plain(r.get("confidence")),
                 "tags": [str(t) for t in _as_list(r.get("tags"))],
                 "slots": [_slot(s) for s in _as_list(r.get("slots"))]} for r in rows]

    @cached_property
    def _direct_texts(self) -> Callable[[list[str]], list[dict[str, Any]]] | None:
        """``predict_texts`` of the wrapped python model (nlu_pyfunc.py), when it has one."""
        try:
            inner = self._pyfunc.unwrap_python_model()
        except Exception:   # not a python-model pyfunc (or a stand-in without the method)
            return None
        method = getattr(inner, "predict_texts", None)
        return method if callable(method) else None

    # ---- forecast --------------------------------------------------------------------------
    def predict_forecast(self, request_input: Any, horizon: int) -> list[dict[str, Any]]:
        """Daily forecasts per series (the forecasting pyfunc contract); ValueError names bad ids."""
        import pandas as pd

        frame = request_input if isinstance(request_input, dict) else pd.DataFrame(list(request_input))
        out = self._pyfunc.predict(pd.DataFrame(frame), params={"horizon": int(horizon)})
        return [{k: _plain(v) for k, v in row.items()} for row in out.to_dict("records")]

    @cached_property
    def class_labels(self) -> list[Any]:
        return [_plain(c) for c in self.classes]

    @property
    def estimator(self) -> Any:
        """The loaded sklearn model (None when not an sklearn flavor)."""
        return self._estimator


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _slot(slot: Any) -> dict[str, Any]:
    slot = dict(slot)
    return {"text": str(slot.get("text", "")), "type": str(slot.get("type", "")),
            "start": _plain(slot.get("start")), "end": _plain(slot.get("end"))}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (JSON)."""
    return value.item() if hasattr(value, "item") else value


# ---- loading -----------------------------------------------------------------------------
def tabular_spec(signature_inputs: Any, task: Any, schema: Any = None) -> TabularSpec:
    """What the model accepts: from its frozen table schema (kinds, ranges, categories, nulls,
    id, label and excluded columns), or, for older models, the signature and the task's ranges."""
    if schema is not None:
        return _schema_spec(schema)
    features = dict(task.features) if task is not None and task.get("features") else {}
    if signature_inputs is not None and signature_inputs.has_input_names():
        columns = tuple(signature_inputs.input_names())
        integer = frozenset(c.name for c in signature_inputs.inputs
                            if str(getattr(c, "type", "")).lower().split(".")[-1] in {"long", "integer"})
    else:
        columns, integer = tuple(features), frozenset()
    minimum, maximum = {}, {}
    for name, bounds in features.items():
        if bounds and bounds.get("min") is not None:
            minimum[name] = float(bounds["min"])
        if bounds and bounds.get("max") is not None:
            maximum[name] = float(bounds["max"])
    label = task.get("label_column") if task is not None else None
    return TabularSpec(columns=columns, integer=integer, minimum=minimum, maximum=maximum,
                       id_column=task.get("id_column") if task is not None else None,
                       ignored=frozenset({label} - set(columns)) if label else frozenset())


def _schema_spec(schema: Any) -> TabularSpec:
    columns = tuple(schema.features)
    cols = {c.name: c for c in schema.columns}
    return TabularSpec(
        columns=columns,
        integer=frozenset(c for c in columns if cols[c].kind == "integer"),
        minimum={c: float(cols[c].min) for c in columns if cols[c].min is not None},
        maximum={c: float(cols[c].max) for c in columns if cols[c].max is not None},
        id_column=schema.id_column,
        ignored=frozenset(c.name for c in schema.columns if c.role in ("label", "excluded")),
        kinds={c: cols[c].kind for c in columns},
        nullable=frozenset(c for c in columns if cols[c].nullable),
        categories={c: frozenset(str(v) for v in cols[c].categories or ()) for c in columns
                    if cols[c].kind == "categorical" and cols[c].categories})


def load_served_model(store: ModelStore, version: str, task_config: Any = None,
                      use_cache: bool = True, fast_path: bool = True) -> ServedModel:
    """Load store ``version`` (sklearn flavor for tabular, pyfunc otherwise); ``fast_path``:
    answer with the numpy replay of the pipeline where it matches scikit-learn (fast_tabular)."""
    if not store.has_version(version):
        raise ModelLoadError(f"{store.version_dir(version)} is not a complete model version")
    model_dir = store.model_dir(version)
    mlmodel = model_dir / "MLmodel"
    try:
        key = (str(model_dir.resolve()), mlmodel.stat().st_mtime_ns, fast_path)
    except OSError as exc:
        raise ModelLoadError(f"{mlmodel}: {exc}") from exc
    if use_cache:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
    try:
        metadata = store.read_metadata(version)
    except (OSError, ValueError) as exc:   # unreadable or torn metadata.json: this version is not servable
        raise ModelLoadError(f"{store.version_dir(version) / 'metadata.json'} is unreadable ({exc})") from exc
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{store.version_dir(version) / 'metadata.json'} is not a JSON object")
    if isinstance(metadata.get("task_config"), dict):   # the task config the version was trained with
        from omegaconf import OmegaConf

        task_config = OmegaConf.create(metadata["task_config"])
    task = str(metadata.get("task") or (task_config.name if task_config is not None else "tabular"))
    started = time.monotonic()
    try:
        from mlflow.models import Model

        info = Model.load(str(model_dir))
        served = ServedModel(version=version, task=task, model_dir=model_dir, metadata=metadata,
                             loaded_at=time.time())
        if task == "tabular":
            from utils.data.table_schema import model_schema

            inputs = info.signature.inputs if info.signature is not None else None
            served.spec = tabular_spec(inputs, task_config, model_schema(metadata))
            if "sklearn" in info.flavors:
                import mlflow.sklearn

                estimator = mlflow.sklearn.load_model(str(model_dir))
                served._estimator = estimator
                served.classes = list(getattr(estimator, "classes_", []))
                fitted = [str(n) for n in getattr(estimator, "feature_names_in_", [])]
                if sorted(fitted) == sorted(served.spec.columns):   # the estimator's own column order
                    served.spec = replace(served.spec, columns=tuple(fitted))
                served.takes_matrix = served.spec.numeric_only and _takes_matrix(estimator, served.spec)
                if served.takes_matrix and fast_path:
                    served.fast = _fast_path(estimator, served.spec, version)
                if served.takes_matrix:
                    # the matrix is in the estimator's own column order, checked above: its
                    # "no feature names" warning says nothing here (silenced once, process-wide)
                    warnings.filterwarnings("ignore", message="X does not have valid feature names",
                                            category=UserWarning)
            else:
                import mlflow.pyfunc

                served._pyfunc = mlflow.pyfunc.load_model(str(model_dir))
        elif task in ("nlu", "forecast"):
            import mlflow.pyfunc

            served._pyfunc = mlflow.pyfunc.load_model(str(model_dir))
        else:
            raise ModelLoadError(f"{version}: unknown task {task!r} in metadata.json")
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {model_dir}: {type(exc).__name__}: {exc}") from exc
    with _cache_lock:
        _cache[key] = served
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
    freeze_heap()
    log.info("loaded %s (%s) in %.2f s", version, task, time.monotonic() - started)
    return served


def freeze_heap() -> None:
    """Put every object alive now out of the cyclic garbage collector's reach (``gc.freeze``).

    Why: a worker holds a model, MLflow, scikit-learn and torch (skops imports it), a few hundred
    thousand objects. A full collection walks all of them, 100-350 ms on these machines, and under
    load about one request in a hundred waited for one: the p99 tail. What a load brings in stays
    for the worker's life (or until the next deploy), so the collector need not walk it again.
    Unfrozen and collected first, so the cycles of a model replaced since the last load are still
    freed; this costs one full collection per load, not per request.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def probe_rows(spec: TabularSpec, n_random: int = 64, seed: int = 0) -> np.ndarray:
    """Rows inside the schema's ranges (bounds, zero, random values; NaN where nulls are allowed)."""
    rng = np.random.default_rng(seed)
    low = np.array([spec.minimum.get(c, -1e3) for c in spec.columns], dtype=np.float64)
    high = np.array([spec.maximum.get(c, 1e3) for c in spec.columns], dtype=np.float64)
    rows = [low, high, np.clip(np.zeros(len(low)), low, high),
            *(low + (high - low) * rng.random((n_random, len(low))))]
    matrix = np.array(rows, dtype=np.float64)
    for j, name in enumerate(spec.columns):
        if name in spec.integer:
            matrix[:, j] = np.clip(np.round(matrix[:, j]), np.ceil(low[j]), np.floor(high[j]))
        if name in spec.nullable:
            matrix[3::3, j] = np.nan
    return matrix


def _fast_path(estimator: Any, spec: TabularSpec, version: str) -> Any:
    """The numpy replay of ``estimator`` when it gives scikit-learn's answers on probe rows."""
    from api.fast_tabular import agrees, export

    fast = export(estimator)
    if fast is None:
        log.info("%s: %s has no numpy fast path; scikit-learn answers", version, type(estimator).__name__)
        return None
    if fast.n_features != len(spec.columns) or not agrees(fast, estimator, probe_rows(spec)):
        log.warning("%s: the numpy fast path differs from scikit-learn on probe rows; scikit-learn answers",
                    version)
        return None
    return fast


def _takes_matrix(estimator: Any, spec: TabularSpec) -> bool:
    """Whether a plain float matrix (fast) gives the same answer as a DataFrame (safe).

    scikit-learn's DataFrame path costs ~1 ms per call; a plain scaler + classifier gives the
    same answer for the matrix in its training column order. A pipeline that selects columns
    by name (ColumnTransformer) needs the DataFrame: the probe fails or differs, and it gets one.
    """
    import pandas as pd

    row = np.array([[min(max(0.0, spec.minimum.get(c, 0.0)), spec.maximum.get(c, np.inf))
                     for c in spec.columns]], dtype=np.float64)
    method = "predict_proba" if hasattr(estimator, "predict_proba") else "predict"
    try:
        with warnings.catch_warnings():   # once per load: the feature-name warning is expected
            warnings.simplefilter("ignore")
            fast = getattr(estimator, method)(row)
        safe = getattr(estimator, method)(pd.DataFrame(row, columns=list(spec.columns)))
        return bool(np.array_equal(np.asarray(fast), np.asarray(safe)))
    except Exception:
        return False


# ---- hot reload --------------------------------------------------------------------------
class ModelHolder:
    """The worker's current model, following `models/production`."""

    def __init__(self, store: ModelStore, task_config: Any = None, check_interval_s: float = 0.0,
                 on_swap: Callable[[ServedModel | None, ServedModel], None] | None = None,
                 on_failure: Callable[[str, str], None] | None = None, fast_path: bool = True) -> None:
        self.store = store
        self.fast_path = fast_path
        self.task_config = task_config
        self.check_interval_s = check_interval_s
        self.on_swap = on_swap
        self.on_failure = on_failure
        self._current: ServedModel | None = None
        self._target: str | None = None           # readlink() of the link the current model came from
        self._last_check = -1e18
        self._load_lock = threading.Lock()
        self._failed: dict[str, tuple[float, str]] = {}
        self.last_error: str | None = None

    def current(self) -> ServedModel | None:
        """The model to answer this request with (checks the link when the interval passed)."""
        now = time.monotonic()
        if now - self._last_check >= self.check_interval_s:
            self._last_check = now
            if self._read_link() != self._target or self._current is None:
                self._reload(force=False)
        return self._current

    def reload(self, force: bool = True) -> ServedModel | None:
        """Load production now (admin): even the same version again when ``force``."""
        self._reload(force=force, wait=True)
        return self._current

    def _read_link(self) -> str | None:
        try:
            return os.readlink(self.store.production_link)
        except OSError:
            return None

    def _reload(self, force: bool, wait: bool = False) -> None:
        # Someone else is loading: keep answering with the old model, unless there is none yet.
        if not self._load_lock.acquire(blocking=wait or self._current is None):
            return
        try:
            target = self._read_link()
            if target is None:
                if self._current is not None and self._target is not None:
                    log.warning("%s is gone; still serving %s", self.store.production_link,
                                self._current.version)
                    self._target = None
                self.last_error = f"no production model: {self.store.production_link} does not exist"
                return
            if target == self._target and self._current is not None and not force:
                return
            failed = self._failed.get(target)
            if failed and not force and time.monotonic() - failed[0] < RETRY_FAILED_S:
                return
            version = Path(target).name
            try:
                load = partial(load_served_model, self.store, version, self.task_config,
                               use_cache=not force, fast_path=self.fast_path)
                # A reload runs off a gevent worker's loop, so its other requests keep the old model
                # meanwhile. The first load stays on the loop: it imports MLflow, whose import runs a
                # subprocess (platform.processor), and gevent can only watch children from its loop.
                model = load() if self._current is None else run_off_loop(load)
            except ModelLoadError as exc:
                self._failed[target] = (time.monotonic(), str(exc))
                self.last_error = str(exc)
                log.error("not swapping to %s: %s; still serving %s", version, exc,
                          self._current.version if self._current else "nothing")
                if self.on_failure:
                    self.on_failure(version, str(exc))
                return
            old, self._current, self._target = self._current, model, target
            self._failed.pop(target, None)
            self.last_error = None
            if old is None or old.version != model.version:
                log.info("serving %s (was %s)", model.version, old.version if old else "nothing")
            if self.on_swap:
                self.on_swap(old, model)
        finally:
            self._load_lock.release()
