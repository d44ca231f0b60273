from __future__ import annotations

from cri_api.v1 import api_pb2

from pycrio.logs import redact


def test_redact_removes_registry_credentials_and_keeps_the_rest() -> None:
    req = api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image="registry.example/app:1"),
        auth=api_pb2.AuthConfig(
            username="alice",
            password="s3cr3t",
            auth="YWxpY2U6czNjcjN0",
            identity_token="idtok",
            registry_token="regtok",
        ),
        sandbox_config=api_pb2.PodSandboxConfig(labels={"app": "x"}),
    )
    text = redact(req)
    for secret in ("alice", "s3cr3t", "YWxpY2U6czNjcjN0", "idtok", "regtok"):
        assert secret not in text
    assert "registry.example/app:1" in text
    assert 'key: "app"' in text
    # the request itself is untouched
    assert req.auth.password == "s3cr3t"
