"""The `commandcenter` command: wires the capability packages into running roles."""
