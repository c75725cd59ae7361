"""The HTTP API: a thin adapter over the stages' handlers; its OpenAPI document is the contract.

Nothing in the domain imports this package.
"""
