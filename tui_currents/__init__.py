"""tui-currents: forward Braze Currents engagement events to Segment."""

__version__ = "0.1.0"
LIBRARY_NAME = "tui-currents"
