"""Alerts on instance and service state and on fast SLO burn, sent to log and webhooks."""

from fleetwatch.alerts.engine import Alert, AlertEngine
from fleetwatch.alerts.notifiers import LogNotifier, Notifier, WebhookNotifier, notifier_for

__all__ = ["Alert", "AlertEngine", "LogNotifier", "Notifier", "WebhookNotifier", "notifier_for"]
