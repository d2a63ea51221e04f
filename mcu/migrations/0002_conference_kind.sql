-- What a conference is for: a meeting (dial-in by SIP, H.323, WebRTC and cascade links, subject to
-- the admission policy in mcu/admission.py) or the room of an emergency call, which no dial-in
-- path may ever reach whatever its PIN or guest flag.

ALTER TABLE conferences ADD COLUMN kind text NOT NULL DEFAULT 'meeting'
    CHECK (kind IN ('meeting', 'emergency_call'));

-- Rooms the call-taking desk opened before this column existed.
UPDATE conferences SET kind = 'emergency_call' WHERE created_by = 'desk' AND name LIKE '接警 %';
