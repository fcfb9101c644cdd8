"""Real SIP calls through the cluster's Kamailio (asterisk/cluster call), and which node took each.

Run inside the cluster's LAN namespace (``asterisk/cluster call`` does:
``ip netns exec kkv-lan python -m tests.integration.cluster_calls --proxy 10.77.0.2 --host 10.77.0.1``).
Each call: INVITE to the main number at the proxy, the answer, RTP both ways (the caller streams
silence, as a phone does) until it has heard ``--hear`` seconds of the node's audio (the
fail-open route's message when no bot is connected), then BYE. The node is named by the
``Server`` header of its 200 OK (``kk-voicebot node1``: asterisk/cluster sets each node's SIP
user agent) and by the address in its Contact.

The project's SIP caller sends every request to its server and keeps no route set (Asterisk
never record-routes). Behind a record-routing proxy a UA must send ACK and BYE with the recorded
route (RFC 3261 §12.1.2), as a real SBC or phone does: ``ProxiedUA`` adds that, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

from voicebot.errors import TelephonyError
from voicebot.sip.caller import PCMU, CallReport, Listener, LiveCall, StampedEndpoint
from voicebot.sip.message import SipMessage, audio_sdp, sdp_audio_address, uri_of
from voicebot.sip.ua import Dialog, SipUA
from voicebot.telephony.rtp import FRAME_MS

MAIN_NUMBER = "33663366"


def _split_routes(values: list[str]) -> list[str]:
    """Record-Route header values (each may list several, comma-separated) → one entry each."""
    out: list[str] = []
    for value in values:
        out += [part.strip() for part in re.findall(r"<[^>]*>[^,]*|[^,]+", value) if part.strip()]
    return out


class ProxiedUA(SipUA):
    """``SipUA`` that keeps the route set of its calls' 2xx and routes ACK and BYE through it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.route_sets: dict[str, list[str]] = {}

    def _on_response(self, msg: SipMessage) -> None:
        if msg.method == "INVITE" and 200 <= msg.status < 300 and msg.call_id not in self.route_sets:
            # the UAC's route set is the Record-Route list in reverse order (RFC 3261 §12.1.2)
            self.route_sets[msg.call_id] = list(reversed(_split_routes(msg.get_all("record-route"))))
        super()._on_response(msg)

    def _request(self, method: str, uri: str, dialog: Dialog, cseq: int, body: str = "",
                 extra: list[tuple[str, str]] | None = None) -> SipMessage:
        req = super()._request(method, uri, dialog, cseq, body, extra)
        if dialog.remote_tag:  # in the dialog: ACK of the 2xx, BYE
            req.headers += [("Route", route) for route in self.route_sets.get(dialog.call_id, [])]
        return req  # sent to the proxy (the UA's server), the first hop of the route set


def node_of(resp: SipMessage) -> str:
    """``node1`` from ``Server: kk-voicebot node1``; '' when the reply names no node."""
    m = re.search(r"kk-voicebot (node\d+)", resp.get("server") or resp.get("user-agent"))
    return m.group(1) if m else ""


async def one_call(proxy: str, host: str, number: str, hear_s: float, max_s: float) -> dict:
    ua = await ProxiedUA("citizen", "", (proxy, 5060), host).start()
    listener = Listener()
    endpoint = await StampedEndpoint.open(host, PCMU, listener.on_frame)
    listener.clock = endpoint.arrival
    t0 = time.monotonic()
    result: dict = {"answered": False, "status": 0, "reason": "", "node": "", "contact": "",
                    "setup_ms": None, "heard_s": 0.0, "hangup_by": "", "routed": False}
    try:
        try:
            resp, dialog = await ua.invite(number, audio_sdp(host, endpoint.local_address[1]), timeout=max_s)
        except TelephonyError as exc:
            result["reason"] = str(exc)
            return result
        result.update(status=resp.status, reason=resp.start.split(" ", 2)[-1],
                      setup_ms=round((time.monotonic() - t0) * 1000, 1), node=node_of(resp),
                      contact=uri_of(resp.get("contact")))
        if not 200 <= resp.status < 300:
            return result
        result["answered"] = True
        result["routed"] = bool(ua.route_sets.get(dialog.call_id))
        listener.t0 = dialog.answered_at
        endpoint.remote = sdp_audio_address(dialog.remote_sdp)
        call = LiveCall(ua, dialog, endpoint, listener, CallReport(True, resp.status, "OK"))
        call.start_media()
        try:
            deadline = time.monotonic() + max_s
            while not call.ended and time.monotonic() < deadline:
                if sum(loud for _, loud in listener.loud) * FRAME_MS / 1000 >= hear_s:
                    break
                await call.sleep(0.02)
        finally:
            await call.stop_media()
            if not call.ended:
                await call.hangup()
        result["hangup_by"] = "caller" if dialog.ended_by == "local" else "node"
        result["heard_s"] = round(sum(loud for _, loud in listener.loud) * FRAME_MS / 1000, 2)
        return result
    finally:
        endpoint.close()
        ua.close()


async def place(proxy: str, host: str, number: str, count: int, parallel: int, hear_s: float,
                max_s: float) -> list[dict]:
    slots = asyncio.Semaphore(parallel)

    async def limited(i: int) -> dict:
        async with slots:
            result = await one_call(proxy, host, number, hear_s, max_s)
            return {"call": i + 1, **result}

    return list(await asyncio.gather(*(limited(i) for i in range(count))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="asterisk/cluster call", description=__doc__.split("\n\n")[0])
    p.add_argument("--proxy", required=True, help="Kamailio's address (port 5060)")
    p.add_argument("--host", required=True, help="this namespace's address: SIP and RTP bind here")
    p.add_argument("--number", default=MAIN_NUMBER)
    p.add_argument("--count", type=int, default=1, help="calls to place (default 1)")
    p.add_argument("--parallel", type=int, default=1, help="calls at a time (default 1: one after the other)")
    p.add_argument("--hear", type=float, default=0.5, help="hang up after hearing this many seconds of audio")
    p.add_argument("--timeout", type=float, default=15.0, help="give up on a call after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON list of the calls")
    args = p.parse_args(argv)
    results = asyncio.run(place(args.proxy, args.host, args.number, args.count, max(1, args.parallel),
                                args.hear, args.timeout))
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            what = (f"answered by {r['node'] or '?'} ({r['contact']}) in {r['setup_ms']} ms, heard {r['heard_s']} s"
                    if r["answered"] else f"not answered: {r['status']} {r['reason']}")
            print(f"call {r['call']}: {what}")
    return 0 if all(r["answered"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
