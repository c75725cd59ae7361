"""The HTTP API: a thin adapter over ``payouts.services``; its OpenAPI document is the contract.

Nothing in the domain imports this package.
"""
