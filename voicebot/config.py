"""Settings: YAML files validated into typed dataclasses.

The embedded defaults (``voicebot/defaults.yaml``) are overlaid by an optional operator file
(``--config FILE`` or ``$VOICEBOT_CONFIG``). Every value remembers the file and line it came from,
so a validation error reads ``site.yaml:12: asterisk.ari_url: expected a string, got 5``.

Sections belong to the modules that use them: a module declares a dataclass and calls
``settings.section("speech.vad", VadConfig)``. The core (``Settings``) only knows the sections the
ARI application itself needs.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from voicebot.errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILE = PROJECT_ROOT / "asterisk" / "secrets.env"

T = TypeVar("T")


@dataclasses.dataclass
class Located:
    """Where a config value was written."""

    file: str
    line: int


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


def _construct(node: yaml.Node, file: str, path: str, where: dict[str, Located]) -> Any:
    where[path] = Located(file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("mapping keys must be plain words", file=file,
                                  line=key_node.start_mark.line + 1, key=path or None)
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if key in out:
                raise ConfigError("key appears twice", file=file,
                                  line=key_node.start_mark.line + 1, key=sub)
            out[key] = _construct(value_node, file, sub, where)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, file, f"{path}[{i}]", where) for i, v in enumerate(node.value)]
    # a scalar: the composer already resolved its tag (int, float, bool, str, null)
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def load_yaml(path: str | Path) -> tuple[Any, dict[str, Located]]:
    """Parse one YAML file; return the data and a map from dotted key path to its location."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=file) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"invalid YAML: {exc.problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    where: dict[str, Located] = {}
    if node is None:
        return {}, where
    return _construct(node, file, "", where), where


def _merge(base: dict, over: dict, base_where: dict, over_where: dict, path: str = "") -> None:
    for key, value in over.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, base_where, over_where, sub)
        else:
            base[key] = value
            for p in [p for p in base_where if p == sub or p.startswith(sub + ".") or p.startswith(sub + "[")]:
                del base_where[p]
            base_where.update({p: loc for p, loc in over_where.items()
                               if p == sub or p.startswith(sub + ".") or p.startswith(sub + "[")})


# ---------------------------------------------------------------------------------------------
# dataclass validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


class _Validator:
    def __init__(self, where: dict[str, Located]) -> None:
        self.where = where

    def error(self, path: str, problem: str) -> ConfigError:
        loc = self.where.get(path)
        # fall back to the nearest located parent
        probe = path
        while loc is None and probe:
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
            loc = self.where.get(probe)
        return ConfigError(problem, file=loc.file if loc else None,
                           line=loc.line if loc else None, key=path or None)

    def convert(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in (a for a in args if a is not type(None)):
                try:
                    return self.convert(arg, value, path)
                except ConfigError as exc:
                    errors.append(exc.problem)
            raise self.error(path, errors[0] if len(errors) == 1 else
                             f"expected one of {', '.join(_type_name(a) for a in args)}, got {value!r}")
        if origin is typing.Literal:
            if value not in args:
                raise self.error(path, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
            return value
        if origin is list:
            if not isinstance(value, list):
                raise self.error(path, f"expected a list, got {_describe(value)}")
            return [self.convert(args[0] if args else Any, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise self.error(path, f"expected a mapping, got {_describe(value)}")
            vt = args[1] if len(args) == 2 else Any
            return {str(k): self.convert(vt, v, f"{path}.{k}") for k, v in value.items()}
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, path)
        if tp is bool:
            if not isinstance(value, bool):
                raise self.error(path, f"expected true or false, got {_describe(value)}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(path, f"expected a whole number, got {_describe(value)}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.error(path, f"expected a number, got {_describe(value)}")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise self.error(path, f"expected text, got {_describe(value)}")
            return value
        if tp is Path:
            if not isinstance(value, str):
                raise self.error(path, f"expected a file path, got {_describe(value)}")
            return Path(value)
        raise TypeError(f"unsupported config type {tp!r} at {path}")

    def build(self, cls: type[T], data: Any, path: str) -> T:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(path, f"expected a mapping, got {_describe(data)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            sub = f"{path}.{unknown[0]}" if path else unknown[0]
            raise self.error(sub, f"unknown key (known keys: {', '.join(sorted(fields))})")
        kwargs = {}
        for name, field in fields.items():
            sub = f"{path}.{name}" if path else name
            if name in data:
                kwargs[name] = self.convert(hints[name], data[name], sub)
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise self.error(sub, "required key is missing")
        obj = cls(**kwargs)
        check = getattr(obj, "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as exc:
                # validate() may say "key: problem" to point at one field
                msg = str(exc)
                key, sep, rest = msg.partition(": ")
                if sep and key in fields:
                    raise self.error(f"{path}.{key}" if path else key, rest) from None
                raise self.error(path, msg) from None
        return obj


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


# ---------------------------------------------------------------------------------------------
# the core sections


@dataclasses.dataclass
class AsteriskConfig:
    ari_url: str = "http://127.0.0.1:8088"
    ari_user: str = "voicebot"
    ari_password: str = ""  # from $VOICEBOT_ARI_PASSWORD or asterisk/secrets.env
    app: str = "voicebot"
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_user: str = "voicebot"
    ami_secret: str = ""  # from $VOICEBOT_AMI_SECRET or asterisk/secrets.env
    reconnect_max_seconds: float = 5.0

    def validate(self) -> None:
        if not self.ari_url.startswith(("http://", "https://")):
            raise ValueError("ari_url: must start with http:// or https://")
        if not 0 < self.ami_port < 65536:
            raise ValueError("ami_port: must be a port number 1-65535")
        if self.reconnect_max_seconds <= 0:
            raise ValueError("reconnect_max_seconds: must be positive")


@dataclasses.dataclass
class MediaConfig:
    """The ExternalMedia RTP leg between Asterisk and the bot."""

    bind_host: str = "127.0.0.1"
    # ulaw, not slin16: see README "Design decisions" (Asterisk 22 drops our slin16 RTP towards the caller)
    format: typing.Literal["slin16", "ulaw"] = "ulaw"


@dataclasses.dataclass
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"  # /metrics (and staff pages): loopback unless ops open it on purpose
    admin_port: int = 8081         # 0: no admin listener
    admin_secure_cookies: bool = False  # staff-page cookies marked Secure: true when TLS is in front

    def validate(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError("port: must be a port number 0-65535")
        if not 0 <= self.admin_port < 65536:
            raise ValueError("admin_port: must be a port number 0-65535 (0: off)")
        if self.admin_port and self.admin_port == self.port and self.admin_host == self.host:
            raise ValueError("admin_port: must differ from port (the admin pages are never public)")


class Settings:
    """Validated settings plus access to module-owned sections."""

    def __init__(self, data: dict[str, Any], where: dict[str, Located], files: list[str]) -> None:
        self.data = data
        self.where = where
        self.files = files
        self.asterisk = self.section("asterisk", AsteriskConfig)
        self.media = self.section("media", MediaConfig)
        self.web = self.section("web", WebConfig)
        self._fill_secrets()

    def section(self, dotted: str, cls: type[T]) -> T:
        """Validate the section at ``dotted`` (e.g. ``speech.vad``) into ``cls``."""
        value: Any = self.data
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return _Validator(self.where).build(cls, value, dotted)

    def _fill_secrets(self) -> None:
        a = self.asterisk
        a.ari_password = a.ari_password or secret("ARI_PASSWORD")
        a.ami_secret = a.ami_secret or secret("AMI_SECRET")

    def path(self, value: str | Path) -> Path:
        """Resolve a path from config: relative paths are relative to the project root."""
        p = Path(value)
        return p if p.is_absolute() else PROJECT_ROOT / p


def secret(name: str) -> str:
    """A generated secret (ARI_PASSWORD, AMI_SECRET, SIP_PASSWORD_<ACCOUNT>): ``$VOICEBOT_<name>``
    wins over asterisk/secrets.env, as in ``asterisk/pbx``, which renders the same value into
    Asterisk's config. Empty when neither has it."""
    return os.environ.get(f"VOICEBOT_{name}") or read_secrets().get(name, "")


def sip_secret_name(account: str) -> str:
    """The secret holding a SIP account's password: ``agent-pladsanvisning`` ->
    ``SIP_PASSWORD_AGENT_PLADSANVISNING`` (the placeholder asterisk/conf/pjsip.conf uses)."""
    return "SIP_PASSWORD_" + account.upper().replace("-", "_")


def sip_password(account: str) -> str:
    """The password of SIP account ``account`` (pjsip.conf): every account has its own."""
    return secret(sip_secret_name(account))


def read_secrets(path: Path = SECRETS_FILE) -> dict[str, str]:
    """Read the KEY=VALUE file that ``asterisk/pbx install`` writes (missing file: empty)."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("'\"")
    return out


def load_records(path: str | Path, cls: type[T]) -> list[T]:
    """A YAML file holding a list of records (eval sets...), each validated into the dataclass
    ``cls`` with the same located errors as settings (``set.yaml:12: [4].text: ...``)."""
    data, where = load_yaml(path)
    if not isinstance(data, list):
        raise ConfigError("expected a list of entries", file=str(path), line=1)
    validator = _Validator(where)
    return [validator.build(cls, entry, f"[{i}]") for i, entry in enumerate(data)]


def load_record(path: str | Path, cls: type[T]) -> T:
    """A YAML file holding one mapping, validated into the dataclass ``cls`` (located errors)."""
    data, where = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping", file=str(path), line=1)
    return _Validator(where).build(cls, data, "")


def load_settings(path: str | Path | None = None) -> Settings:
    """Load the embedded defaults overlaid by ``path`` (or ``$VOICEBOT_CONFIG`` when set)."""
    data, where = load_yaml(DEFAULTS_FILE)
    files = [str(DEFAULTS_FILE)]
    path = path or os.environ.get("VOICEBOT_CONFIG") or None
    if path:
        over, over_where = load_yaml(path)
        if not isinstance(over, dict):
            raise ConfigError("the top level must be a mapping of sections", file=str(path), line=1)
        _merge(data, over, where, over_where)
        files.append(str(path))
    return Settings(data, where, files)
