"""Tell a person what the unattended pipeline did: e-mail (SMTP) and/or a webhook (JSON POST).

Configured by the `notify:` section of config.yaml. Delivery is best effort by design: a
notification that cannot be delivered is logged and reported back, never raised, so a mail
server being down cannot fail a cron tick. Secrets do not live in config.yaml: the SMTP
password comes from an environment variable or a file, the webhook URL may come from one.
"""
from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENTS = ("failure", "drift", "deployment")


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 25
    sender: str = "mlops-pipeline@localhost"
    to: tuple[str, ...] = ()
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password_env: str = "MLOPS_SMTP_PASSWORD"
    password_file: str | None = None
    timeout_s: float = 10.0

    def password(self) -> str | None:
        if self.password_file:
            return Path(self.password_file).expanduser().read_text().strip()
        return os.environ.get(self.password_env) or None


@dataclass(frozen=True)
class WebhookSettings:
    url: str | None = None
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotifySettings:
    events: tuple[str, ...] = EVENTS
    subject_prefix: str = "[mlops]"
    repeat_after_s: float = 3600.0
    smtp: SmtpSettings = SmtpSettings()
    webhook: WebhookSettings = WebhookSettings()

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> "NotifySettings":
        values = dict(values or {})
        smtp = dict(values.get("smtp") or {})
        smtp["to"] = tuple([smtp["to"]] if isinstance(smtp.get("to"), str) else smtp.get("to") or ())
        unknown = set(values.get("events") or ()) - set(EVENTS)
        if unknown:
            raise ValueError(f"notify.events: unknown event(s) {sorted(unknown)}; expected some of {EVENTS}")
        return cls(events=tuple(values.get("events") or ()),
                   subject_prefix=values.get("subject_prefix", cls.subject_prefix),
                   repeat_after_s=float(values.get("repeat_after_s", cls.repeat_after_s)),
                   smtp=SmtpSettings(**smtp),
                   webhook=WebhookSettings(**dict(values.get("webhook") or {})))

    @property
    def configured(self) -> bool:
        return bool((self.smtp.host and self.smtp.to) or self.webhook.url)


@dataclass
class Delivery:
    channel: str           # smtp | webhook
    ok: bool
    detail: str = ""


def send_email(settings: SmtpSettings, subject: str, body: str) -> Delivery:
    """One plain-text mail; STARTTLS/SSL and login when configured."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message["Subject"] = subject
    message.set_content(body)
    try:
        smtp_class = smtplib.SMTP_SSL if settings.ssl else smtplib.SMTP
        with smtp_class(settings.host or "localhost", settings.port, timeout=settings.timeout_s) as smtp:
            if settings.starttls and not settings.ssl:
                smtp.starttls()
            if settings.username:
                smtp.login(settings.username, settings.password() or "")
            refused = smtp.send_message(message)
        if refused:
            return Delivery("smtp", False, f"refused recipients: {sorted(refused)}")
        return Delivery("smtp", True, f"sent to {', '.join(settings.to)}")
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        return Delivery("smtp", False, f"{type(exc).__name__}: {exc}")


def send_webhook(settings: WebhookSettings, payload: dict[str, Any]) -> Delivery:
    """POST the payload as JSON; any 2xx counts as delivered."""
    import requests

    try:
        response = requests.post(settings.url or "", data=json.dumps(payload, default=str),
                                 headers={"Content-Type": "application/json", **settings.headers},
                                 timeout=settings.timeout_s)
    except requests.RequestException as exc:
        return Delivery("webhook", False, f"{type(exc).__name__}: {exc}")
    if not response.ok:
        return Delivery("webhook", False, f"HTTP {response.status_code}: {response.text[:200]}")
    return Delivery("webhook", True, f"HTTP {response.status_code}")


def notify(settings: NotifySettings, events: list[str], subject: str, body: str,
           payload: dict[str, Any]) -> list[Delivery]:
    """Send one message about ``events`` on every configured channel; never raises."""
    wanted = [e for e in events if e in settings.events]
    if not wanted or not settings.configured:
        return []
    full_subject = f"{settings.subject_prefix} {subject}".strip()
    deliveries: list[Delivery] = []
    if settings.smtp.host and settings.smtp.to:
        try:
            deliveries.append(send_email(settings.smtp, full_subject, body))
        except Exception as exc:  # e.g. an unreadable password file: report, do not crash
            deliveries.append(Delivery("smtp", False, f"{type(exc).__name__}: {exc}"))
    if settings.webhook.url:
        try:
            deliveries.append(send_webhook(settings.webhook, {"subject": full_subject, "events": wanted,
                                                              "text": body, **payload}))
        except Exception as exc:
            deliveries.append(Delivery("webhook", False, f"{type(exc).__name__}: {exc}"))
    for d in deliveries:
        if d.ok:
            log.info("notification (%s) delivered via %s: %s", ",".join(wanted), d.channel, d.detail)
        else:
            log.error("notification (%s) NOT delivered via %s: %s", ",".join(wanted), d.channel, d.detail)
    return deliveries
