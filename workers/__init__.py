"""Celery: the app, its queues and beat schedule, one base task, thin tasks over handlers."""
