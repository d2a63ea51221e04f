"""The ways into a conference room (SIP, H.323, WebRTC: one module per protocol) and the media machinery they share."""
