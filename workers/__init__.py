"""Celery: the app, its queues and beat schedule, and thin tasks over payouts.services."""
