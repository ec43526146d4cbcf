"""main.cf reading and $name expansion (the part postmap and postalias need)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmaps import ConfigError, MapSyntaxError
from mailmaps.config import MainConfig, compat_level_below, read_main_cf


def test_read_and_expand(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text(
        "# comment\nmyhostname = mx.example.com\nx = $myhostname and ${mydomain}\n"
        "y = $(x)\n  continued\nz = ${undefined?set}${undefined:unset} $$literal\n"
        "x = last wins $myhostname\n"
    )
    config = MainConfig.load(str(tmp_path))
    assert config.get("mydomain") == "example.com"
    assert config.get("x") == "last wins mx.example.com"
    assert config.get("y") == "last wins mx.example.com  continued"
    assert config.get("z") == "unset $literal"


def test_smtputf8_follows_compatibility_level() -> None:
    assert MainConfig({}).get_bool("smtputf8_enable") is False
    assert MainConfig({"compatibility_level": "3.6"}).get_bool("smtputf8_enable") is True
    assert MainConfig({"compatibility_level": "1"}).get("smtputf8_enable") == "yes"


def test_compat_levels() -> None:
    assert compat_level_below("3.9", "3.10")
    assert not compat_level_below("3.10", "3.9")
    assert compat_level_below("0", "1")
    with pytest.raises(ConfigError):
        compat_level_below("2 # x", "1")


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("a = b\nnot a setting\n")
    with pytest.raises(MapSyntaxError, match=r"main\.cf, line 2: missing '=' after attribute name"):
        read_main_cf(tmp_path / "main.cf")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        MainConfig.load(str(tmp_path))


def test_bad_boolean() -> None:
    with pytest.raises(ConfigError, match="bad boolean"):
        MainConfig({"smtputf8_enable": "maybe"}).get_bool("smtputf8_enable")


def test_settings_reads_parameter_fields_by_type() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Settings:
        myorigin: str = "unset"
        append_dot_mydomain: bool = True
        virtual_alias_expansion_limit: int = 0
        canonical_classes: frozenset[str] = frozenset()
        not_a_parameter: str = "kept"

    config = MainConfig(
        {
            "compatibility_level": "3.6",
            "mydomain": "example.org",
            "myorigin": "$mydomain",
            "canonical_classes": "Envelope_Sender, header_sender",
        }
    )
    got = config.settings(Settings, virtual_alias_expansion_limit=7)
    assert got == Settings(
        myorigin="example.org",
        append_dot_mydomain=False,  # Postfix's default from compatibility level 1 on
        virtual_alias_expansion_limit=7,
        canonical_classes=frozenset({"envelope_sender", "header_sender"}),
        not_a_parameter="kept",
    )


def test_settings_rejects_a_field_type_without_getter() -> None:
    from dataclasses import dataclass

    @dataclass
    class Settings:
        relayhost: list[str]

    with pytest.raises(TypeError, match=r"Settings\.relayhost"):
        MainConfig().settings(Settings)
