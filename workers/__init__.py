"""Celery: the app, its queues and beat schedule, one base task, and thin tasks over the handlers."""
