"""One JSON shape for every error the API returns, always with the request id.

    {"error": {"status": 404, "message": "...", "request_id": "...", "errors": [...]}}
"""
from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify


class ApiError(Exception):
    """Raised by a route: becomes a JSON error response with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    body: dict[str, Any] = {"status": status, "message": message,
                            "request_id": getattr(g, "request_id", None)}
    body.update({k: v for k, v in extra.items() if v is not None})
    response = jsonify({"error": body})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
