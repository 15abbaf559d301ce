"""``python -m fleetwatch.sandbox --port P [--delay S]``: serve the sandbox HTTP backend."""

from fleetwatch.sandbox.http_backend import main

main()
