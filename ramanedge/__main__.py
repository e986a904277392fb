from ramanedge.cli import main

raise SystemExit(main())
