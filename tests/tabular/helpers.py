"""Mixed-type tables generated in the tests: numbers with gaps, categories, string labels."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd


def mixed_frame(n: int = 120, seed: int = 0, classes: tuple[str, ...] = ("no", "yes")) -> pd.DataFrame:
    """id, an integer, a float with missing values, a categorical with gaps, a boolean, a label."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], n).astype(object)
    colour[rng.random(n) < 0.1] = None
    size = rng.normal(10, 3, n).round(2)
    size[rng.random(n) < 0.1] = np.nan
    age = rng.integers(18, 80, n)
    score = age / 80 + (colour == "red") * 0.5 + rng.normal(0, 0.3, n)
    label = np.array(classes)[np.digitize(score, np.quantile(score, np.linspace(0, 1, len(classes) + 1)[1:-1]))]
    return pd.DataFrame({"customer": [f"c{i:04d}z" for i in range(n)], "age": age, "size": size,
                         "colour": colour, "member": rng.random(n) < 0.5, "label": label})


def regression_frame(n: int = 120, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    city = rng.choice(["paris", "rome"], n)
    return pd.DataFrame({"x": x.round(4), "city": city,
                         "price": (3 * x + (city == "rome") * 2 + rng.normal(0, 0.1, n)).round(3)})


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def task(label: str = "label", **kw) -> SimpleNamespace:
    """A task section as the steps see it (generic: nothing of the attrition schema)."""
    base = {"name": "tabular", "model_name": "byo", "primary_metric": "auto", "problem": "auto",
            "label_column": label, "id_column": "auto", "label_values": [], "positive_label": None,
            "features": {}}
    return SimpleNamespace(**{**base, **kw})
