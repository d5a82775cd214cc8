"""The test vector in docs/backup-format.md, reproduced and read by the independent Python
implementation (tests/bcf_reference.py); tests/unit/test_bcf.c asserts the same bytes from C."""
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
bcf = pytest.importorskip("bcf_reference")

KEY = bytes(range(32))
SALT = bytes(0xA0 + i for i in range(32))
PLAIN = b"The quick brown fox jumps over the lazy dog"


def doc_vector():
    text = (ROOT / "docs" / "backup-format.md").read_text()
    block = text.split("## Test vector", 1)[1].split("The file, 215 bytes", 1)[1]
    block = block.split("```", 2)[1]
    return bytes.fromhex("".join(re.findall(r"\b[0-9a-f]{8,}\b", block)))


def test_vector_matches_document():
    vec = doc_vector()
    assert len(vec) == 215
    assert bcf.write(KEY, PLAIN, SALT, 1700000000, codec=0, chunk_size=16) == vec
    hdr, payload = bcf.read(KEY, vec)
    assert payload == PLAIN
    assert hdr["key_id"] == "e6f89a6762df671a85ccc5e679fbeb91"


def test_reference_reader_rejects_damage():
    vec = doc_vector()
    for off in range(0, len(vec), 5):
        bad = bytearray(vec)
        bad[off] ^= 0x04
        with pytest.raises(bcf.BcfError):
            bcf.read(KEY, bytes(bad))
    with pytest.raises(bcf.BcfError, match="truncated"):
        bcf.read(KEY, vec[:-36])
    with pytest.raises(bcf.BcfError, match="after final"):
        bcf.read(KEY, vec + b"\0")
    with pytest.raises(bcf.BcfError, match="key id"):
        bcf.read(bytes(32), vec)
