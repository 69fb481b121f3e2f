from realtime.cli import main

raise SystemExit(main())
