"""caretaker's base layer: everything the init container needs.

`sidecar` builds on this package; nothing here may import `sidecar`.
"""

__version__ = "0.1.0"
