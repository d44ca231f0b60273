"""NRI wire facts on bytes: mux framing, connection ids, message field numbers, event bits."""

from __future__ import annotations

import pytest

from pycrio.protofile import ProtoSyntaxError, parse
from pycrio_nri import api, mux


def test_mux_frame_is_conn_id_then_length_big_endian() -> None:
    assert mux.encode(2, b"abc") == b"\x00\x00\x00\x02\x00\x00\x00\x03abc"
    assert (mux.PLUGIN_SERVICE_CONN, mux.RUNTIME_SERVICE_CONN) == (1, 2)
    with pytest.raises(ValueError):
        mux.encode(0, b"x")


def test_demux_splits_joined_and_partial_frames() -> None:
    data = mux.encode(1, b"one") + mux.encode(2, b"") + mux.encode(1, b"two")
    d = mux.Demux()
    out = []
    for i in range(0, len(data), 5):
        out += d.feed(data[i : i + 5])
    assert out == [(1, b"one"), (2, b""), (1, b"two")]


def test_demux_refuses_absurd_lengths() -> None:
    with pytest.raises(mux.MuxError):
        mux.Demux().feed(mux.HEADER.pack(1, mux.MAX_PAYLOAD + 1))


def test_long_payloads_are_split_into_legal_frames() -> None:
    payload = b"x" * (mux.MAX_PAYLOAD + 10)
    frames = mux.Demux().feed(mux.encode(1, payload))
    assert [len(p) for _, p in frames] == [mux.MAX_PAYLOAD, 10]


def test_messages_carry_nri_field_numbers() -> None:
    # RegisterPluginRequest: plugin_name = 1, plugin_idx = 2, NRI_version = 3
    req = api.RegisterPluginRequest(plugin_name="a", plugin_idx="10", NRI_version="v")
    assert req.SerializeToString() == b"\x0a\x01a\x12\x0210\x1a\x01v"
    # ConfigureResponse: events = 2, request_timeout = 3
    assert (
        api.ConfigureResponse(events=5, request_timeout=7).SerializeToString()
        == b"\x10\x05\x18\x07"
    )
    # Container.exit_code = 17 (varint, tag 0x88 0x01), ContainerAdjustment.args = 9
    assert api.Container(exit_code=3).SerializeToString() == b"\x88\x01\x03"
    assert api.ContainerAdjustment(args=["x"]).SerializeToString() == b"\x4a\x01x"
    # map<string,string> labels = 5 on PodSandbox
    assert api.PodSandbox(labels={"k": "v"}).SerializeToString() == b"\x2a\x06\x0a\x01k\x12\x01v"
    assert api.FILE.package == "nri.pkg.api.v1alpha1"
    assert api.PLUGIN_SERVICE == "nri.pkg.api.v1alpha1.Plugin"


def test_event_mask_bits_follow_nri() -> None:
    assert api.event_bit(api.Event.Value("RUN_POD_SANDBOX")) == 1
    assert api.event_bit(api.Event.Value("CREATE_CONTAINER")) == 1 << 3
    assert api.VALID_EVENTS == (1 << 14) - 1


def test_every_rpc_of_both_services_is_known() -> None:
    plugin = api.METHODS[api.PLUGIN_SERVICE]
    assert {"Configure", "Synchronize", "Shutdown", "CreateContainer", "StateChange"} <= set(plugin)
    assert set(api.METHODS[api.RUNTIME_SERVICE]) == {"RegisterPlugin", "UpdateContainers"}


def test_proto_parser_rejects_unknown_types_and_syntax() -> None:
    with pytest.raises(ProtoSyntaxError, match="unknown type"):
        parse('syntax = "proto3"; package p; message A { B b = 1; }', "x.proto")
    with pytest.raises(ProtoSyntaxError):
        parse('syntax = "proto2";', "x.proto")
    with pytest.raises(ProtoSyntaxError):
        parse("extend Foo {}", "x.proto")
