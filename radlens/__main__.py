from radlens.cli import main

raise SystemExit(main())
