"""Fixture submissions per assignment: realistic wrong answers, correct variants and cheats, with scores."""
