"""The app's screens: connectors (home), editor, tail, health, dead letters, and small dialogs."""
