"""Adversarial reliability suite: kills, endpoint faults, a full disk and refused write keys, end to end."""
