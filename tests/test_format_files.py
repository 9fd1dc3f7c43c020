"""User format files are untrusted input: bounded YAML, typed fields, errors that name the file and field."""

from __future__ import annotations

import pytest

from instructgen.errors import ConfigError
from instructgen.formats import load_format_file


def test_alias_bomb_in_a_format_file_is_refused(tmp_path):
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefg", "bcdefgh"):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*levels, "name: x", 'user: "{content}"']) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: cannot parse format file: aliases expand to more than"):
        load_format_file(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("user: [1, 2]", "field 'user' must be str, not list [1, 2]"),
        ("bos: 'yes'", "field 'bos' must be bool | None, not str 'yes'"),
        ("idx_start: true", "field 'idx_start' must be int, not bool True"),
        ("default_system_names: [1]", "field 'default_system_names' must be a list of strings, not list [1]"),
    ],
)
def test_wrongly_typed_fields_are_named(tmp_path, line, message):
    path = tmp_path / "fmt.yaml"
    path.write_text(f"name: mine\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_format_file(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_well_typed_file_loads(tmp_path):
    path = tmp_path / "fmt.yaml"
    path.write_text('name: mine\nbase: chatml\nbos: false\nidx_start: 0\nuser: "<u>{content}</u>"\n', encoding="utf-8")
    fmt = load_format_file(path)
    assert (fmt.name, fmt.bos, fmt.idx_start, fmt.user) == ("mine", False, 0, "<u>{content}</u>")
