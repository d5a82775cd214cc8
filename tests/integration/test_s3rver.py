"""
The second S3 test server itself (issue 16): @20minutes/s3rver, run by `make s3rver-check`
(DRSUP_S3_BACKEND=s3rver), really checks signatures, so the off-site tests run against it are not
vacuous: a request signed with a wrong secret is 403 SignatureDoesNotMatch and stores nothing, the
same request with the right secret is stored. It does not check the body against
x-amz-content-sha256 (shown here, so a fixed s3rver is noticed): only the strict server does that.
Skipped unless the s3rver backend is chosen.
"""
import pytest

from s3rver import S3rver, s3_backend

pytestmark = pytest.mark.skipif(s3_backend() != "s3rver", reason="DRSUP_S3_BACKEND=s3rver (make s3rver-check)")

AK, SK = "AKIDTEST", "test-secret/with+chars"


@pytest.fixture(scope="module")
def s3():
    s = S3rver(AK, SK).start()
    yield s
    s.stop()


def test_a_wrong_secret_is_refused(s3):
    st, _, body = s3.request("PUT", "/drsup/sig/wrong", body=b"payload", secret="not-the-secret")
    assert st == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body, (st, body)
    st, _, body = s3.request("GET", "/drsup/sig/wrong")
    assert st == 404 and b"NoSuchKey" in body, (st, body)
    st, _, body = s3.request("PUT", "/drsup/sig/right", body=b"payload")
    assert st == 200, (st, body)
    assert s3.objects("drsup")["sig/right"][0] == b"payload"


def test_an_unknown_access_key_is_refused(s3):
    s = S3rver("AKIDOTHER", SK)  # a client of the same server with a key it does not know
    s.port = s3.port
    st, _, body = s.request("GET", "/drsup", [("list-type", "2")])
    assert st == 403 and b"InvalidAccessKeyId" in body, (st, body)


def test_the_body_is_not_checked_against_its_signed_hash(s3):
    # signed for one body, sent with another: S3 says 400 XAmzContentSHA256Mismatch, s3rver stores it
    st, _, body = s3.request("PUT", "/drsup/sig/mismatch", body=b"the body sent", signed_body=b"another body")
    assert st == 200, (st, body)
    assert s3.objects("drsup")["sig/mismatch"][0] == b"the body sent"
