from repsys.cli import main

raise SystemExit(main())
