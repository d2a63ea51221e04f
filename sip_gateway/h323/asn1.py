"""ASN.1 PER codecs for H.225.0 (call signalling and RAS) and H.245 on top of pycrate.

pycrate 0.8.1 (pinned) generates the codecs from the ITU-T ASN.1 modules; this module adds
three things around it:

* a fix for its ALIGNED-PER encoder bug with SEQUENCE extension additions (see
  :func:`install_per_fix`), and a verification step that re-decodes every encoding so a
  regression can never reach the wire silently;
* a lock, because pycrate objects are shared, stateful singletons;
* one exception type (:class:`Asn1Error`) for every way a decode can fail, so the state
  machines can turn it into a release with a cause instead of a crash.

Values are pycrate's Python representation: SEQUENCE -> dict, CHOICE -> (name, value),
NULL -> 0, OBJECT IDENTIFIER -> tuple of ints, BIT STRING -> (int, length).
"""
from __future__ import annotations

import threading
from typing import Any

from pycrate_asn1dir import H225
from pycrate_asn1rt import asnobj, asnobj_construct
from pycrate_asn1rt.codecs import ASN1CodecPER
from pycrate_asn1rt.utils import T_UINT

__all__ = [
    "Asn1Error",
    "H225_PROTOCOL_ID",
    "H245_PROTOCOL_ID",
    "decode_h245",
    "decode_olc",
    "encode_olc",
    "missing_mandatory",
    "decode_ras",
    "decode_uuie",
    "encode_h245",
    "encode_ras",
    "encode_uuie",
    "install_per_fix",
    "per_fix_installed",
]

# H.225.0 version 4 and H.245 version 13: widely interoperable, both dissected by Wireshark.
H225_PROTOCOL_ID: tuple[int, ...] = (0, 0, 8, 2250, 0, 4)
H245_PROTOCOL_ID: tuple[int, ...] = (0, 0, 8, 245, 0, 13)

_LOCK = threading.RLock()
_UUIE = H225.H323_MESSAGES.H323_UserInformation
_RAS = H225.H323_MESSAGES.RasMessage
_H245 = H225.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
_OLC = H225.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel


class Asn1Error(ValueError):
    """An ASN.1 value could not be encoded, or bytes could not be decoded."""


def _fixed_construct_to_per(self: Any) -> list[Any]:
    """ALIGNED/UNALIGNED PER encoding of SEQUENCE/SET, with the extension part done right.

    pycrate 0.8.1 encodes each extension addition as an open type *before* it appends the
    extension-presence bitmap. In ALIGNED PER the open type's length determinant is
    octet-aligned, so when the root part ends off an octet boundary the first open type
    gets a padding field computed from the wrong bit offset; the bitmap is then realigned a
    second time and a spurious 0x00 octet lands on the wire (X.691 clauses 19.7-19.9 put
    the bitmap first, then the open types). This version emits the bitmap first.
    """
    per = ASN1CodecPER
    gen: list[Any] = []
    if not self._cont and self._ext is None:
        return gen
    extended = False
    if self._ext is not None:
        extended = any(k in self._ext or k[:5] == "_ext_" for k in self._val)
        gen.append((T_UINT, 1 if extended else 0, 1))
        if per.ALIGNED:
            per._off[-1] += 1
    if self._root_opt:
        opt_len, bits = len(self._root_opt), 0
        for i, ident in enumerate(self._root_opt):
            if ident in self._val:
                if per.CANONICAL and self._val[ident] == self._cont[ident]._def:
                    del self._val[ident]
                else:
                    bits |= 1 << (opt_len - 1 - i)
        gen.append((T_UINT, bits, opt_len))
        if per.ALIGNED:
            per._off[-1] += opt_len
    root = self._root_canon if self.TYPE == asnobj_construct.TYPE_SET else self._root
    for ident in root:
        if ident in self._val:
            comp = self._cont[ident]
            parent = comp._parent
            comp._parent = self
            comp._val = self._val[ident]
            gen.extend(comp._to_per())
            comp._parent = parent
    if not extended:
        return gen
    # Collect the present extension additions (index, object-with-value) first ...
    present: list[tuple[int, Any]] = []
    unknown: list[tuple[int, bytes]] = []
    count = 1
    for ident in self._ext_nest:
        if isinstance(ident, list):
            group_val = {i: self._val[i] for i in ident if i in self._val}
            if group_val:
                comp = self._ext_group_obj[self._ext_ident[ident[0]]]
                present.append((count, (comp, group_val, False)))
        elif ident in self._val:
            present.append((count, (self._cont[ident], self._val[ident], True)))
        count += 1
    for ident in sorted((i for i in self._val if i[:5] == "_ext_"), key=lambda x: int(x[5:])):
        index = int(ident[5:])
        if index >= count:
            unknown.append((index, self._val[ident]))
    indexes = [i for i, _ in present] + [i for i, _ in unknown]
    if not indexes:
        return gen
    # ... then the bitmap (normally small length + bits) and its realignment ...
    ldet = max(max(indexes), len(self._ext_nest))
    if ldet > 64:
        gen.append((T_UINT, 1, 1))
        if per.ALIGNED:
            per._off[-1] += 1
        gen.extend(per.encode_intunconst(ldet - 1, 0))
    else:
        gen.append((T_UINT, ldet - 1, 7))
        if per.ALIGNED:
            per._off[-1] += 7
    gen.append((T_UINT, sum(1 << (ldet - i) for i in indexes), ldet))
    if per.ALIGNED:
        per._off[-1] += ldet
        if per._off[-1] % 8:
            gen.extend(per.encode_pad())
    # ... and only now the open types, whose length determinants are then aligned correctly.
    for _, (comp, value, single) in present:
        parent = comp._parent
        if single:
            comp._parent = self
        comp._val = value
        gen.extend(per.encode_unconst_open(comp))
        comp._parent = parent
    for _, buf in unknown:
        gen.extend(per.encode_unconst_buf(buf))
    return gen


_ORIGINAL_TO_PER = asnobj_construct._CONSTRUCT._to_per


def install_per_fix() -> None:
    """Replace pycrate's SEQUENCE/SET PER encoder with :func:`_fixed_construct_to_per`.

    Idempotent. Only the encoder changes; pycrate's decoder is correct (it agrees with
    Wireshark), which is what lets :func:`_encode` verify each encoding by decoding it.
    """
    asnobj_construct._CONSTRUCT._to_per = _fixed_construct_to_per


def uninstall_per_fix() -> None:
    """Restore pycrate's original encoder (used by the regression test to show the bug)."""
    asnobj_construct._CONSTRUCT._to_per = _ORIGINAL_TO_PER


def per_fix_installed() -> bool:
    """True when the corrected encoder is active."""
    return asnobj_construct._CONSTRUCT._to_per is _fixed_construct_to_per


def _encode(obj: Any, value: Any, verify: bool) -> bytes:
    with _LOCK:
        depth = len(ASN1CodecPER._off)
        try:
            obj.set_val(value)
            data: bytes = obj.to_aper()
        except Exception as exc:  # pycrate raises many types; the caller needs one
            raise Asn1Error(f"{obj._name}: cannot encode: {exc}") from exc
        finally:
            del ASN1CodecPER._off[depth:]  # an exception mid-encode leaves offsets behind
        if verify:
            # Re-decoding catches any encoder defect (like the one fixed above) before the
            # bytes reach a peer that would reject them.
            try:
                obj.from_aper(data)
            except Exception as exc:
                raise Asn1Error(f"{obj._name}: encoder produced undecodable bytes: {exc}") from exc
        return data


def _decode(obj: Any, data: bytes) -> Any:
    if not data:
        raise Asn1Error(f"{obj._name}: empty PDU")
    with _LOCK:
        depth = len(ASN1CodecPER._off)
        try:
            obj.from_aper(bytes(data))
            return obj.get_val()
        except Exception as exc:  # malformed input surfaces as many exception types
            raise Asn1Error(f"{obj._name}: cannot decode: {exc}") from exc
        finally:
            del ASN1CodecPER._off[depth:]


def encode_uuie(value: dict[str, Any], verify: bool = True) -> bytes:
    """Encode an H323-UserInformation value (the Q.931 user-user payload)."""
    return _encode(_UUIE, value, verify)


def decode_uuie(data: bytes) -> dict[str, Any]:
    """Decode an H323-UserInformation; raises :class:`Asn1Error` on malformed input."""
    value: dict[str, Any] = _decode(_UUIE, data)
    return value


def encode_h245(value: tuple[str, Any], verify: bool = True) -> bytes:
    """Encode a MultimediaSystemControlMessage, e.g. ``('request', ('masterSlaveDetermination', ...))``."""
    return _encode(_H245, value, verify)


def decode_h245(data: bytes) -> tuple[str, Any]:
    """Decode one MultimediaSystemControlMessage."""
    value: tuple[str, Any] = _decode(_H245, data)
    return value


def encode_ras(value: tuple[str, Any], verify: bool = True) -> bytes:
    """Encode a RasMessage, e.g. ``('gatekeeperRequest', {...})``."""
    return _encode(_RAS, value, verify)


def decode_ras(data: bytes) -> tuple[str, Any]:
    """Decode a RasMessage (one UDP datagram)."""
    value: tuple[str, Any] = _decode(_RAS, data)
    return value


def encode_olc(value: dict[str, Any], verify: bool = True) -> bytes:
    """Encode a bare OpenLogicalChannel (the elements of the H.225.0 ``fastStart`` field)."""
    return _encode(_OLC, value, verify)


def decode_olc(data: bytes) -> dict[str, Any]:
    """Decode one ``fastStart`` element."""
    value: dict[str, Any] = _decode(_OLC, data)
    return value


def missing_mandatory(type_obj: Any, value: dict[str, Any]) -> list[str]:
    """Components of a SEQUENCE that are neither OPTIONAL nor DEFAULT but absent from
    ``value``, extension additions included. pycrate only enforces the root ones; H.225.0
    makes several extension additions mandatory (callIdentifier, mediaWaitForConnect, ...)."""
    return [name for name, comp in type_obj._cont.items()
            if not comp._opt and comp._def is None and name not in value]


def h225_object(type_name: str) -> Any:
    """The pycrate object of an H.225.0 type by its ASN.1 name."""
    return getattr(H225.H323_MESSAGES, type_name.replace("-", "_"))


def h245_object(type_name: str) -> Any:
    """The pycrate object of an H.245 type by its ASN.1 name (for value checks and tests)."""
    return getattr(H225.MULTIMEDIA_SYSTEM_CONTROL, type_name.replace("-", "_"))



def _cycle_safe_fullname(self: Any) -> str:
    """pycrate's ``ASN1Obj.fullname`` (used to word its decode errors) follows ``_parent``
    links until None. After some sequences of malformed H.245 PDUs the objects of the
    recursive MultiplexElement type end up with a ``_parent`` cycle, and the next value out of
    constraint there made ``fullname`` loop forever, holding the ASN.1 lock: one peer could hang
    the process (found by the fuzz campaign, security/fuzz target h245). Stop at a repeat."""
    names = [self._name]
    obj, seen = self, {id(self)}
    while obj._parent is not None and id(obj._parent) not in seen:
        obj = obj._parent
        seen.add(id(obj))
        names.append(obj._name)
    return ".".join(reversed(names))


asnobj.ASN1Obj.fullname = _cycle_safe_fullname
install_per_fix()
