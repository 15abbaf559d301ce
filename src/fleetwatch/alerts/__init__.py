"""Alerts on instance and service state and on fast SLO burn, sent to log and webhooks."""

from fleetwatch.alerts._engine import Alert, AlertEngine
from fleetwatch.alerts._notifiers import LogNotifier, Notifier, WebhookNotifier, notifier_for

__all__ = ["Alert", "AlertEngine", "LogNotifier", "Notifier", "WebhookNotifier", "notifier_for"]
