"""A rule-based stand-in for the NLU pyfunc (MLflow "models from code"): same input and output
contract as 02_training/nlu_pyfunc.py, no torch, instant to load. Used by tests/api only."""
from __future__ import annotations

import mlflow
import pandas as pd


class FakeNlu(mlflow.pyfunc.PythonModel):
    """intent: 'greet' when the text contains 'hello', else 'status'; capitalised words are names."""

    def predict(self, context: object, model_input: list[str], params: dict | None = None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = list(model_input["text"])
        else:
            texts = [x["text"] if isinstance(x, dict) else str(x) for x in model_input]
        rows = []
        for text in texts:
            tokens = text.split()
            tags = ["B-name" if t[:1].isupper() else "O" for t in tokens]
            slots, pos = [], 0
            for token, tag in zip(tokens, tags):
                start = text.index(token, pos)
                pos = start + len(token)
                if tag != "O":
                    slots.append({"text": token, "type": "name", "start": start, "end": pos})
            rows.append({"intent": "greet" if "hello" in text.lower() else "status",
                         "confidence": 0.9, "tags": tags, "slots": slots})
        return pd.DataFrame(rows, columns=["intent", "confidence", "tags", "slots"])


mlflow.models.set_model(FakeNlu())
