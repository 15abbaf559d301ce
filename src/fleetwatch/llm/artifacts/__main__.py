"""``python -m fleetwatch.llm.artifacts``: fetch, build and smoke-test what the tests use."""

from fleetwatch.llm.artifacts import main

raise SystemExit(main())
