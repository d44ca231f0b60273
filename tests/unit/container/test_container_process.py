"""args merge like the kubelet expects, env override by key, cwd."""

from __future__ import annotations

import pytest

from pycrio.container import process
from pycrio.errors import InvalidArgument

EP, CMD = ["/entry"], ["cmd-arg"]


@pytest.mark.parametrize(
    ("command", "args", "entrypoint", "cmd", "expected"),
    [
        ([], [], EP, CMD, ["/entry", "cmd-arg"]),  # image decides
        (["/bin/x"], [], EP, CMD, ["/bin/x"]),  # command drops Entrypoint AND Cmd
        (["/bin/x"], ["a"], EP, CMD, ["/bin/x", "a"]),
        ([], ["a", "b"], EP, CMD, ["/entry", "a", "b"]),  # args replace Cmd
        ([], ["a"], [], CMD, ["a"]),  # no Entrypoint: args are the command
        ([], [], [], ["sh", "-c", "x"], ["sh", "-c", "x"]),
    ],
)
def test_merge_args(
    command: list[str], args: list[str], entrypoint: list[str], cmd: list[str], expected: list[str]
) -> None:
    assert process.merge_args(command, args, entrypoint, cmd) == expected


def test_merge_args_nothing_to_run() -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        process.merge_args([], [], [], [])
    with pytest.raises(InvalidArgument, match=r"args\[1\]"):
        process.merge_args(["a", "b\x00"], [], [], [])


def test_merge_env_override_and_default_path() -> None:
    env = process.merge_env(["A=1", "B=2", "EMPTY"], [("B", "3"), ("C", "4")], [("A", "0")])
    assert env == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "A=1",
        "B=3",
        "EMPTY=",
        "C=4",
    ]
    assert process.merge_env(["PATH=/x"], []) == ["PATH=/x"]


@pytest.mark.parametrize(
    ("image_env", "cri_env", "message"),
    [
        (["=x"], [], r"image env\[0\]"),
        ([], [("", "v")], r"envs\[0\]"),
        ([], [("A=B", "v")], r"envs\[0\]"),
    ],
)
def test_merge_env_invalid(
    image_env: list[str], cri_env: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        process.merge_env(image_env, cri_env)


@pytest.mark.parametrize(
    ("cri", "image", "expected"),
    [("/work/", "/img", "/work"), ("", "/img", "/img"), ("", "rel", "/rel"), ("", "", "/")],
)
def test_working_dir(cri: str, image: str, expected: str) -> None:
    assert process.working_dir(cri, image) == expected


def test_working_dir_relative_cri_refused() -> None:
    with pytest.raises(InvalidArgument, match="working_dir: 'rel'"):
        process.working_dir("rel", "")
