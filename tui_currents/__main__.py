from tui_currents.cli import main

raise SystemExit(main())
