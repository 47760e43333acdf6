"""Notifications: the transactional outbox, rendering and the SMTP dispatcher (see docs/notifications.md)."""
