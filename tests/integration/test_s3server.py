"""
The strict S3 test server (tests/integration/s3server.py) checked against an independent signer,
botocore (python3-botocore from Debian): what botocore signs is accepted, and every way of getting
it wrong is refused as S3 refuses it. Later tests trust this server to judge drsupervisor's own
uploads.
"""
import hashlib
import http.client
import socket
import urllib.request

import botocore.session
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError, ConnectionClosedError

from s3server import S3Server


@pytest.fixture
def s3():
    s = S3Server().start()
    yield s
    s.stop()


def client(s3, secret=None, addressing="path", retries=0):
    sess = botocore.session.get_session()
    return sess.create_client("s3", region_name="us-east-1", endpoint_url=s3.url(), aws_access_key_id="AKIDTEST",
                              aws_secret_access_key=secret or s3.keys["AKIDTEST"],
                              config=Config(s3={"addressing_style": addressing}, signature_version="s3v4",
                                            retries={"total_max_attempts": retries + 1, "mode": "standard"},
                                            connect_timeout=2, read_timeout=2))


def code(e):
    return e.response["Error"]["Code"]


def test_botocore_requests_are_accepted(s3):
    c = client(s3)
    c.put_object(Bucket="drsup", Key="a/one b.txt", Body=b"hello")
    assert c.get_object(Bucket="drsup", Key="a/one b.txt")["Body"].read() == b"hello"
    assert c.head_object(Bucket="drsup", Key="a/one b.txt")["ETag"] == '"%s"' % hashlib.md5(b"hello").hexdigest()
    c.put_object(Bucket="drsup", Key="b", Body=b"x" * 10)
    keys = [o["Key"] for o in c.list_objects_v2(Bucket="drsup", Prefix="a/")["Contents"]]
    assert keys == ["a/one b.txt"]
    # multipart: two parts, S3's ETag for the whole
    up = c.create_multipart_upload(Bucket="drsup", Key="big")["UploadId"]
    p1, p2 = b"1" * (5 << 20), b"2" * 1000
    e1 = c.upload_part(Bucket="drsup", Key="big", UploadId=up, PartNumber=1, Body=p1)["ETag"]
    e2 = c.upload_part(Bucket="drsup", Key="big", UploadId=up, PartNumber=2, Body=p2)["ETag"]
    r = c.complete_multipart_upload(Bucket="drsup", Key="big", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    want = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest() + "-2"
    assert r["ETag"] == '"%s"' % want
    assert s3.objects("drsup")["big"][0] == p1 + p2
    c.delete_object(Bucket="drsup", Key="b")
    assert "b" not in s3.objects("drsup")
    # virtual-host style: the bucket in the Host header (signed so by botocore, sent to 127.0.0.1)
    creds = Credentials("AKIDTEST", s3.keys["AKIDTEST"])
    req = AWSRequest(method="GET", url="http://drsup.localhost:%d/a/one%%20b.txt" % s3.port)
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=5)
    conn.request("GET", "/a/one%20b.txt", headers=dict(req.headers.items(), Host="drsup.localhost:%d" % s3.port))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"hello"


def test_what_s3_refuses_is_refused(s3):
    bad = client(s3, secret="wrong")
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket="drsup", Key="k", Body=b"x")
    assert code(e.value) == "SignatureDoesNotMatch" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    c = client(s3)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="drsup", Key="missing")
    assert code(e.value) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="other", Key="k")
    assert code(e.value) == "NoSuchBucket"

    # a body that is not the one signed: signed for "good", "evil" sent
    creds = Credentials("AKIDTEST", s3.keys["AKIDTEST"])
    req = AWSRequest(method="PUT", url=s3.url() + "/drsup/k", data=b"good")
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    r = urllib.request.Request(s3.url() + "/drsup/k", data=b"evil", method="PUT", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r, timeout=5)
    assert e.value.code == 400 and b"XAmzContentSHA256Mismatch" in e.value.read()
    # the same request as signed is accepted
    r = urllib.request.Request(s3.url() + "/drsup/k", data=b"good", method="PUT", headers=headers)
    assert urllib.request.urlopen(r, timeout=5).status == 200

    # a header changed after signing
    headers2 = dict(headers, **{"X-Amz-Date": headers["X-Amz-Date"][:-3] + "00Z"})
    r = urllib.request.Request(s3.url() + "/drsup/k", data=b"good", method="PUT", headers=headers2)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r, timeout=5)
    assert e.value.code == 403 and b"SignatureDoesNotMatch" in e.value.read()

    # the server's clock an hour away
    s3.clock_skew_s = 3600
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="drsup", Key="k2", Body=b"x")
    assert code(e.value) == "RequestTimeTooSkewed"


def test_fault_modes(s3):
    c = client(s3)
    s3.fault("slowdown", 1)
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="drsup", Key="k", Body=b"x")
    assert code(e.value) == "SlowDown" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    s3.fault("error", 1)
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="drsup", Key="k", Body=b"x")
    assert code(e.value) == "InternalError"
    s3.fault("reset", 1)
    with pytest.raises((ConnectionClosedError, EndpointConnectionError, socket.error, Exception)):
        c.put_object(Bucket="drsup", Key="k", Body=b"x")
    # with retries, botocore gets through a SlowDown as S3's clients do
    r = client(s3, retries=2)
    s3.fault("slowdown", 1)
    r.put_object(Bucket="drsup", Key="k", Body=b"after")
    assert s3.objects("drsup")["k"][0] == b"after"
