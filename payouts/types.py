"""Distinct names for the integers that must never be mixed up."""

from __future__ import annotations

from typing import NewType

BaseUnits = NewType("BaseUnits", int)
Wei = NewType("Wei", int)
Gas = NewType("Gas", int)
Nonce = NewType("Nonce", int)
BlockNumber = NewType("BlockNumber", int)
ChainId = NewType("ChainId", int)
