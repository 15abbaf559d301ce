"""``python -m fleetwatch_testing --port P [--delay S]``: serve the sandbox HTTP backend."""

from fleetwatch_testing.http_backend import main

main()
