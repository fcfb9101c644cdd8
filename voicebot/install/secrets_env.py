"""``python -m voicebot.install.secrets_env SECRETS OUT``: asterisk/secrets.env as an environment
file for systemd (``VOICEBOT_<NAME>='value'``), mode 600, without the SIP passwords.

The bot's unit runs this as root before the bot starts (``ExecStartPre=+``), and systemd, also as
root, reads OUT into the bot's environment (``EnvironmentFile=``). So the secrets file stays
root's alone (``asterisk/pbx`` keeps it mode 600 on every sync) and the bot's own user never
needs to read it: ``voicebot.config.secret`` takes ``$VOICEBOT_<NAME>`` first.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from voicebot.config import read_secrets

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: the SIP accounts' passwords: only the test caller (``voicebot call``, the benches) uses them,
#: ``voicebot serve`` never does, so they stay out of its environment
TEST_CALLER_ONLY = "SIP_PASSWORD"


def env_line(name: str, value: str) -> str | None:
    """One line of a systemd environment file; None for what it cannot carry faithfully."""
    if not NAME.fullmatch(name) or "\n" in value or "\r" in value:
        return None
    if "'" not in value:  # single quotes: taken literally, no escapes and no expansion
        return f"VOICEBOT_{name}='{value}'"
    escaped = re.sub(r'(["\\`$])', r"\\\1", value)
    return f'VOICEBOT_{name}="{escaped}"'


def write_env(secrets: Path, out: Path) -> int:
    """Write ``out`` (mode 600, atomically); returns how many secrets it holds."""
    lines = ["# written from asterisk/secrets.env at each start of kk-voicebot.service; do not edit"]
    for name, value in read_secrets(secrets).items():
        if name.startswith(TEST_CALLER_ONLY):
            continue
        line = env_line(name, value)
        if line is None:
            print(f"secrets_env: {secrets}: {name!r} cannot go into the environment; left out", file=sys.stderr)
            continue
        lines.append(line)
    tmp = out.with_name(f".{out.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, out)
    return len(lines) - 1


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m voicebot.install.secrets_env SECRETS OUT", file=sys.stderr)
        return 2
    secrets, out = Path(argv[0]), Path(argv[1])
    if not secrets.is_file():  # Asterisk's unit (asterisk/pbx install) generates it
        print(f"secrets_env: {secrets} missing: the bot starts without the ARI/AMI secrets", file=sys.stderr)
    write_env(secrets, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
