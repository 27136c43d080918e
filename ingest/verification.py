"""Proving a webhook body is authentic: HS256 JWT verification, pinned, with several secrets.

Dialpad signs each event as a compact JWT (HS256) when the webhook has a secret; the body framing is not
documented, so a raw compact token and a JSON string holding one are both accepted, and a plain JSON object
only when unsigned input is explicitly allowed.

Why not ``jwt.decode`` per request: PyJWT 2.15 spends ~30 of its ~48 µs in a per-character base64url
alphabet check (run in a Python generator), and with several secrets it would parse the token once per secret.
Here the token is parsed once: split at its two dots, each segment decoded by msgspec's strict base64
decoder (after ``-_`` -> ``+/``, with ``+`` and ``/`` refused beforehand) plus a padding and canonical-encoding
check, which together admit exactly the base64url alphabet; the header decoded with msgspec and ``alg``
compared with ``HS256`` exactly; the signature is then checked as PyJWT's ``HMACAlgorithm.verify`` does
(HMAC-SHA256, then ``hmac.compare_digest``), against keys prepared once by PyJWT's ``prepare_key`` (which
refuses PEM/SSH keys: no key confusion). Each key's HMAC state after the key (its inner and outer pads) is
computed once and copied per token: half the cost of the one-shot ``hmac.digest``, which hashes both pads again
every time. Claims are decoded only after a signature verified, always (cheaper than scanning for them first).
``tests/unit/test_ingest_verification.py`` checks that this accepts exactly the tokens
``jwt.decode(..., algorithms=["HS256"])`` accepts, as far as form, algorithm, signature, ``exp`` and ``nbf`` go.

Registered claims: ``exp`` and ``nbf`` are honoured with a leeway when present, never required. The others
PyJWT checks are not refused: ``iat`` (a future ``iat`` only means the sender's clock is ahead, and a 401 is
never retried by Dialpad), ``aud`` (PyJWT refuses any when no audience is configured), a ``sub`` or ``jti``
that is not a string. An authentic payload that is not a JSON object is kept (422) rather than refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

from ingest.errors import ConfigurationError, VerificationError

# Three base64url segments (RFC 7515 §2), trailing "=" tolerated as PyJWT does; the signature may be
# empty (alg "none"), so that such a token is refused for its algorithm rather than as malformed. Decoding
# the segments enforces this shape on the way to a verified token (each character is checked once, in C,
# by msgspec's base64 decoder); the expression itself only runs for a token about to be refused, so that one
# with a stray character is refused as malformed whatever else is wrong with it (its alg, its signature).
_COMPACT_JWT = re.compile(rb"([A-Za-z0-9_-]+={0,2})\.([A-Za-z0-9_-]+={0,2})\.([A-Za-z0-9_-]*={0,2})")
_NOT_COMPACT = "body is not a compact JWT (three base64url segments)"
_ALGORITHM = "HS256"

# Failure reasons: stable labels for metrics and the 401 body.
MALFORMED = "malformed"
ALGORITHM = "algorithm"
SIGNATURE = "signature"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
UNSIGNED = "unsigned"
FAILURE_REASONS = (MALFORMED, ALGORITHM, SIGNATURE, EXPIRED, NOT_YET_VALID, UNSIGNED)


class JoseHeader(msgspec.Struct):
    """The protected header of a compact JWS; other members are ignored unless critical."""

    alg: str | None = None
    crit: Any = None
    b64: Any = None


class Verified(msgspec.Struct):
    """An authentic payload: the raw JSON text and whether it came signed."""

    payload: bytes
    signed: bool


class _TimeClaims(msgspec.Struct):
    """The registered time claims honoured when present; every other claim is skipped while decoding."""

    exp: Any = msgspec.UNSET
    nbf: Any = msgspec.UNSET


_header_decoder = msgspec.json.Decoder(JoseHeader)
_claims_decoder = msgspec.json.Decoder(_TimeClaims)
_string_decoder = msgspec.json.Decoder(str)


_compare_digest = hmac.compare_digest


def keyed_hmac(key: bytes) -> Any:
    """An HMAC-SHA256 that has hashed ``key`` only, to be copied per message: OpenSSL's own object when
    ``hmac.new`` wraps one (CPython with OpenSSL), whose ``copy``/``update``/``digest`` run in C, about a
    third cheaper per token than the same calls through the ``hmac.HMAC`` wrapper; else that wrapper,
    which has the same three methods and gives the same digests."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    return getattr(mac, "_hmac", None) or mac


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = {0: b'"', 2: b'=="', 3: b'="'}
"""The padding a standard base64 string needs after a last quantum of 0, 2 or 3 characters, and the closing quote."""
_base64_decoder = msgspec.json.Decoder(bytes)
_CANONICAL_LAST_CHARACTER = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
"""With 2 (3) characters in the last quantum, the last one carries 4 (2) unused bits, which a canonical
encoding leaves zero: the same test as decoding, re-encoding and comparing, without the re-encoding."""


def _b64url(segment: bytes, name: str) -> bytes:
    """Decode one base64url segment, refusing bytes outside the alphabet, bad padding and non-canonical encodings
    (as PyJWT does)."""
    stripped = segment.rstrip(b"=")
    last_quantum = len(stripped) % 4
    if last_quantum == 1 or (stripped != segment and (len(segment) % 4 or len(segment) - len(stripped) > 2)):
        raise _bad_segment(stripped, name, "invalid base64url")
    if last_quantum and stripped[-1] not in _CANONICAL_LAST_CHARACTER[last_quantum]:
        raise _bad_segment(stripped, name, "non-canonical base64url")
    try:  # msgspec's base64 decoder (a JSON string into bytes) takes half the time of binascii.a2b_base64
        return _base64_decoder.decode(b'"' + stripped.translate(_URLSAFE_TO_STANDARD) + _PADDING[last_quantum])
    except msgspec.DecodeError:  # incl. ValidationError
        raise _bad_segment(stripped, name, "invalid base64url") from None


_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _bad_segment(stripped: bytes, name: str, problem: str) -> VerificationError:
    """The error for a segment that does not decode; bytes outside the alphabet (a stray byte-order mark or
    other bytes around the token) are named as such, not as a base64 problem. Only on the way to a 401."""
    if stripped.translate(None, _BASE64URL_ALPHABET):
        return VerificationError(MALFORMED, f"the token's {name} holds bytes outside base64url "
                                            "(anything before or after the token?)")
    return VerificationError(MALFORMED, f"{problem} in the token's {name}")


def _refusal(token: bytes, reason: str, detail: str) -> VerificationError:
    """The error refusing ``token`` for ``reason``, unless the token is not even a compact JWT (its payload
    segment, not decoded before the signature verified, may hold a stray character): then it is malformed."""
    if _COMPACT_JWT.fullmatch(token) is None:
        return VerificationError(MALFORMED, _NOT_COMPACT)
    return VerificationError(reason, detail)


def _numeric_date(value: Any, name: str) -> float | None:
    if value is msgspec.UNSET:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise VerificationError(MALFORMED, f"the `{name}` claim must be a number (seconds since the epoch)")
    return value


class TokenVerifier:
    """Verify webhook bodies against one or more HS256 secrets (any may verify: rotation)."""

    def __init__(self, secrets: Sequence[str], *, allow_unsigned: bool = False, leeway_s: float = 30,
                 clock: Callable[[], float] = time.time) -> None:
        if not secrets and not allow_unsigned:
            raise ConfigurationError("no webhook secret configured: set ONDUTY_WEBHOOK_SECRETS "
                                     "(or ONDUTY_ALLOW_UNSIGNED=true for unsigned JSON)")
        try:
            self._keys = [keyed_hmac(HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)) for secret in secrets]
            """Per secret, an HMAC-SHA256 that has hashed the key and nothing else: copied for each token."""
        except InvalidKeyError:
            raise ConfigurationError("a value of ONDUTY_WEBHOOK_SECRETS looks like a PEM or SSH key; "
                                     "HS256 secrets must be shared secrets") from None
        self._allow_unsigned = allow_unsigned
        self._leeway_s = leeway_s
        self._clock = clock
        self._headers: dict[bytes, JoseHeader] = {}

    def verify_body(self, body: bytes) -> Verified:
        """Return the authentic payload of a webhook body or raise ``VerificationError``."""
        body = body.strip()
        if body[:1] == b"{":
            if not self._allow_unsigned:
                raise VerificationError(UNSIGNED, "unsigned JSON body refused: the webhook must be signed (HS256 JWT)")
            return Verified(body, signed=False)
        if body[:1] == b'"':
            try:
                body = _string_decoder.decode(body).strip().encode()
            except (msgspec.DecodeError, ValueError):  # UnicodeError is a ValueError
                raise VerificationError(MALFORMED, "body is neither a compact JWT nor a JSON string holding one") from None
        return Verified(self.verify_token(body), signed=True)

    def verify_token(self, token: bytes) -> bytes:
        """Verify a compact HS256 JWT; return its payload JSON (claims checked, not yet schema-validated)."""
        first = token.find(b".")
        second = token.find(b".", first + 1)
        if (first <= 0 or second <= first + 1 or token.find(b".", second + 1) >= 0
                or b"+" in token or b"/" in token):  # the standard alphabet's two the decoder would accept
            raise VerificationError(MALFORMED, _NOT_COMPACT)
        header_segment, payload_segment = token[:first], token[first + 1:second]
        header = self._headers.get(header_segment)
        if header is None:
            try:
                header = _header_decoder.decode(_b64url(header_segment, "header"))
            except (msgspec.DecodeError, UnicodeDecodeError):  # incl. ValidationError: not an object, wrong types
                raise VerificationError(MALFORMED, "the token's header is not a JSON object") from None
            except RecursionError:  # msgspec's limit, about 1,000 levels
                raise VerificationError(MALFORMED, "the token's header is nested too deeply") from None
            if len(self._headers) < 16:  # one sender sends one header: decode it once, bounded
                self._headers[header_segment] = header
        if header.alg != _ALGORITHM:
            raise _refusal(token, ALGORITHM, f"algorithm {header.alg!r} refused: only HS256 is accepted")
        if header.crit is not None or header.b64 is not None:
            raise VerificationError(MALFORMED, "critical or b64 header extensions are not supported")
        signature = _b64url(token[second + 1:], "signature")
        signing_input = token[:second]
        for keyed in self._keys:
            mac = keyed.copy()
            mac.update(signing_input)
            if _compare_digest(signature, mac.digest()):
                break
        else:
            if not self._keys:  # unsigned JSON allowed, no secret: a token cannot verify
                raise _refusal(token, SIGNATURE, "a signed token, but no webhook secret is configured to verify it "
                                                 "(ONDUTY_WEBHOOK_SECRETS)")
            raise _refusal(token, SIGNATURE, "signature does not verify with any configured secret "
                                             "(wrong or unknown secret, or tampered token)")
        payload = _b64url(payload_segment, "payload")
        self._check_claims(payload)
        return payload

    def _check_claims(self, payload: bytes) -> None:
        # Decoding into a Struct of two fields skips every other member in C: about half the time of the three
        # substring scans (`"exp"`, `"nbf"`, a backslash for escaped names) that used to decide whether to decode.
        try:
            claims = _claims_decoder.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return  # authentic but not a JSON object (or too deep): schema validation reports it (422), keeps it
        exp = _numeric_date(claims.exp, "exp")
        nbf = _numeric_date(claims.nbf, "nbf")
        if exp is None and nbf is None:
            return
        now = self._clock()
        if exp is not None and exp <= now - self._leeway_s:
            raise VerificationError(EXPIRED, "token expired (exp)")
        if nbf is not None and nbf > now + self._leeway_s:
            raise VerificationError(NOT_YET_VALID, "token not yet valid (nbf)")
