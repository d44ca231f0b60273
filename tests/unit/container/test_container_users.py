"""uid, gid and groups from run_as_*, the image USER and /etc/passwd, /etc/group."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pycrio.container import users
from pycrio.errors import InvalidArgument

Factory = Callable[..., Any]


@pytest.fixture
def pg(rootfs: Path) -> tuple[list[users.PasswdEntry], list[users.GroupEntry]]:
    return users.read_passwd(str(rootfs)), users.read_group(str(rootfs))


def test_parse_passwd_and_group_skip_malformed_lines(pg: tuple[Any, Any]) -> None:
    P, G = pg
    assert [e.name for e in P] == ["root", "daemon", "alice", "bob"]
    assert P[2] == users.PasswdEntry("alice", 1000, 1000, "/home/alice")
    wheel = next(g for g in G if g.name == "wheel")
    assert wheel.members == ("alice", "bob")
    assert users.parse_passwd("x:x:notnum:0::/:/bin/sh\n") == []


@pytest.mark.parametrize(
    ("sc", "image_user", "uid", "gid", "gids"),
    [
        ({}, "", 0, 0, (0,)),  # nothing set: root
        ({}, "alice", 1000, 1000, (1000, 10, 29)),  # name: passwd + its groups (Merge)
        ({}, "1001", 1001, 1001, (1001, 10)),  # uid known in passwd: its gid
        ({}, "4242", 4242, 0, (0,)),  # unknown uid: gid 0
        ({}, "alice:wheel", 1000, 10, (10, 29)),  # name:group
        ({}, "1000:29", 1000, 29, (29, 10)),  # uid:gid
        ({"run_as_user": 1001}, "alice", 1001, 1001, (1001, 10)),  # run_as_user beats USER
        ({"run_as_user": 1000, "run_as_group": 5}, "", 1000, 5, (5, 10, 29)),
        ({"run_as_username": "bob"}, "", 1001, 1001, (1001, 10)),
        ({"run_as_user": 0, "supplemental_groups": [7, 8]}, "", 0, 0, (0, 7, 8)),
        (
            {"run_as_user": 1000, "supplemental_groups": [7], "supplemental_groups_policy": 1},
            "",
            1000,
            1000,
            (1000, 7),  # Strict: no groups from /etc/group
        ),
    ],
)
def test_resolve_user(
    sc: dict[str, Any],
    image_user: str,
    uid: int,
    gid: int,
    gids: tuple[int, ...],
    pg: tuple[Any, Any],
    config_factory: Factory,
) -> None:
    ctx = config_factory(**sc).linux.security_context
    resolved = users.resolve_user(ctx, image_user, *pg)
    assert (resolved.uid, resolved.gid, resolved.additional_gids) == (uid, gid, gids)


@pytest.mark.parametrize(
    ("sc", "image_user", "message"),
    [
        ({"run_as_username": "nobody"}, "", "run_as_username: user 'nobody' not found"),
        ({}, "carol", "user 'carol' not found"),
        ({}, "alice:nogroup", "group 'nogroup' not found"),
        ({}, ":10", "missing the user part"),
        ({"run_as_user": -1}, "", "run_as_user: -1 is not a valid id"),
        ({"run_as_user": 0, "run_as_group": -5}, "", "run_as_group: -5"),
        ({"run_as_group": 5}, "", "user group is specified without user or username"),
        ({"run_as_group": 5}, "alice", "user group is specified without user or username"),
        ({"supplemental_groups": [-2]}, "", "supplemental_groups: -2"),
        ({"supplemental_groups_policy": 7}, "", "supplemental_groups_policy"),
    ],
)
def test_resolve_user_errors(
    sc: dict[str, Any], image_user: str, message: str, pg: tuple[Any, Any], config_factory: Factory
) -> None:
    ctx = config_factory(**sc).linux.security_context
    with pytest.raises(InvalidArgument, match=message):
        users.resolve_user(ctx, image_user, *pg)


def test_home_from_passwd(pg: tuple[Any, Any], config_factory: Factory) -> None:
    ctx = config_factory(run_as_username="alice").linux.security_context
    assert users.resolve_user(ctx, "", *pg).home == "/home/alice"
    plain = config_factory().linux.security_context
    assert users.resolve_user(plain, "4242", *pg).home == "/"


def test_read_from_rootfs_and_missing_files(rootfs: Path, tmp_path: Path) -> None:
    assert [e.uid for e in users.read_passwd(str(rootfs))] == [0, 1, 1000, 1001]
    assert len(users.read_group(str(rootfs))) == 6
    empty = tmp_path / "empty"
    empty.mkdir()
    assert users.read_passwd(str(empty)) == []
    assert users.read_group(str(empty)) == []


def test_to_oci() -> None:
    assert users.ResolvedUser(5, 6, (6, 7), "/").to_oci() == {
        "uid": 5,
        "gid": 6,
        "additionalGids": [6, 7],
    }
