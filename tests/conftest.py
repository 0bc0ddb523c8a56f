"""Suite-wide settings: grids train in the test's own process unless a test asks for worker
processes (the default pool would start workers for every small grid; its tests say so)."""
import os

os.environ.setdefault("MMREC_PLUGIN_WORKERS", "1")
