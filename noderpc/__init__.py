"""Node RPC over PostgreSQL: which node hosts what (pinning, heartbeats) and calls to that node.

Pure cores: `pinning` (liveness and ownership) and `envelope` (signed request/reply, deadline,
idempotency key). asyncio adapters: `registry` (heartbeats and pins in PostgreSQL) and
`transport` (requests as rows plus NOTIFY, replies the same way back).
"""
