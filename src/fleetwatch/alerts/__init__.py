"""Alerts on instance and service state and on fast SLO burn, sent to log and webhooks."""

from fleetwatch.alerts._engine import Alert, AlertEngine
from fleetwatch.alerts._notifiers import LogNotifier, Notifier, WebhookNotifier, notifier_for
from fleetwatch.alerts._rules import AlertRule, NotifierSettings

__all__ = [
    "Alert",
    "AlertEngine",
    "AlertRule",
    "LogNotifier",
    "Notifier",
    "NotifierSettings",
    "WebhookNotifier",
    "notifier_for",
]
