"""Widgets of the app: the event tree, the tail view, the mode bar and state styling."""
