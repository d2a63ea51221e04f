"""Content (the conference's second video: a shared screen, slides) and request to speak.

* :mod:`mcu.content.token` - the content token (one presenter per conference), pure;
* :mod:`mcu.content.hands` - the request-to-speak queue and the DTMF key sequences, pure;
* :mod:`mcu.content.layout` - the content layouts (content plus a speaker strip, content only), pure;
* :mod:`mcu.content.source` - the conference's content picture (newest frame of the holder);
* :mod:`mcu.content.service` - the asyncio glue: per conference token, queue, source and events;
* :mod:`mcu.content.webrtc_share` - a browser's screen share received by aiortc;
* :mod:`mcu.content.webrtc_view` - the content as a second stream to a browser (the shared content encoder).
"""
