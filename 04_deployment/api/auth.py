"""API key for heavy and admin routes: header X-API-Key, compared in constant time.

The key comes from the environment (`API_KEY`, or the variable `api.api_key_env` names),
never from a file in the repository. Without a key configured the protected routes are
closed (403 saying how to set one): secure by default.
"""
from __future__ import annotations

import hmac
from functools import wraps
from typing import Any, Callable

from flask import current_app

from api.errors import ApiError

HEADER = "X-API-Key"
FORM_FIELD = "api_key"     # the dashboard's buttons: an HTML form cannot set a header


def is_form_post() -> bool:
    from flask import request

    return request.method == "POST" and request.mimetype in {"application/x-www-form-urlencoded",
                                                             "multipart/form-data"}


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def check_api_key() -> None:
    """Raise ApiError 403 (no key configured) or 401 (missing/wrong key)."""
    from flask import request

    services = current_app.extensions["mlops"]
    expected: str | None = services.api_key
    if not expected:
        env = services.config.settings.api_key_env
        raise ApiError(403, f"this route needs an API key, and none is configured: start the API with "
                            f"the environment variable {env} set (e.g. `{env}=$(openssl rand -hex 32) "
                            f"./run_pipeline.sh serve`) and send it in the {HEADER} header")
    given = request.headers.get(HEADER)
    if not given and is_form_post():
        _same_origin()
        given = request.form.get(FORM_FIELD) or None
    if not given:
        raise ApiError(401, f"missing {HEADER} header: this route needs the API key",
                       headers={"WWW-Authenticate": HEADER})
    if not hmac.compare_digest(_encode(given), _encode(expected)):
        raise ApiError(401, f"wrong API key in {HEADER}", headers={"WWW-Authenticate": HEADER})


def require_api_key(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_api_key()
        return view(*args, **kwargs)

    return wrapper


def _same_origin() -> None:
    """A form post must come from this server's own page (CSRF): Origin, else Referer, must
    name this host. The key in the form is a second guard: another site cannot know it."""
    from urllib.parse import urlsplit

    from flask import request

    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source and source != "null" and urlsplit(source).netloc != request.host:
        raise ApiError(403, "cross-site form post refused: use the dashboard of this server")
