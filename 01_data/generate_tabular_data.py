"""Seeded generator of corporate attrition data in the default schema.

The signal is learnable but noisy: a client whose activity fell against last year's average,
and a small client, is more likely to leave; label noise and a latent per-client factor keep
F1 well below 1. Files overlap on purpose (the same rows appear in several exports), as real
extracts do, so ingestion's de-duplication has work to do.

    python 01_data/generate_tabular_data.py --out-dir /tmp/attrition --files 5 --rows 100000
"""
from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees", "exited"]


def generate_clients(n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """n_rows clients with a logistic attrition signal plus noise."""
    letters = np.array(list(string.ascii_lowercase))
    ids = ["".join(rng.choice(letters, 4)) + str(i) for i in range(n_rows)]
    employees = np.maximum(1, rng.lognormal(mean=4.0, sigma=1.2, size=n_rows)).astype(int)
    yearly = np.maximum(0, rng.gamma(shape=2.0, scale=60 * np.log1p(employees))).astype(int)
    monthly_mean = yearly / 12
    trend = rng.normal(1.0, 0.45, size=n_rows).clip(0, None)
    lastmonth = rng.poisson(monthly_mean * trend + 0.5)
    latent = rng.normal(0, 0.8, size=n_rows)
    drop = np.log1p(lastmonth) - np.log1p(monthly_mean)
    logit = -0.6 - 1.6 * drop - 0.35 * (np.log1p(employees) - 4.0) + latent
    exited = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"corporation": ids, "lastmonth_activity": lastmonth,
                         "lastyear_activity": yearly, "number_of_employees": employees,
                         "exited": exited})[COLUMNS]


def write_overlapping_files(frame: pd.DataFrame, out_dir: Path, n_files: int, overlap: float,
                            rng: np.random.Generator, prefix: str = "dataset") -> list[Path]:
    """Split rows over n_files and copy a share of each file's rows into the next one."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shuffled = frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
    bounds = np.linspace(0, len(shuffled), n_files + 1).astype(int)
    parts = [shuffled.iloc[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
    written = []
    for i, part in enumerate(parts):
        extra = parts[i - 1].sample(frac=overlap, random_state=i) if i > 0 else part.iloc[:0]
        path = out_dir / f"{prefix}{i + 1}.csv"
        pd.concat([part, extra]).to_csv(path, index=False)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the source CSV files")
    parser.add_argument("--test-path", type=Path, default=None, help="also write a held-out test CSV here")
    parser.add_argument("--rows", type=int, default=1200, help="distinct clients in the source files")
    parser.add_argument("--test-rows", type=int, default=400, help="clients in the test file")
    parser.add_argument("--files", type=int, default=3, help="number of overlapping source files")
    parser.add_argument("--overlap", type=float, default=0.15, help="share of a file repeated in the next")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    clients = generate_clients(args.rows + args.test_rows, rng)
    source, test = clients.iloc[: args.rows], clients.iloc[args.rows:]
    for path in write_overlapping_files(source, args.out_dir, args.files, args.overlap, rng):
        print(f"wrote {path}")
    if args.test_path:
        args.test_path.parent.mkdir(parents=True, exist_ok=True)
        test.to_csv(args.test_path, index=False)
        print(f"wrote {args.test_path}")


if __name__ == "__main__":
    main()
