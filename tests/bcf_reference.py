"""Independent reference implementation of the backup container format (docs/backup-format.md),
written from the document, not from lib/bcf.c: a reader and a writer, used to check the document's
test vector. Needs python3-cryptography (AES-GCM only; HKDF and HMAC are done here by hand)."""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"DRSUPBK1"
HEADER_LEN = 112
FINAL = 0x80000000


class BcfError(Exception):
    pass


def hkdf_sha256(ikm, salt, info, length=32):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def key_id(key):
    return hashlib.sha256(b"drsupervisor-bcf-v1 key-id" + key).digest()[:16]


def keys(key, salt):
    return (hkdf_sha256(key, salt, b"drsupervisor-bcf-v1 data-key"),
            hkdf_sha256(key, salt, b"drsupervisor-bcf-v1 header-key"))


def _nonce_aad(h, i, final):
    return b"\0\0\0\0" + struct.pack(">Q", i), h + struct.pack(">QB", i, 1 if final else 0)


def write(key, payload, salt, created_at, codec=0, chunk_size=1 << 20):
    k_data, k_hdr = keys(key, salt)
    hdr = MAGIC + struct.pack(">HHBBHII", 1, HEADER_LEN, 1, codec, 0, chunk_size, 0)
    hdr += struct.pack(">q", created_at) + key_id(key) + salt
    hdr += hmac.new(k_hdr, hdr, hashlib.sha256).digest()
    h = hashlib.sha256(hdr).digest()
    pieces = [payload[i:i + chunk_size] for i in range(0, len(payload), chunk_size)] or [b""]
    out = hdr
    for i, p in enumerate(pieces):
        final = i == len(pieces) - 1
        nonce, aad = _nonce_aad(h, i, final)
        out += struct.pack(">I", len(p) | (FINAL if final else 0)) + AESGCM(k_data).encrypt(nonce, p, aad)
    return out


def read(key, data):
    """Returns (header dict, payload) or raises BcfError."""
    if data[:8] != MAGIC[:len(data[:8])]:
        raise BcfError("bad magic")
    if len(data) < HEADER_LEN:
        raise BcfError("truncated in header")
    hdr = data[:HEADER_LEN]
    version, hlen, suite, codec, flags, chunk_size, reserved = struct.unpack(">HHBBHII", hdr[8:24])
    (created_at,) = struct.unpack(">q", hdr[24:32])
    kid, salt = hdr[32:48], hdr[48:80]
    if (version, hlen, suite) != (1, HEADER_LEN, 1):
        raise BcfError("unsupported header")
    if kid != key_id(key):
        raise BcfError("key id mismatch")
    k_data, k_hdr = keys(key, salt)
    if not hmac.compare_digest(hmac.new(k_hdr, hdr[:80], hashlib.sha256).digest(), hdr[80:]):
        raise BcfError("header authentication failed")
    if flags or reserved or codec > 2 or not 1 <= chunk_size <= 64 << 20:
        raise BcfError("bad header")
    h = hashlib.sha256(hdr).digest()
    pos, i, out = HEADER_LEN, 0, b""
    while True:
        if pos + 4 > len(data):
            raise BcfError("truncated")
        (word,) = struct.unpack(">I", data[pos:pos + 4])
        final, length = bool(word & FINAL), word & ~FINAL
        if length > chunk_size or (not final and length != chunk_size):
            raise BcfError(f"chunk {i}: framing")
        body = data[pos + 4:pos + 4 + length + 16]
        if len(body) != length + 16:
            raise BcfError("truncated")
        nonce, aad = _nonce_aad(h, i, final)
        try:
            out += AESGCM(k_data).decrypt(nonce, body, aad)
        except Exception as e:
            raise BcfError(f"chunk {i}: authentication failed") from e
        pos += 4 + length + 16
        i += 1
        if final:
            break
    if pos != len(data):
        raise BcfError("data after final chunk")
    return {"codec": codec, "chunk_size": chunk_size, "created_at": created_at, "key_id": kid.hex()}, out
