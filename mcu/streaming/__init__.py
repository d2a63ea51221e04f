"""Live streaming of a conference for viewers (issue 18): the broadcast view as HLS.

* :mod:`mcu.streaming.names` (pure): which file names a stream serves, anonymous watch tokens.
* :mod:`mcu.streaming.packager`: one conference's packets and mix into a sliding HLS playlist
  (fragmented MP4, stream copy of the shared H.264 encoder, AAC encoded once).
* :mod:`mcu.streaming.service`: starting and stopping streams, their files, viewers, events.
"""
