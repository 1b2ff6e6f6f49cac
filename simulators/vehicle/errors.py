"""Errors of the vehicle simulator."""

from __future__ import annotations


class SimulatorError(Exception):
    """Root of the vehicle simulator's errors."""


class ScenarioError(SimulatorError):
    """A scenario step that cannot be applied (unknown vehicle, bad route, bad value)."""
