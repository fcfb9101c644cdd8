"""Load and validate knowledge articles from YAML; every error names file, line and key.

A file holds one article (a mapping) or several (a list of mappings). ``{name}`` placeholders in
answers, links and SMS texts are filled from ``knowledge.values`` in config, so facts such as a
phone number or a URL are written once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from voicebot.config import Located, load_yaml
from voicebot.errors import ConfigError
from voicebot.knowledge.departments import Directory
from voicebot.knowledge.model import FOLLOWUP_TOPICS, Action, Article, KnowledgeBase, Rule

MIN_EXAMPLES = 10
MAX_VOICE_WORDS = 80  # hard limit; ~60 words is ~25 s of speech and gives a warning
WARN_VOICE_WORDS = 62
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
KNOWN_KEYS = {"id", "tenant", "title", "examples", "rules", "answer", "link", "sms", "action",
              "recording", "followups"}


class _Article:
    """Validation context for one article: knows where each of its keys was written."""

    def __init__(self, data: Any, where: dict[str, Located], prefix: str, file: Path,
                 values: dict[str, str]) -> None:
        self.data, self.where, self.prefix, self.file, self.values = data, where, prefix, file, values

    def error(self, key: str, problem: str) -> ConfigError:
        path = f"{self.prefix}{key}" if key else self.prefix.rstrip(".")
        loc = None
        probe = path
        while loc is None:
            loc = self.where.get(probe)
            if not probe:
                break
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        return ConfigError(problem, file=str(self.file), line=loc.line if loc else None,
                           key=key or None)

    def text(self, key: str, value: Any = None, *, required: bool = True, fill: bool = True) -> str:
        if value is None:
            value = _dig(self.data, key)
        if value is None:
            if required:
                raise self.error(key, "required key is missing")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.error(key, "expected non-empty text")
        return self.fill(key, value.strip()) if fill else value.strip()

    def fill(self, key: str, text: str) -> str:
        def sub(m: re.Match) -> str:
            if m.group(1) not in self.values:
                raise self.error(key, f"unknown placeholder {{{m.group(1)}}} "
                                      f"(define it under knowledge.values in config)")
            return self.values[m.group(1)]
        return PLACEHOLDER_RE.sub(sub, text)


def _dig(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _examples(ctx: _Article) -> tuple[str, ...]:
    raw = ctx.data.get("examples")
    if not isinstance(raw, list):
        raise ctx.error("examples", "expected a list of example phrasings")
    out = tuple(ctx.text(f"examples[{i}]", v, fill=False) for i, v in enumerate(raw))
    if len(set(e.lower() for e in out)) < MIN_EXAMPLES:
        raise ctx.error("examples", f"needs at least {MIN_EXAMPLES} different examples, has {len(set(out))}")
    return out


def _rules(ctx: _Article) -> tuple[Rule, ...]:
    raw = ctx.data.get("rules") or []
    if not isinstance(raw, list):
        raise ctx.error("rules", "expected a list of {keywords: [...]} or {regex: ...} entries")
    rules = []
    for i, item in enumerate(raw):
        key = f"rules[{i}]"
        if not isinstance(item, dict) or not ({"keywords", "regex"} & set(item)):
            raise ctx.error(key, "expected a mapping with keywords: or regex:")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
            raise ctx.error(f"{key}.weight", "must be a number above 0 and at most 1")
        keywords: tuple[str, ...] = ()
        if "keywords" in item:
            kw = item["keywords"]
            if not isinstance(kw, list) or not kw or not all(isinstance(k, str) and k.strip() for k in kw):
                raise ctx.error(f"{key}.keywords", "expected a non-empty list of words")
            keywords = tuple(k.strip().lower() for k in kw)
        regex = item.get("regex")
        if regex is not None:
            if not isinstance(regex, str):
                raise ctx.error(f"{key}.regex", "expected a regular expression as text")
            try:
                re.compile(regex)
            except re.error as exc:
                raise ctx.error(f"{key}.regex", f"invalid regular expression: {exc}") from None
        unknown = set(item) - {"keywords", "regex", "weight"}
        if unknown:
            raise ctx.error(f"{key}.{sorted(unknown)[0]}", "unknown key (known: keywords, regex, weight)")
        loc = ctx.where.get(f"{ctx.prefix}{key}")
        rules.append(Rule(float(weight), keywords, regex, f"{ctx.file}:{loc.line if loc else '?'}"))
    return tuple(rules)


def _action(ctx: _Article, departments: set[str] | None) -> Action:
    raw = ctx.data.get("action", "answer")
    if isinstance(raw, str) and ":" in raw:
        kind, _, dept = raw.partition(":")
        raw = {kind.strip(): dept.strip()}
    if raw == "answer":
        return Action("answer")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ctx.error("action", "expected answer, {transfer: DEPT} or {answer_then_offer_transfer: DEPT}")
    kind, dept = next(iter(raw.items()))
    if kind not in ("transfer", "answer_then_offer_transfer"):
        raise ctx.error("action", f"unknown action {kind!r} (known: answer, transfer, answer_then_offer_transfer)")
    if not isinstance(dept, str) or not dept:
        raise ctx.error(f"action.{kind}", "expected a department id")
    if departments is not None and dept not in departments:
        raise ctx.error(f"action.{kind}", f"unknown department {dept!r} "
                                         f"(known: {', '.join(sorted(departments))})")
    return Action(kind, dept)  # type: ignore[arg-type]


def _followups(ctx: _Article) -> dict[str, str]:
    raw = ctx.data.get("followups") or {}
    if not isinstance(raw, dict):
        raise ctx.error("followups", "expected a mapping of topic: answer")
    for topic in raw:
        if topic not in FOLLOWUP_TOPICS:
            raise ctx.error(f"followups.{topic}", f"unknown topic (known: {', '.join(FOLLOWUP_TOPICS)})")
    return {topic: ctx.text(f"followups.{topic}", text) for topic, text in raw.items()}


def parse_article(ctx: _Article, departments: set[str] | None, warnings: list[str]) -> Article:
    if not isinstance(ctx.data, dict):
        raise ctx.error("", "an article must be a mapping")
    unknown = sorted(set(ctx.data) - KNOWN_KEYS)
    if unknown:
        raise ctx.error(unknown[0], f"unknown key (known keys: {', '.join(sorted(KNOWN_KEYS))})")
    art_id = ctx.text("id", fill=False)
    if not ID_RE.match(art_id) or art_id == "none":
        raise ctx.error("id", "must be lower-case letters, digits and dashes (and not 'none')")
    voice = ctx.text("answer.voice")
    words = len(voice.split())
    if words > MAX_VOICE_WORDS:
        raise ctx.error("answer.voice", f"{words} words is too long to say on the phone "
                                        f"(at most {MAX_VOICE_WORDS}; aim for 60, about 25 seconds)")
    if words > WARN_VOICE_WORDS:
        warnings.append(f"{ctx.file}: {art_id}: answer.voice has {words} words (aim for 60 or fewer)")
    recording = ctx.text("recording", required=False, fill=False)
    return Article(
        id=art_id, tenant=ctx.text("tenant", required=False, fill=False), title=ctx.text("title"),
        examples=_examples(ctx), rules=_rules(ctx), answer_voice=voice,
        answer_chat=ctx.text("answer.chat"), link=ctx.text("link"), sms=ctx.text("sms"),
        action=_action(ctx, departments), followups=_followups(ctx),
        recording=(ctx.file.parent / recording).resolve() if recording else None, file=ctx.file)


def load_file(path: Path, values: dict[str, str], departments: set[str] | None,
              warnings: list[str]) -> list[Article]:
    data, where = load_yaml(path)
    items = data if isinstance(data, list) else [data]
    prefix = (lambda i: f"[{i}].") if isinstance(data, list) else (lambda i: "")
    return [parse_article(_Article(item, where, prefix(i), path, values), departments, warnings)
            for i, item in enumerate(items)]


def load_articles(directory: Path, values: dict[str, str], directory_cfg: Directory | None) -> KnowledgeBase:
    """Load every ``*.yaml`` under ``directory`` (recursively); ids must be unique."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError("knowledge directory not found", file=str(directory))
    files = sorted(p for p in directory.rglob("*.yaml") if not p.name.startswith(("_", ".")))
    if not files:
        raise ConfigError("no knowledge articles (*.yaml) found", file=str(directory))
    departments = set(directory_cfg.departments) if directory_cfg else None
    warnings: list[str] = []
    seen: dict[str, Article] = {}
    for path in files:
        for article in load_file(path, values, departments, warnings):
            if article.id in seen:
                raise ConfigError(f"article id {article.id!r} is also used in {seen[article.id].file}",
                                  file=str(path), key="id")
            seen[article.id] = article
    return KnowledgeBase(list(seen.values()), directory_cfg, dict(values), warnings)
