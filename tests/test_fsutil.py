"""urlwarden.core.fsutil: atomic writes and the removal of temporary files a killed writer left."""

from __future__ import annotations

import os

import pytest

from urlwarden.core import fsutil

NOW = 1_800_000_000.0
OLD = NOW - fsutil.STALE_TEMP_AGE - 1


@pytest.mark.parametrize(
    ("name", "mtime", "removed"),
    [
        (".urlwarden-a1b2c3d4.tmp", OLD, True),  # write_atomically's temp
        (".urlwarden-a_b2c3d4.sha256", OLD, True),  # a feed save's temp, full size
        (".urlwarden-a1b2c3d4.csv", OLD, True),
        (".urlwarden-a1b2c3d4.tmp", NOW - 5, False),  # recent: another process may be writing it
        (".urlwarden-a1b2c3d4.json", OLD, False),  # a suffix we never give a temp file
        (".urlwarden-A1B2C3D4.tmp", OLD, False),  # mkstemp never uses upper case
        (".urlwarden-a1b2c3.tmp", OLD, False),
        (".urlwarden-lock", OLD, False),
        ("iwf.sha256", OLD, False),
        ("x.urlwarden-a1b2c3d4.tmp", OLD, False),
    ],
)
def test_only_our_old_temporaries_go(tmp_path, name, mtime, removed):
    path = tmp_path / name
    path.write_bytes(b"x" * 1000)
    os.utime(path, (mtime, mtime))
    assert fsutil.remove_stale_temporaries(str(tmp_path), now=NOW) == int(removed)
    assert path.exists() is not removed


def test_directories_and_symlinks_with_our_names_are_left_alone(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / ".urlwarden-aaaaaaaa.tmp").mkdir()
    (tmp_path / ".urlwarden-bbbbbbbb.tmp").symlink_to(target)
    for path in tmp_path.iterdir():
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    assert fsutil.remove_stale_temporaries(str(tmp_path), now=NOW) == 0
    assert target.read_text() == "keep" and len(list(tmp_path.iterdir())) == 3


def test_a_missing_directory_is_no_error(tmp_path):
    assert fsutil.remove_stale_temporaries(str(tmp_path / "absent")) == 0


def test_write_atomically_leaves_no_temporary(tmp_path):
    fsutil.write_atomically(str(tmp_path / "out"), [b"a", b"b"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out").read_bytes() == b"ab"


def test_write_atomically_names_its_temporary_as_the_cleaner_expects(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", spy)
    fsutil.write_atomically(str(tmp_path / "out"), [b"x"])
    assert len(seen) == 1 and fsutil._OUR_TEMP_NAME.match(seen[0])


@pytest.mark.parametrize("content, limit, what, expected", [
    (b"key: value\n", 100, "", None),
    (b"x" * 101, 100, "", "{path}: larger than 100 bytes"),
    (b"x" * 101, 100, "the template", "{path}: the template larger than 100 bytes"),
    (b"caf\xe9\n", 100, "", "{path}: not UTF-8 text (byte 3)"),
    (b"caf\xe9\n", 100, "the template", "{path}: the template is not UTF-8 text (byte 3)"),
    (None, 100, "the template", "{path}: cannot read the template: No such file or directory"),
])
def test_read_small_text_names_the_file_in_one_line(tmp_path, content, limit, what, expected):
    from urlwarden.core.fsutil import read_small_text
    from urlwarden.errors import ConfigError

    path = tmp_path / "f.txt"
    if content is not None:
        path.write_bytes(content)
    if expected is None:
        assert read_small_text(path, limit, what, ConfigError) == content.decode()
        return
    with pytest.raises(ConfigError) as info:
        read_small_text(path, limit, what, ConfigError)
    assert str(info.value) == expected.format(path=path)
