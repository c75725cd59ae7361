"""Operators' actions over the stages: a settlement run sent at once, the exception queue,
marketplaces and their keys."""
