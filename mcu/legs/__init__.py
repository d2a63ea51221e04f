"""The ways into a conference room (SIP, H.323, WebRTC) and the media machinery they share."""
