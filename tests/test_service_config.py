"""The service's options: each limit's default defined once (ServiceConfig), the README's
table of them in step with it, values checked, and where the token comes from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moodscope.errors import ConfigError
from moodscope.service.config import DEFAULTS, ServiceConfig, resolve_token

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_LIMITS = {"token", "allowed_hosts", "use_cache", "upload_dir", "access_log", "workers"}


def _readme_limits() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### The service\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `--([a-z-]+)` \| ([^|]*) \|", section, flags=re.M)
    return {option.replace("-", "_"): default for option, default in rows}


def test_readme_lists_every_service_limit_with_its_default():
    rows = _readme_limits()
    limits = ServiceConfig.options() - NOT_LIMITS
    assert limits <= set(rows), f"missing from the README: {sorted(limits - set(rows))}"
    for name in limits:
        number = re.match(r"[\d.]+", rows[name]).group(0)
        assert float(number) == getattr(DEFAULTS, name), (name, rows[name])


def test_readme_states_what_the_connection_cap_keeps_free():
    from moodscope.service.connections import RESERVED_FILES

    text = README.read_text(encoding="utf-8")
    section = text.split("### The service\n", 1)[1].split("\n## ", 1)[0]
    assert f"less `--max-uploads` and {RESERVED_FILES} for the server itself" in section


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers must be >= 1, got 0"),
        ({"max_uploads": 0}, "max_uploads must be >= 1, got 0"),
        ({"queue": -1}, "queue must be >= 0, got -1"),
        ({"request_timeout": 0}, "request timeout must be > 0 s, got 0"),
        ({"max_duration": -5}, "max duration must be > 0 s, got -5"),
        ({"upload_rate_window": 0}, "upload rate window must be > 0 s, got 0"),
        ({"min_upload_rate": -1}, "min upload rate must be >= 0 bytes/s, got -1"),
        ({"retry_after_max": 0}, "retry-after cap must be >= 1 s, got 0"),
        ({"header_timeout": 0}, "header timeout must be > 0 s, got 0"),
        ({"idle_timeout": -1}, "idle timeout must be > 0 s, got -1"),
        ({"max_connections": 0}, "max_connections must be >= 1, got 0"),
        ({"access_log": "xml"}, "access log must be one of text, json, off, got 'xml'"),
    ],
)
def test_bad_values_name_the_rule(options, message):
    with pytest.raises(ConfigError) as info:
        ServiceConfig(**options)
    assert str(info.value) == message


def test_token_from_argument_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MOODSCOPE_TOKEN", raising=False)
    assert resolve_token() is None
    monkeypatch.setenv("MOODSCOPE_TOKEN", "from-env")
    assert resolve_token() == "from-env"
    secret = tmp_path / "token.txt"
    secret.write_text("from-file\n")
    assert resolve_token(token_file=secret) == "from-file"  # the file wins over the env
    assert resolve_token("given", token_file=secret) == "given"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match=r"empty\.txt: the token file is empty"):
        resolve_token(token_file=empty)
    with pytest.raises(ConfigError, match=r"missing\.txt: cannot read the token file"):
        resolve_token(token_file=tmp_path / "missing.txt")
