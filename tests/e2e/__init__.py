"""End-to-end tests: the real `tui-currents` command in a real terminal (tmux), driven by key presses."""
