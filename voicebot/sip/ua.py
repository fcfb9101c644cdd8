"""A small asyncio SIP user agent over UDP: register, call, answer, hang up.

Made for testing and load-testing the project's own Asterisk (`voicebot call`, the test agent),
where precise timing and many calls from one process matter. Interoperability is checked against
baresip in the integration tests. Not a general-purpose SIP stack: no TCP/TLS, no forking, no
route sets (Asterisk does not record-route), UDP retransmission per RFC 3261 timers only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from voicebot.errors import TelephonyError
from voicebot.sip.message import (SipMessage, digest_authorization, new_branch, new_tag, parse,
                                  parse_challenge, tag_of, uri_of)

log = logging.getLogger("voicebot.sip")

T1 = 0.5


@dataclass
class Dialog:
    call_id: str
    local_uri: str
    remote_uri: str
    local_tag: str
    remote_tag: str = ""
    remote_target: str = ""  # Contact of the peer: where in-dialog requests go
    cseq: int = 1
    remote_sdp: str = ""
    local_sdp: str = ""
    answered_at: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ended_by: str = ""  # "local" or "remote"


@dataclass
class IncomingCall:
    """An INVITE waiting for ``answer(sdp)`` or ``reject(code)``."""

    ua: SipUA
    request: SipMessage
    addr: tuple[str, int]
    dialog: Dialog

    @property
    def remote_sdp(self) -> str:
        return self.request.body

    async def answer(self, sdp: str) -> None:
        await self.ua._answer(self, sdp)

    def reject(self, code: int = 486, reason: str = "Busy Here") -> None:
        self.ua._respond(self.request, self.addr, code, reason, to_tag=self.dialog.local_tag)


class SipUA(asyncio.DatagramProtocol):
    def __init__(self, user: str, password: str, server: tuple[str, int] = ("127.0.0.1", 5060),
                 host: str = "127.0.0.1") -> None:
        self.user, self.password = user, password
        self.server = server
        self.host = host
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.on_invite: Callable[[IncomingCall], Awaitable[None]] | None = None
        self.dialogs: dict[str, Dialog] = {}
        self._pending: dict[str, asyncio.Queue[SipMessage]] = {}
        self._acks: dict[str, bytes] = {}  # call-id -> ACK we sent for its 2xx (resend on retransmits)
        self._answered: dict[str, tuple[bytes, asyncio.Event]] = {}  # our 2xx awaiting the peer's ACK
        self._tasks: set[asyncio.Task] = set()

    # ---- socket ----------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> SipUA:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, port))
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.transport:
            self.transport.close()

    def _send(self, msg: SipMessage | bytes, addr: tuple[str, int] | None = None) -> None:
        data = msg if isinstance(msg, bytes) else msg.encode()
        if self.transport is not None:
            self.transport.sendto(data, addr or self.server)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse(data)
        if msg is None:
            return
        if msg.is_response:
            self._on_response(msg)
        else:
            self._on_request(msg, addr)

    # ---- client transactions ---------------------------------------------------------------------
    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{self.port}>"

    def _request(self, method: str, uri: str, dialog: Dialog, cseq: int, body: str = "",
                 extra: list[tuple[str, str]] | None = None) -> SipMessage:
        to = f"<{dialog.remote_uri}>" + (f";tag={dialog.remote_tag}" if dialog.remote_tag else "")
        headers = [
            ("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{dialog.local_uri}>;tag={dialog.local_tag}"),
            ("To", to),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", self.contact),
            ("User-Agent", "kk-voicebot-caller"),
        ] + (extra or [])
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return SipMessage(f"{method} {uri} SIP/2.0", headers, body)

    async def _transaction(self, req: SipMessage, timeout: float = 32.0,
                           on_provisional: Callable[[SipMessage], None] | None = None) -> SipMessage:
        """Send ``req`` (retransmitting on UDP) and return its final response."""
        queue: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._pending[req.branch] = queue
        deadline = time.monotonic() + timeout
        interval, provisional = T1, False
        try:
            self._send(req)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TelephonyError(f"SIP {req.method}: no final response in {timeout:.0f} s")
                try:
                    resp = await asyncio.wait_for(queue.get(), min(interval, left) if not provisional else left)
                except asyncio.TimeoutError:
                    self._send(req)  # retransmit (stops once anything came back for an INVITE)
                    interval = min(interval * 2, 4.0)
                    continue
                if resp.status < 200:
                    provisional = req.method == "INVITE"
                    if on_provisional:
                        on_provisional(resp)
                    continue
                return resp
        finally:
            self._pending.pop(req.branch, None)

    def _on_response(self, msg: SipMessage) -> None:
        queue = self._pending.get(msg.branch)
        if queue is not None:
            queue.put_nowait(msg)
        elif msg.method == "INVITE" and 200 <= msg.status < 300 and msg.call_id in self._acks:
            self._send(self._acks[msg.call_id])  # our ACK was lost: the 2xx is retransmitted

    async def _authorized(self, req: SipMessage, dialog: Dialog, make: Callable[[int], SipMessage],
                          **kw) -> SipMessage:
        """Run a transaction; answer one digest challenge with credentials."""
        resp = await self._transaction(req, **kw)
        if resp.status not in (401, 407):
            return resp
        if req.method == "INVITE":
            self._ack_failure(req, resp)
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        challenge = parse_challenge(resp.get(header))
        dialog.cseq += 1
        retry = make(dialog.cseq)
        auth = digest_authorization(challenge, retry.method, retry.uri, self.user, self.password)
        retry.headers.append(("Authorization" if resp.status == 401 else "Proxy-Authorization", auth))
        return await self._transaction(retry, **kw)

    def _ack_failure(self, invite: SipMessage, resp: SipMessage) -> None:
        ack = SipMessage(f"ACK {invite.uri} SIP/2.0", [
            ("Via", invite.get("via")), ("Max-Forwards", "70"), ("From", invite.get("from")),
            ("To", resp.get("to")), ("Call-ID", invite.call_id), ("CSeq", f"{invite.cseq[0]} ACK")])
        self._send(ack)

    # ---- public client operations ----------------------------------------------------------------
    async def register(self, expires: int = 300) -> int:
        domain = self.server[0]
        aor = f"sip:{self.user}@{domain}"
        dialog = Dialog(call_id=os.urandom(8).hex(), local_uri=aor, remote_uri=aor, local_tag=new_tag())
        make = lambda cseq: self._request("REGISTER", f"sip:{domain}:{self.server[1]}", dialog, cseq,
                                          extra=[("Expires", str(expires))])
        resp = await self._authorized(make(dialog.cseq), dialog, make, timeout=8)
        if resp.status != 200:
            raise TelephonyError(f"SIP REGISTER as {self.user} failed: {resp.start}")
        return resp.status

    async def invite(self, number: str, sdp: str, timeout: float = 30.0,
                     on_provisional: Callable[[SipMessage], None] | None = None,
                     headers: list[tuple[str, str]] | None = None) -> tuple[SipMessage, Dialog]:
        """Place a call; returns the final response and the dialog (answered when 2xx).

        ``headers`` are extra headers for the INVITE (e.g. ``X-Voicebot-Ref``), repeated on the
        authenticated retry so the far end sees them whichever INVITE it accepts.
        """
        for name, value in headers or []:
            if not re.fullmatch(r"[A-Za-z0-9!%'*+.^_`|~-]+", name) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"invalid SIP header {name!r}: {value[:40]!r}")
        domain = self.server[0]
        dialog = Dialog(call_id=os.urandom(8).hex(), local_uri=f"sip:{self.user}@{domain}",
                        remote_uri=f"sip:{number}@{domain}", local_tag=new_tag())
        uri = f"sip:{number}@{domain}:{self.server[1]}"
        make = lambda cseq: self._request("INVITE", uri, dialog, cseq, body=sdp, extra=list(headers or []))
        resp = await self._authorized(make(dialog.cseq), dialog, make, timeout=timeout,
                                      on_provisional=on_provisional)
        if 200 <= resp.status < 300:
            dialog.remote_tag = tag_of(resp.get("to"))
            dialog.remote_target = uri_of(resp.get("contact")) or uri
            dialog.remote_sdp = resp.body
            dialog.local_sdp = sdp
            dialog.answered_at = time.monotonic()
            ack = self._request("ACK", dialog.remote_target, dialog, dialog.cseq)
            self._acks[dialog.call_id] = ack.encode()
            self._send(ack)
            self.dialogs[dialog.call_id] = dialog
        return resp, dialog

    async def bye(self, dialog: Dialog) -> None:
        if dialog.ended.is_set():
            return
        dialog.ended_by = "local"
        dialog.ended.set()
        dialog.cseq += 1
        try:
            await self._transaction(self._request("BYE", dialog.remote_target, dialog, dialog.cseq), timeout=5)
        except TelephonyError:
            pass  # the peer is gone already
        self.dialogs.pop(dialog.call_id, None)
        self._acks.pop(dialog.call_id, None)

    async def send_info_dtmf(self, dialog: Dialog, digit: str) -> None:  # pragma: no cover - fallback only
        dialog.cseq += 1
        req = self._request("INFO", dialog.remote_target, dialog, dialog.cseq)
        req.body = f"Signal={digit}\r\nDuration=160\r\n"
        req.set("Content-Type", "application/dtmf-relay")
        await self._transaction(req, timeout=5)

    # ---- server side -----------------------------------------------------------------------------
    def _respond(self, req: SipMessage, addr: tuple[str, int], code: int, reason: str,
                 to_tag: str = "", body: str = "") -> bytes:
        to = req.get("to")
        if to_tag and not tag_of(to):
            to += f";tag={to_tag}"
        headers = [("Via", v) for v in req.get_all("via")] + [
            ("From", req.get("from")), ("To", to), ("Call-ID", req.call_id), ("CSeq", req.get("cseq")),
            ("Contact", self.contact), ("User-Agent", "kk-voicebot-caller")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        data = SipMessage(f"SIP/2.0 {code} {reason}", headers, body).encode()
        self._send(data, addr)
        return data

    def _on_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        method = req.method
        dialog = self.dialogs.get(req.call_id)
        if method == "INVITE" and dialog is None:
            dialog = Dialog(call_id=req.call_id, local_uri=uri_of(req.get("to")), remote_uri=uri_of(req.get("from")),
                            local_tag=new_tag(), remote_tag=tag_of(req.get("from")),
                            remote_target=uri_of(req.get("contact")), cseq=100, remote_sdp=req.body)
            self.dialogs[req.call_id] = dialog
            self._respond(req, addr, 100, "Trying")
            if self.on_invite is None:
                self._respond(req, addr, 486, "Busy Here", to_tag=dialog.local_tag)
                return
            task = asyncio.create_task(self.on_invite(IncomingCall(self, req, addr, dialog)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif method == "INVITE":  # re-INVITE (e.g. session refresh): accept, keep our media
            self._respond(req, addr, 200, "OK", to_tag=dialog.local_tag, body=dialog.local_sdp)
        elif method == "ACK":
            pending = self._answered.pop(req.call_id, None)
            if pending:
                pending[1].set()
        elif method == "BYE":
            self._respond(req, addr, 200, "OK")
            if dialog is not None:
                dialog.ended_by = dialog.ended_by or "remote"
                dialog.ended.set()
                self.dialogs.pop(req.call_id, None)
        elif method == "CANCEL":
            self._respond(req, addr, 200, "OK")
            if dialog is not None and dialog.answered_at is None:
                invite = SipMessage(f"INVITE {req.uri} SIP/2.0", [(k, v) for k, v in req.headers])
                invite.set("CSeq", f"{req.cseq[0]} INVITE")
                self._respond(invite, addr, 487, "Request Terminated", to_tag=dialog.local_tag)
                dialog.ended_by = "remote"
                dialog.ended.set()
                self.dialogs.pop(req.call_id, None)
        else:  # OPTIONS, NOTIFY, INFO...: acknowledge politely
            self._respond(req, addr, 200, "OK")

    async def _answer(self, incoming: IncomingCall, sdp: str) -> None:
        dialog = incoming.dialog
        if dialog.ended.is_set():
            raise TelephonyError("the caller cancelled before we answered")
        acked = asyncio.Event()
        dialog.local_sdp = sdp
        data = self._respond(incoming.request, incoming.addr, 200, "OK", to_tag=dialog.local_tag, body=sdp)
        self._answered[dialog.call_id] = (data, acked)
        dialog.answered_at = time.monotonic()
        interval = T1
        for _ in range(7):  # retransmit the 2xx until the ACK arrives (RFC 3261 §13.3.1.4)
            try:
                await asyncio.wait_for(acked.wait(), interval)
                return
            except asyncio.TimeoutError:
                self._send(data, incoming.addr)
                interval = min(interval * 2, 4.0)
        raise TelephonyError("no ACK for our 200 OK")
