"""One side of the gate race (run as a process by the registry tests): once the file ``go``
exists (both sides have imported everything and said so in ``go.ready-<number>``), gate
registry version ``number`` with ``score`` against the champion.

mode ``locked``: the project's gate (utils/models/registry_gate.gate_and_move), with a
deliberately slow decision (``think_s``) so that two gates overlap; mode ``naive``: the same
rule without the lock and the compare-and-set, the control that shows the race is real.
Prints one JSON line: what this side did.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "04_deployment")]

import mlflow  # noqa: E402

from deployment import decide  # noqa: E402  (04_deployment/deployment.py: the project's rule)
from utils.models.registry_gate import CHAMPION_ALIAS, gate_and_move, read_champion  # noqa: E402


def main(uri: str, name: str, number: int, score: float, think_s: float, go: Path, mode: str) -> None:
    client = mlflow.MlflowClient(uri)
    client.get_registered_model(name)             # connected and warm before the start
    go.with_name(f"{go.name}.ready-{number}").touch()
    while not go.exists():
        time.sleep(0.002)

    def rule(candidate: float, champion: float | None) -> tuple[bool, str]:
        time.sleep(think_s)
        return decide(candidate, champion, 0.0, False)

    if mode == "locked":
        result = gate_and_move(client, name, number, score, rule, wait_s=60)
        out = {"deployed": result.deployed, "reason": result.reason, "against": result.champion.number}
    else:
        champion = read_champion(client, name)
        ok, reason = rule(score, champion.score)
        if ok:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, str(number))
        out = {"deployed": ok, "reason": reason, "against": champion.number}
    print(json.dumps({"number": number, "score": score, "done": time.time(), **out}))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), float(a[3]), float(a[4]), Path(a[5]), a[6])
