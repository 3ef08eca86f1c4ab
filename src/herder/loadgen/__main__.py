"""`python -m herder.loadgen ...` runs `herder bench ...`."""

from herder.loadgen.cli import main

raise SystemExit(main())
