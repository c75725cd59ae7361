"""payouts: the domain and its services. Imports no Celery and no HTTP framework."""
