"""Every transfer target the bot may name exists as a context in the admins' dialplans."""

import re

from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.knowledge import load_for_settings
from voicebot.knowledge.departments import HUMAN


def dialplan_contexts() -> set[str]:
    names = set()
    for conf in (PROJECT_ROOT / "dialplans").glob("*.conf"):
        names |= set(re.findall(r"^\[([^\]]+)\]", conf.read_text(), re.MULTILINE))
    return names


def test_every_department_target_is_a_dialplan_context():
    """The shared departments and every tenant's own (knowledge/<tenant>/_tenant.yaml)."""
    kb = load_for_settings(load_settings())
    assert "pladsanvisning" in kb.directory.departments  # a tenant's own department is included
    contexts = dialplan_contexts()
    missing = {d: v.target for d, v in kb.directory.departments.items() if v.target not in contexts}
    assert not missing, f"targets without a context in dialplans/: {missing}"


def test_every_tenant_on_a_number_exists_and_its_human_route_is_a_context():
    """A number's TENANT is a knowledge folder, and its TENANT_HUMAN a context."""
    text = (PROJECT_ROOT / "dialplans" / "10-main-number.conf").read_text()
    tenants = set(re.findall(r"Set\(__TENANT=([a-z0-9-]+)\)", text))
    humans = set(re.findall(r"Set\(__TENANT_HUMAN=([a-z0-9-]+)\)", text))
    kb = load_for_settings(load_settings())
    assert tenants == set(kb.tenants), "every tenant should have a number, and every number a tenant"
    assert humans and humans <= dialplan_contexts()


def test_the_human_department_routes_to_the_human_queue_context():
    assert load_settings().data["departments"][HUMAN]["target"] == "human-queue"
    assert "human-queue" in dialplan_contexts()
