"""``python -m grokinterp.cli ARGS``: the same as ``grokinterp ARGS``."""

from grokinterp.cli import main

raise SystemExit(main())
