"""BFCP (RFC 8855) for SIP room systems, sans-I/O: the message codec, the MCU's floor control
server over the conference's content token, stream framing, and the SDP of RFC 8856/4796."""
