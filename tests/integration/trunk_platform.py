"""The contact-centre platform for the trunk tests: a second Asterisk with a queue and an agent.

It runs from the project's chroot as an ``ExtraAsterisk`` (tests/integration/extra_asterisk.py)
on other loopback addresses, so nothing of the normal Asterisk's is touched:

    127.0.0.1   the bot's Asterisk (asterisk/pbx): phones on 5060; the trunk on 5062 (udp) or
                5061 (tls), as PBX_TRUNK_BIND says
    127.0.0.2   the platform: SIP 5080 (udp) and 5081 (tls); RTP 30000-30999
    127.0.0.3   the test's phones on the platform: the citizen who calls, the agent

The platform knows the bot's Asterisk as endpoint ``voicebot``: by its address (``ip``), or
as an account the bot's Asterisk registers to (``register``). A citizen's call to 33663366
goes to the bot over that trunk, carrying the test caller's X-Voicebot-Ref and ASR-script
headers. Its queue number 4000 answers calls and REFERs from the bot's Asterisk: queue ``cc``,
one member, the agent phone, whose INVITE carries the bot's context as X-Voicebot-Intent and
X-Voicebot-Summary (from the Refer-To URI's headers after a REFER, from the INVITE's own
headers after a fallback call) and X-Platform-Route (refer or invite: how it arrived).
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.extra_asterisk import CONF, ExtraAsterisk

BOT_ADDR = "127.0.0.1"
PLATFORM_ADDR = "127.0.0.2"
PHONE_ADDR = "127.0.0.3"
PLATFORM_UDP = 5080
PLATFORM_TLS = 5081
BOT_TRUNK_UDP = 5062
BOT_TRUNK_TLS = 5061
QUEUE = "4000"


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throw-away CA and a certificate for each side (EC P-256, 2 days), made with openssl in
    ``directory``: ca, bot_cert, bot_key, platform_cert, platform_key. Never committed."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=kk-voicebot trunk test CA")
    out = {"ca": directory / "ca.pem"}
    for side, addr in (("bot", BOT_ADDR), ("platform", PLATFORM_ADDR)):
        (directory / f"{side}.ext").write_text(
            f"subjectAltName=IP:{addr}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
        run("req", *ec, "-keyout", f"{side}.key", "-out", f"{side}.csr", "-subj", f"/CN={addr}")
        run("x509", "-req", "-in", f"{side}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{side}.pem", "-days", "2", "-extfile", f"{side}.ext")
        out[f"{side}_cert"] = directory / f"{side}.pem"
        out[f"{side}_key"] = directory / f"{side}.key"
    return out


@dataclass
class Trunk:
    """One way of connecting the two: what both sides' configs are made from."""

    mode: str = "ip"  # ip | register (the bot's Asterisk registers to the platform)
    transport: str = "udp"  # udp | tls
    srtp: bool = False
    refer: bool = True  # the platform accepts REFER from the bot's Asterisk
    codecs: str = "alaw,ulaw"  # what the platform offers the bot, in order
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))  # register: the bot's account

    @property
    def tls(self) -> bool:
        return self.transport == "tls"

    def bot_env(self, certs: dict[str, Path] | None) -> dict[str, str]:
        """The bot side's trunk settings, as asterisk/pbx reads them (README "Production")."""
        port = PLATFORM_TLS if self.tls else PLATFORM_UDP
        env = {"PBX_TRUNK": self.mode, "PBX_TRUNK_HOST": f"{PLATFORM_ADDR}:{port}",
               "PBX_TRUNK_BIND": f"{BOT_ADDR}:{BOT_TRUNK_TLS if self.tls else BOT_TRUNK_UDP}",
               "PBX_TRUNK_TRANSPORT": self.transport, "PBX_TRUNK_SRTP": "yes" if self.srtp else "no"}
        if self.tls:
            assert certs
            env |= {"PBX_TRUNK_CERT": str(certs["bot_cert"]), "PBX_TRUNK_KEY": str(certs["bot_key"]),
                    "PBX_TRUNK_CA": str(certs["ca"])}
        if self.mode == "register":
            env |= {"PBX_TRUNK_USER": "voicebot", "VOICEBOT_TRUNK_PASSWORD": self.password}
        return env


class Platform(ExtraAsterisk):
    """The platform's Asterisk for ``trunk``; ``passwords`` of its phones: caller, agent."""

    def __init__(self, trunk: Trunk, logdir: Path, certs: dict[str, Path] | None = None) -> None:
        self.trunk = trunk
        self.passwords = {"caller": secrets.token_urlsafe(18), "agent": secrets.token_urlsafe(18)}
        base = {name: (CONF / name).read_text() for name in ("modules.conf", "logger.conf", "cdr.conf", "cel.conf")}
        super().__init__("platform", {
            **base,
            "http.conf": "[general]\nenabled=no\n",  # no ARI, no AMI: nothing but SIP
            "manager.conf": "[general]\nenabled=no\n",
            "rtp.conf": "[general]\nrtpstart=30000\nrtpend=30999\n",
            "musiconhold.conf": "[default]\nmode=files\ndirectory=moh\n",
            "queues.conf": QUEUES,
            "extensions.conf": EXTENSIONS,
        }, logdir)
        tls_files = {}
        if trunk.tls:
            assert certs
            tls_files = {"cert": self.copy_in(certs["platform_cert"], "tls/cert.pem"),
                         "key": self.copy_in(certs["platform_key"], "tls/key.pem"),
                         "ca": self.copy_in(certs["ca"], "tls/ca.pem")}
        self.files["pjsip.conf"] = self._pjsip(tls_files)

    def _pjsip(self, tls: dict[str, str]) -> str:
        t = self.trunk
        transport = "transport-tls" if t.tls else "transport-udp"
        bot_port = BOT_TRUNK_TLS if t.tls else BOT_TRUNK_UDP
        lines = [
            "[global]", "type=global", "user_agent=kk-voicebot test platform",
            # the phones are known by their account (from 127.0.0.3), the bot's Asterisk by its
            # address (ip) or by the account its INVITEs authenticate as (register)
            "endpoint_identifier_order=ip,username,auth_username,anonymous", "",
            "[transport-udp]", "type=transport", "protocol=udp", f"bind={PLATFORM_ADDR}:{PLATFORM_UDP}", "",
        ]
        if t.tls:
            lines += ["[transport-tls]", "type=transport", "protocol=tls", f"bind={PLATFORM_ADDR}:{PLATFORM_TLS}",
                      f"cert_file={tls['cert']}", f"priv_key_file={tls['key']}", f"ca_list_file={tls['ca']}",
                      "method=tlsv1_2", "verify_server=yes", ""]
        for phone, context in (("caller", "from-caller"), ("agent", "from-agent")):
            lines += [f"[{phone}]", "type=endpoint", f"context={context}", "disallow=all", "allow=ulaw",
                      "direct_media=no", "rtp_symmetric=yes", "force_rport=yes", "rewrite_contact=yes",
                      "dtmf_mode=rfc4733", "transport=transport-udp", "trust_id_inbound=yes",
                      f"auth={phone}", f"aors={phone}", "",
                      f"[{phone}]", "type=auth", "auth_type=userpass", f"username={phone}",
                      f"password={self.passwords[phone]}", "",
                      f"[{phone}]", "type=aor", "max_contacts=1", "remove_existing=yes", ""]
        lines += ["[voicebot]", "type=endpoint", "context=from-voicebot", "disallow=all", f"allow={t.codecs}",
                  "direct_media=no", "rtp_symmetric=yes", "dtmf_mode=rfc4733", f"transport={transport}",
                  "trust_id_inbound=yes", "send_pai=yes", f"allow_transfer={'yes' if t.refer else 'no'}",
                  "aors=voicebot"]
        if t.srtp:
            lines += ["media_encryption=sdes", "media_encryption_optimistic=no"]
        if t.mode == "register":
            lines += ["auth=voicebot", "",
                      "[voicebot]", "type=auth", "auth_type=userpass", "username=voicebot",
                      f"password={t.password}", "",
                      "[voicebot]", "type=aor", "max_contacts=1", "remove_existing=yes", ""]
        else:
            lines += ["",
                      "[voicebot]", "type=aor",
                      # a bare ';' would start a comment in Asterisk's config
                      f"contact=sip:{BOT_ADDR}:{bot_port}" + ("\\;transport=tls" if t.tls else ""), "",
                      "[voicebot]", "type=identify", "endpoint=voicebot", f"match={BOT_ADDR}", ""]
        return "\n".join(lines) + "\n"


QUEUES = """\
[general]
persistentmembers=no

[cc]
strategy=ringall
timeout=15
retry=1
wrapuptime=0
ringinuse=no
member => Local/agent@platform-agents/n,0,Agent,PJSIP/agent
"""

# ${...} below are Asterisk's, not Python's
EXTENSIONS = r"""
[general]
static=yes
writeprotect=yes

; A citizen calls the municipality: the call goes to the voicebot over the trunk, with the test
; caller's headers (the bot's record reference, the test recognizer's script). Should the bot
; give the call back with a REFER, this channel (the transferee) is what moves to the queue:
; GET_TRANSFERRER_DATA=Refer-To copies the REFER's Refer-To header into HASH(TRANSFER_DATA).
[from-caller]
exten => _X.,1,Set(GET_TRANSFERRER_DATA=Refer-To)
 same => n,Set(__CALL_REF=${PJSIP_HEADER(read,X-Voicebot-Ref)})
 same => n,Set(__ASR_SCRIPT=${PJSIP_HEADER(read,X-Voicebot-Asr-Script)})
 same => n,Dial(PJSIP/${EXTEN}@voicebot,,b(to-voicebot^s^1))
 same => n,Hangup()

[to-voicebot]
exten => s,1,Set(PJSIP_HEADER(add,X-Voicebot-Ref)=${CALL_REF})
 same => n,Set(PJSIP_HEADER(add,X-Voicebot-Asr-Script)=${ASR_SCRIPT})
 same => n,Return()

; The queue's number, 4000. After a REFER the caller's own channel arrives here (SIPTRANSFER=yes)
; and the bot's context is in the Refer-To URI's headers; after a fallback call from the bot's
; Asterisk it is in that INVITE's headers.
[from-voicebot]
exten => 4000,1,NoOp(platform queue 4000: SIPTRANSFER=${SIPTRANSFER})
 same => n,GotoIf($["${SIPTRANSFER}" = "yes"]?refer)
 same => n,Set(__BOT_ROUTE=invite)
 same => n,Set(__BOT_INTENT=${PJSIP_HEADER(read,X-Voicebot-Intent)})
 same => n,Set(__BOT_SUMMARY=${PJSIP_HEADER(read,X-Voicebot-Summary)})
 same => n,Goto(queue)
 same => n(refer),Set(__BOT_ROUTE=refer)
 same => n,Set(REFER_TO=${HASH(TRANSFER_DATA,Refer-To)})
 same => n,Set(URI_HEADERS=${CUT(REFER_TO,?,2)})
 same => n,Set(URI_HEADERS=${CUT(URI_HEADERS,>,1)})
 same => n,Set(I=1)
 same => n(field),Set(FIELD=${CUT(URI_HEADERS,&,${I})})
 same => n,GotoIf($["${FIELD}" = ""]?copied)
 same => n,Set(HASH(uri,${CUT(FIELD,=,1)})=${URIDECODE(${CUT(FIELD,=,2)})})
 same => n,Set(I=$[${I} + 1])
 same => n,GotoIf($[${I} < 10]?field)
 same => n(copied),Set(__BOT_INTENT=${HASH(uri,X-Voicebot-Intent)})
 same => n,Set(__BOT_SUMMARY=${HASH(uri,X-Voicebot-Summary)})
 same => n(queue),Answer()
 same => n,Queue(cc,,,,30)
 same => n,Hangup()

[platform-agents]
exten => _[a-z].,1,Dial(PJSIP/${EXTEN},,b(agent-headers^s^1))
 same => n,Hangup()

[agent-headers]
exten => s,1,Set(PJSIP_HEADER(add,X-Platform-Route)=${BOT_ROUTE})
 same => n,GotoIf($["${BOT_INTENT}" = ""]?summary)
 same => n,Set(PJSIP_HEADER(add,X-Voicebot-Intent)=${BOT_INTENT})
 same => n(summary),GotoIf($["${BOT_SUMMARY}" = ""]?done)
 same => n,Set(PJSIP_HEADER(add,X-Voicebot-Summary)=${BOT_SUMMARY})
 same => n(done),Return()

[from-agent]
"""
