-- Issue 17 (the desk survives a node): the desk node that took each call, so a live desk node puts
-- the callers of a dead one on the callback list at once (DeskService.take_over, rules in
-- dispatch/calltaking/recovery.py). NULL for calls taken before this column, or without node RPC.
ALTER TABLE emergency_calls ADD COLUMN desk_node text;
CREATE INDEX emergency_calls_open_by_node ON emergency_calls (desk_node)
    WHERE ended_at IS NULL AND abandoned_at IS NULL;
