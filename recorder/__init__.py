"""Camera ingest, segmenting, storage/retention, transparency log, playback, export + verification."""
