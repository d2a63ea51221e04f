"""Everything that speaks SIP or H.323, plus plain RTP. Protocol cores are sans-I/O."""
