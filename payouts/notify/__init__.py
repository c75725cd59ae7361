"""Webhooks: endpoints a marketplace registers, and the delivery of its events to them,
signed (Standard Webhooks), in order per endpoint, at least once."""
