"""Notifications: real SMTP and HTTP deliveries to local servers; failures never raise."""
from __future__ import annotations

import logging

import pytest

from tests.fullprocess.conftest import free_port
from utils.tick.notify import NotifySettings, SmtpSettings, WebhookSettings, notify


def test_email_is_delivered_over_smtp(smtp_server) -> None:
    port, received = smtp_server
    settings = NotifySettings(smtp=SmtpSettings(host="127.0.0.1", port=port, sender="tick@example.org",
                                                to=("ops@example.org", "ml@example.org")))
    deliveries = notify(settings, ["drift", "deployment"], "drift detected", "body text", {})
    assert [(d.channel, d.ok) for d in deliveries] == [("smtp", True)]
    assert len(received) == 1
    message = received[0]
    assert message["Subject"] == "[mlops] drift detected"
    assert message["To"] == "ops@example.org, ml@example.org"
    assert "body text" in message.get_payload()


def test_webhook_posts_json(webhook_server) -> None:
    url, received = webhook_server
    settings = NotifySettings(webhook=WebhookSettings(url=f"{url}/hook", headers={"X-Token": "t"}))
    deliveries = notify(settings, ["failure"], "tick FAILED", "details", {"tick": {"exit_code": 1}})
    assert [(d.channel, d.ok) for d in deliveries] == [("webhook", True)]
    path, body, headers = received[0]
    assert path == "/hook" and headers["X-Token"] == "t"
    assert body["events"] == ["failure"] and body["tick"] == {"exit_code": 1}
    assert body["subject"] == "[mlops] tick FAILED" and body["text"] == "details"


def test_undeliverable_notifications_are_logged_not_raised(webhook_server, caplog) -> None:
    url, _ = webhook_server
    closed = free_port()   # nothing listens there
    settings = NotifySettings(smtp=SmtpSettings(host="127.0.0.1", port=closed, to=("a@example.org",),
                                                timeout_s=2),
                              webhook=WebhookSettings(url=f"{url}/fail"))
    with caplog.at_level(logging.ERROR, logger="utils.tick.notify"):
        deliveries = notify(settings, ["failure"], "s", "b", {})
    assert [(d.channel, d.ok) for d in deliveries] == [("smtp", False), ("webhook", False)]
    assert "HTTP 500" in deliveries[1].detail
    assert sum("NOT delivered" in r.message for r in caplog.records) == 2
    unreachable = NotifySettings(webhook=WebhookSettings(url=f"http://127.0.0.1:{closed}/x", timeout_s=2))
    assert notify(unreachable, ["drift"], "s", "b", {})[0].ok is False
    broken = NotifySettings(smtp=SmtpSettings(host="127.0.0.1", port=closed, to=("a@example.org",),
                                              username="u", password_file="/nonexistent/secret"))
    assert notify(broken, ["failure"], "s", "b", {})[0].ok is False


def test_events_are_filtered_and_config_is_read_from_yaml() -> None:
    from omegaconf import OmegaConf

    from utils.pipeline.config import load_config

    cfg = load_config(["notify.events=[failure]", "notify.smtp.host=mail", "notify.smtp.to=x@example.org"])
    settings = NotifySettings.from_mapping(OmegaConf.to_container(cfg.notify, resolve=True))
    assert settings.events == ("failure",) and settings.smtp.to == ("x@example.org",)
    assert notify(settings, ["drift"], "s", "b", {}) == []          # not an event we notify on
    assert NotifySettings.from_mapping({}).configured is False
    with pytest.raises(ValueError, match="notify.events"):
        NotifySettings.from_mapping({"events": ["sometimes"]})
