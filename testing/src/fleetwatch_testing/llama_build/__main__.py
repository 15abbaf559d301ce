"""``python -m fleetwatch_testing.llama_build``: fetch, build and smoke-test what the tests use."""

from fleetwatch_testing.llama_build import main

raise SystemExit(main())
