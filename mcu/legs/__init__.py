"""The ways into a conference room (one module per protocol) and the machinery they share."""
