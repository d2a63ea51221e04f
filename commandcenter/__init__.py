"""The `commandcenter` command and the typed composition root (`node.py`) that builds each role."""
