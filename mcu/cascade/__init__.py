"""Multi-level cascade between MCU nodes (issue 7): sans-I/O path failover, the node-to-node
control-channel protocol and the no-loop-back rule. The SIP legs and asyncio adapters that
drive these state machines are not here yet (see docs/cascade.md)."""
