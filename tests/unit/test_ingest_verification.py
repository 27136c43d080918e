"""The fast verifier accepts exactly the tokens PyJWT's ``jwt.decode(..., algorithms=["HS256"])`` accepts.

The service parses the compact token itself (split at its dots, segments checked by a strict base64 decoder,
instead of PyJWT 2.15's per-character check) and lets PyJWT's ``HMACAlgorithm`` check the signature; this
differential test is what keeps that honest.
Deliberate differences, not exercised here: an authentic payload that is not a JSON object is kept (422)
rather than refused; ``iat``, ``aud`` and the types of ``sub`` and ``jti`` are not checked; and ``crit``/``b64``
headers are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time

import jwt
import pytest

from ingest.errors import ConfigurationError, VerificationError
from ingest.verification import TokenVerifier, keyed_hmac
from tests.samples import SPEC_SAMPLE, payload

SECRETS = ("first-secret-0123456789abcdef0123456789", "second-secret-0123456789abcdef012345678")
OTHER = "unknown-secret-0123456789abcdef01234567"
LEEWAY_S = 30


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: dict, claims: dict | str, secret: str) -> str:
    """A token signed by hand; ``claims`` as a dict, or as the exact JSON text of the payload."""
    text = claims if isinstance(claims, str) else json.dumps(claims)
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(text.encode())}"
    return f"{signing_input}.{b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())}"


def pyjwt_accepts(token: str) -> bool:
    for secret in SECRETS:
        try:
            jwt.decode(token, secret, algorithms=["HS256"], leeway=LEEWAY_S, options={"verify_iat": False})
            return True
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            return False
    return False


def we_accept(token: str) -> bool:
    try:
        TokenVerifier(SECRETS, leeway_s=LEEWAY_S).verify_token(token.encode())
        return True
    except VerificationError:
        return False


def corpus() -> list[str]:
    now = int(time.time())
    valid = jwt.encode(SPEC_SAMPLE, SECRETS[0], algorithm="HS256")
    tokens = [
        valid,
        jwt.encode(SPEC_SAMPLE, SECRETS[1], algorithm="HS256"),
        jwt.encode(SPEC_SAMPLE, OTHER, algorithm="HS256"),
        jwt.encode(SPEC_SAMPLE, SECRETS[0], algorithm="HS384"),
        jwt.encode(SPEC_SAMPLE, None, algorithm="none"),
        hs256({"alg": "RS256"}, SPEC_SAMPLE, SECRETS[0]),
        hs256({"alg": "none"}, SPEC_SAMPLE, SECRETS[0]),
        hs256({"alg": "hs256"}, SPEC_SAMPLE, SECRETS[0]),
        hs256({"typ": "JWT"}, SPEC_SAMPLE, SECRETS[0]),
        hs256({"alg": "HS256", "kid": "rotation-2"}, SPEC_SAMPLE, SECRETS[1]),
        jwt.encode(payload(exp=now + 100), SECRETS[0], algorithm="HS256"),
        jwt.encode(payload(exp=now - 10), SECRETS[0], algorithm="HS256"),
        jwt.encode(payload(exp=now - 3600), SECRETS[0], algorithm="HS256"),
        jwt.encode(payload(exp=now - 3600.5), SECRETS[0], algorithm="HS256"),
        jwt.encode(payload(nbf=now + 10), SECRETS[0], algorithm="HS256"),
        jwt.encode(payload(nbf=now + 3600), SECRETS[0], algorithm="HS256"),
        jwt.encode(payload(exp=None), SECRETS[0], algorithm="HS256"),
        jwt.encode(payload(exp=[1]), SECRETS[0], algorithm="HS256"),
        # claim names spelt with escapes are the same claims
        hs256({"alg": "HS256"}, '{"\\u0065xp": %d, "date": 1}' % (now - 3600), SECRETS[0]),
        hs256({"alg": "HS256"}, '{"n\\u0062f": %d, "date": 1}' % (now + 3600), SECRETS[0]),
        hs256({"alg": "HS256"}, '{"\\u0065xp": %d, "date": 1}' % (now + 3600), SECRETS[0]),
        hs256({"alg": "HS256"}, '{"exp" : %d}' % (now - 3600), SECRETS[0]),
        valid + "=", valid.replace(".", "=.", 1), valid + "==", valid + "===",
        valid.rsplit(".", 1)[0] + ".", valid.rsplit(".", 1)[0], "..", "a.b.c", valid + ".x",
        " " + valid, valid.replace("e", "é", 1),
    ]
    rng = random.Random(20260125)
    alphabet = "AZaz09-_=.!+/ \x00"
    for _ in range(400):  # single-character mutations of a valid token, everywhere in it
        i = rng.randrange(len(valid))
        tokens.append(valid[:i] + rng.choice(alphabet) + valid[i + 1:])
    return tokens


@pytest.mark.parametrize("token", corpus())
def test_accepts_exactly_what_pyjwt_accepts(token):
    assert we_accept(token) == pyjwt_accepts(token)


def test_a_pem_key_is_refused_as_an_hmac_secret():
    with pytest.raises(ConfigurationError, match="PEM"):
        TokenVerifier(["-----BEGIN PUBLIC KEY-----\nMIIB...\n-----END PUBLIC KEY-----"])


def test_a_keyed_hmac_copy_gives_the_digest_of_key_and_message_and_stays_reusable():
    keyed = keyed_hmac(SECRETS[0].encode())
    for message in (b"", b"a.b", b"x" * 1000):
        mac = keyed.copy()
        mac.update(message)
        assert mac.digest() == hmac.new(SECRETS[0].encode(), message, hashlib.sha256).digest()
    assert keyed.copy().digest() == hmac.new(SECRETS[0].encode(), b"", hashlib.sha256).digest()  # never updated


CANONICAL_LAST = "AEIMQUYcgkosw048"
"""The characters that may end a 43-character base64url segment (its last 2 bits unused, so zero)."""


@pytest.mark.parametrize(("change", "reason"), [
    (lambda sig: sig + "=", None),  # padded: accepted, as PyJWT does
    (lambda sig: sig + "==", "malformed"),  # too much padding
    (lambda sig: sig[:-2], "malformed"),  # 41 characters: a last quantum of one character
    (lambda sig: sig[:-1] + "B", "malformed"),  # non-canonical last character
    (lambda sig: sig[:-1] + next(c for c in CANONICAL_LAST if c != sig[-1]), "signature"),  # canonical, other digest
    (lambda sig: ("B" if sig[0] != "B" else "C") + sig[1:], "signature"),  # well formed, another digest
])
def test_the_signature_segment_is_refused_for_the_same_reason_as_when_it_was_decoded_first(change, reason):
    token = hs256({"alg": "HS256", "typ": "JWT"}, payload(), SECRETS[0])
    head, sig = token.rsplit(".", 1)
    changed = f"{head}.{change(sig)}"
    verifier = TokenVerifier(SECRETS, leeway_s=LEEWAY_S)
    if reason is None:
        assert verifier.verify_token(changed.encode()) and pyjwt_accepts(changed)
        return
    with pytest.raises(VerificationError) as refused:
        verifier.verify_token(changed.encode())
    assert refused.value.reason == reason
    assert not pyjwt_accepts(changed)


@pytest.mark.parametrize("stray", ["!", "+", "/", " ", "=", "\x00"])
@pytest.mark.parametrize("segment", [0, 1, 2])
def test_a_stray_character_anywhere_is_refused_as_malformed_not_for_its_signature(segment, stray):
    # the payload segment is decoded only after the signature verified: the refusal still names the shape
    parts = hs256({"alg": "HS256", "typ": "JWT"}, payload(), SECRETS[0]).split(".")
    parts[segment] = parts[segment][:5] + stray + parts[segment][6:]
    with pytest.raises(VerificationError) as refused:
        TokenVerifier(SECRETS, leeway_s=LEEWAY_S).verify_token(".".join(parts).encode())
    assert refused.value.reason == "malformed"


def test_more_than_two_padding_characters_are_malformed_even_on_an_aligned_segment():
    head, body, sig = hs256({"alg": "HS256", "typ": "JWT"}, payload(), SECRETS[0]).split(".")
    body = body.rstrip("=") + "A" * (-len(body.rstrip("=")) % 4)  # now a multiple of 4 (and a bad signature)
    with pytest.raises(VerificationError) as refused:
        TokenVerifier(SECRETS, leeway_s=LEEWAY_S).verify_token(f"{head}.{body}====.{sig}".encode())
    assert refused.value.reason == "malformed"


@pytest.mark.parametrize("body, words", [
    (b"\xef\xbb\xbf" + jwt.encode(SPEC_SAMPLE, SECRETS[0], algorithm="HS256").encode(),
     "the token's header holds bytes outside base64url (anything before or after the token?)"),
    (jwt.encode(SPEC_SAMPLE, SECRETS[0], algorithm="HS256").encode() + b"\x00",
     "the token's signature holds bytes outside base64url"),
])
def test_stray_bytes_around_a_token_are_named_as_such(body, words):
    with pytest.raises(VerificationError) as refused:
        TokenVerifier(SECRETS).verify_body(body)
    assert refused.value.reason == "malformed" and words in refused.value.detail


def test_a_token_without_any_secret_configured_says_so():
    token = jwt.encode(SPEC_SAMPLE, SECRETS[0], algorithm="HS256").encode()
    with pytest.raises(VerificationError) as refused:
        TokenVerifier([], allow_unsigned=True).verify_body(token)
    assert refused.value.reason == "signature" and "no webhook secret is configured" in refused.value.detail
