"""Every transfer target the bot may name exists as a context in the admins' dialplans."""

import re

from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.knowledge.departments import HUMAN


def dialplan_contexts() -> set[str]:
    names = set()
    for conf in (PROJECT_ROOT / "dialplans").glob("*.conf"):
        names |= set(re.findall(r"^\[([^\]]+)\]", conf.read_text(), re.MULTILINE))
    return names


def test_every_department_target_is_a_dialplan_context():
    departments = load_settings().data["departments"]
    contexts = dialplan_contexts()
    missing = {d: v["target"] for d, v in departments.items() if v["target"] not in contexts}
    assert not missing, f"targets without a context in dialplans/: {missing}"


def test_the_human_department_routes_to_the_human_queue_context():
    assert load_settings().data["departments"][HUMAN]["target"] == "human-queue"
    assert "human-queue" in dialplan_contexts()
