"""H.224 (ITU-T H.224, RFC 4573) and H.281 far-end camera control, sans-I/O.

:mod:`.frame` the H.224 frame, segmentation and reassembly; :mod:`.cme` the client management
entity and H.281's extra capabilities; :mod:`.h281` the camera control messages; :mod:`.session`
the state machine of one call (:class:`FeccSession`). Adapters: ``sip_gateway.aio.h224_channel``.
"""

from .cme import CameraSource, FeccCapabilities
from .frame import H224Error
from .h281 import Action
from .session import FarEndRequest, FeccRules, FeccSession, Learned, Send

__all__ = ["Action", "CameraSource", "FarEndRequest", "FeccCapabilities", "FeccRules", "FeccSession",
           "H224Error", "Learned", "Send"]
