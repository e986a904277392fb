"""The ``ramanedge`` command: a composition root that wires the packages' subcommands together.

It holds no logic of its own. It lives apart from the five packages so that none of them has to import
another against the dependency direction (spectral_core <- device_drivers <- edge_runtime; trainer and
export on the workstation side) just to offer one console command.
"""

__all__: list[str] = []
