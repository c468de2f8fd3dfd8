"""``python -m mtlsearch``: the command line, for environments without the console script
(e.g. a Ray job whose working directory is this project)."""

from mtlsearch.cli import main

raise SystemExit(main())
