"""Helpers shared by the unit and system tests (never tests themselves)."""
