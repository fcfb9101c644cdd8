"""AMI over panoramisk: queue status for the human-transfer sentence, UserEvents for wallboards.

The bot uses AMI for two things only, and neither may ever hold up a caller:

* ``await ami.queue_status("borgerservice")`` — callers ahead, agents, expected wait, or None
  when AMI is down or slower than the caller's budget (500 ms by default);
* ``await ami.user_event("VoicebotTransfer", queue="borgerservice")`` — a wallboard event that is
  dropped, never raised, when AMI is down.

panoramisk 1.4 (the customer's named library) parses the protocol and matches replies to actions
by ActionID. What it lacks we do here (DESIGN.md §4): ``connect()`` returns before login, so we
wait for the Login reply ourselves; it never checks its pings, so we ping with a timeout; its
reconnect has no backoff and cannot be cancelled, so ``AmiClient`` owns reconnecting; and it may
resend unanswered actions after a reconnect, so every action we send is "forgettable" (a stale
queue status or a late wallboard event is worse than none). Closing the socket with replies
unread makes Asterisk drop queued actions (DESIGN.md §3), so we log off and read until Goodbye.

The bot logs in with ``Events: off``: it needs no event stream, only replies to its actions.
Events it listens for (``on_event``; today ``AgentConnect``, to record that a call the bot handed
back reached staff) come over a second session on their own account, ``<ami_user>-events``
(manager.conf: read=agent, no write), so the action account keeps only the user class.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import panoramisk
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from voicebot.config import AsteriskConfig
from voicebot.errors import TelephonyError

log = logging.getLogger("voicebot.ami")

# Never resent by panoramisk after a reconnect (it resends only actions not named here).
_FORGETTABLE = ("login", "logoff", "ping", "queuesummary", "queuestatus", "userevent")
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_RESERVED_HEADERS = {"action", "actionid", "userevent"}
EVENTS_USER_SUFFIX = "-events"  # the listening session's account: <ami_user>-events
RECORD_VARIABLE = "VOICEBOT_RECORD"  # the conversation id the bot leaves on a call it hands back
_RECORD_ID = re.compile(r"[0-9a-f]{32}")  # Recorder ids: uuid4().hex


class AmiUnreachable(TelephonyError):
    """No AMI session: the TCP connection failed, or Asterisk did not answer the Login."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected  # True: TCP was up, but no answer to Login in time


class AmiRefused(TelephonyError):
    """Asterisk refused the Login (wrong user or secret, or an ACL in manager.conf)."""

    retryable = False


# ---------------------------------------------------------------------------------------------
# queue status and what the bot says about it


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    """One queue as AMI ``QueueSummary`` reports it, plus our wait estimate."""

    queue: str
    callers: int           # callers waiting now: all of them are ahead of a caller joining now
    logged_in: int         # members whose device is not unavailable/invalid (an unregistered
                           # PJSIP member counts as not logged in)
    available: int         # of those, not busy and not paused
    holdtime_s: float      # Asterisk's rolling average wait before answer (3/4 old + 1/4 new)
    expected_wait_s: float | None
    talktime_s: float = 0.0  # Asterisk's rolling average talk time

    @classmethod
    def from_summary(cls, event: Mapping[str, Any]) -> QueueInfo:
        """Build from one ``Event: QueueSummary`` (header names as Asterisk 22 sends them)."""
        callers, logged_in, available = (_int(event.get(k)) for k in ("Callers", "LoggedIn", "Available"))
        holdtime, talktime = float(_int(event.get("HoldTime"))), float(_int(event.get("TalkTime")))
        return cls(queue=str(event.get("Queue", "")), callers=callers, logged_in=logged_in,
                   available=available, holdtime_s=holdtime,
                   expected_wait_s=expected_wait(callers, logged_in, available, holdtime, talktime),
                   talktime_s=talktime)


def expected_wait(callers: int, logged_in: int, available: int, holdtime_s: float,
                  talktime_s: float) -> float | None:
    """Seconds a caller joining the queue now can expect to wait; None when we cannot say.

    ``max(0, callers + 1 - available) * talktime_s / logged_in``: a free agent takes a caller at
    once; the rest (the callers ahead, plus this one) are served as busy agents finish, and
    ``logged_in`` agents finish one call per average talk time between them.

    Without any talk time yet (nothing answered since Asterisk started or the queue was reloaded),
    Asterisk's average hold time is used as it is, which is what app_queue's own
    ``announce-holdtime`` says. None when no agent is logged in (nobody will answer; the caller
    is told that instead) or when there is no history at all.

    Why not ``holdtime × (callers + 1) / agents``: the hold time already contains the queue that
    earlier callers met, so scaling it by today's queue counts the queue twice.
    """
    if logged_in <= 0:
        return None
    if available > callers:
        return 0.0
    if talktime_s > 0:
        return max(0, callers + 1 - available) * talktime_s / logged_in
    if holdtime_s > 0:
        return holdtime_s
    return None


def queue_sentence(info: QueueInfo | None) -> str | None:
    """The Danish sentence said before a transfer to a human queue; None: say nothing (AMI down)."""
    if info is None:
        return None
    if info.logged_in <= 0:
        return "Der er ingen medarbejdere ledige lige nu."
    if info.callers <= 0:
        ahead = "Der er ingen foran dig."
    elif info.callers == 1:
        ahead = "Der er én foran dig."
    else:
        ahead = f"Der er {info.callers} foran dig."
    wait = info.expected_wait_s
    if wait is None or (info.callers <= 0 and wait < 60):
        return ahead
    return f"{ahead} Den forventede ventetid er {wait_phrase(wait)}."


def wait_phrase(seconds: float) -> str:
    """Danish for a wait: 'under et minut', 'cirka et minut', 'cirka 4 minutter', 'over en time'.

    Whole minutes up to 10, then the nearest 5 minutes: an estimate should not sound precise.
    """
    if seconds < 60:
        return "under et minut"
    minutes = int(seconds / 60 + 0.5)
    if minutes >= 60:
        return "over en time"
    if minutes == 1:
        return "cirka et minut"
    if minutes > 10:
        minutes = min(55, int(minutes / 5 + 0.5) * 5)
    return f"cirka {minutes} minutter"


def _int(value: Any) -> int:
    try:
        return max(0, int(str(value).strip()))
    except ValueError:
        return 0


def record_of(event: Mapping[str, Any]) -> str | None:
    """The conversation id (``VOICEBOT_RECORD``) an event carries as a channel variable
    (manager.conf ``channelvars``): the caller's channel first, else the member's (``Dest``).
    None when absent or not a record id (a call the bot never handled)."""
    for header in ("ChanVariable", "DestChanVariable"):
        values = event.get(header)
        for item in values if isinstance(values, list) else [values] if values else []:
            name, _, value = str(item).partition("=")
            if name.strip().lstrip("_") == RECORD_VARIABLE and _RECORD_ID.fullmatch(value.strip()):
                return value.strip()
    return None


# ---------------------------------------------------------------------------------------------
# one AMI session


class _Manager(panoramisk.Manager):
    """panoramisk's Manager minus its own reconnect and unchecked pinger (``AmiClient`` does
    both), plus a ``lost`` future so waiters learn at once that the socket is gone."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        # called by the protocol when Asterisk closes the socket; panoramisk would reconnect here
        self._connected = False
        self.authenticated = False
        self.shutdown()

    def ping(self) -> None:
        # panoramisk's pinger sends Ping and never looks at the answer; AmiClient pings instead
        self.pinger = None

    def shutdown(self) -> None:
        """Close the socket (idempotent) and forget every unanswered action."""
        self.close()
        self.awaiting_actions.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def version(self) -> str:
        return getattr(self.protocol, "version", None) or "?"


async def open_session(config: AsteriskConfig, *, timeout: float = 3.0, events: str = "off",
                       user: str | None = None) -> _Manager:
    """Connect and log in within ``timeout`` seconds; raise AmiUnreachable or AmiRefused.

    ``events``: what Asterisk should stream to this session ("off" for the bot, "on" or a list of
    classes such as "user" for a listener). ``user``: another account than ``config.ami_user``
    (same secret).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    user = user or config.ami_user
    manager = _Manager(host=config.ami_host, port=config.ami_port, username=user,
                       secret=config.ami_secret, events=events, loop=loop,
                       forgetable_actions=_FORGETTABLE, ping_delay=10**6)
    where = f"{config.ami_host}:{config.ami_port}"
    try:
        connection = await asyncio.wait_for(
            loop.create_connection(AMIProtocol, config.ami_host, config.ami_port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise AmiUnreachable(f"{where}: cannot connect ({type(exc).__name__})", connected=False) from exc
    done = loop.create_future()
    done.set_result(connection)
    manager.connection_made(done)  # sends Login; its reply completes authenticated_future
    login = manager.authenticated_future
    try:
        await asyncio.wait({login, manager.lost}, timeout=max(0.0, deadline - loop.time()),
                           return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled while logging in: don't leave the socket open
        manager.shutdown()
        raise
    if not login.done():
        manager.shutdown()
        raise AmiUnreachable(f"{where}: no answer to Login", connected=True)
    reply = login.result()
    if not reply.success:
        manager.shutdown()
        raise AmiRefused(f"{where}: login as {user!r} refused ({reply.message or reply.response})")
    return manager


async def send(manager: _Manager, fields: Mapping[str, str], timeout: float) -> Message | list[Message] | None:
    """Send one action and wait at most ``timeout`` s for its reply (a list for event lists).

    None when the session is gone or the reply is late. A late action is forgotten, so panoramisk
    neither keeps it nor resends it after a reconnect.
    """
    if manager.lost.done() or manager.protocol is None:
        return None
    action = Action(dict(fields))
    reply = manager.send_action(action)
    await asyncio.wait({reply, manager.lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if reply.done() and not reply.cancelled():
        return reply.result()
    reply.cancel()
    manager.protocol.responses.pop(action.id, None)
    return None


async def log_off(manager: _Manager, timeout: float = 1.0) -> None:
    """Log off and read until Goodbye, then close: a bare close makes Asterisk drop actions."""
    try:
        reply = await send(manager, {"Action": "Logoff"}, timeout)
        if reply is None:
            log.debug("AMI gave no Goodbye in time; closing anyway")
        else:
            await asyncio.wait({manager.lost}, timeout=timeout)  # Asterisk closes after Goodbye
    finally:
        manager.shutdown()


async def check_login(config: AsteriskConfig, timeout: float = 3.0) -> str:
    """Log in once and off again (``voicebot doctor``); return AMI's protocol version."""
    manager = await open_session(config, timeout=timeout)
    await log_off(manager, timeout)
    return manager.version


# ---------------------------------------------------------------------------------------------
# the bot's client


class AmiClient:
    """One AMI session kept alive in the background: reconnects with backoff, pings with a timeout,
    and answers the bot within a bounded time or not at all."""

    def __init__(self, config: AsteriskConfig, *, ping_interval: float = 10.0, ping_timeout: float = 2.0,
                 login_timeout: float = 3.0, first_retry: float = 0.25, event_timeout: float = 0.5) -> None:
        self.config = config
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.login_timeout = login_timeout
        self.first_retry = first_retry
        self.retry_max = max(first_retry, config.reconnect_max_seconds)
        self.event_timeout = event_timeout
        self._manager: _Manager | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._listeners: dict[str, list[Callable[[Message], Any]]] = {}
        self._events_manager: _Manager | None = None
        self._events_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True only while a logged-in session is open."""
        return self._manager is not None and not self._manager.lost.done()

    async def start(self, wait: float = 1.0) -> bool:
        """Start connecting in the background; wait at most ``wait`` s for the first login."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._supervise(), name="ami")
        self._start_listening()
        return await self.wait_connected(wait)

    def on_event(self, name: str, callback: Callable[[Message], Any]) -> None:
        """Call ``callback(event)`` (a coroutine function or a plain one) for every AMI event
        ``name`` the events account may read. Its errors are logged, never raised; a session
        lost meanwhile loses the events of that time (nothing is replayed)."""
        self._listeners.setdefault(name, []).append(callback)
        if self._task is not None:
            self._start_listening()

    def _start_listening(self) -> None:
        if self._listeners and self._events_task is None:
            self._events_task = asyncio.create_task(self._supervise(listen=True), name="ami-events")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait at most ``timeout`` s for a logged-in session; return whether there is one."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self.connected

    async def close(self) -> None:
        """Log off cleanly and stop reconnecting."""
        self._closing = True
        manager, self._manager = self._manager, None
        listener, self._events_manager = self._events_manager, None
        self._up.clear()
        for session in (manager, listener):
            if session is not None:
                await log_off(session)
        for task in (self._task, self._events_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._events_task = None

    async def queue_status(self, queue: str, timeout: float = 0.5) -> QueueInfo | None:
        """The queue's state now, or None when AMI is down, slow or does not know the queue."""
        manager = self._manager
        if manager is None:
            return None
        reply = await send(manager, {"Action": "QueueSummary", "Queue": queue}, timeout)
        if reply is None:
            log.info("AMI queue status unavailable", extra={"queue": queue, "timeout": timeout,
                                                            "connected": self.connected})
            return None
        if not isinstance(reply, list):  # a single Response: an error such as permission denied
            log.warning("AMI QueueSummary failed", extra={"queue": queue, "reply": reply.message})
            return None
        for message in reply:
            if message.event == "QueueSummary" and message.queue.lower() == queue.lower():
                return QueueInfo.from_summary(message)
        log.warning("AMI does not know the queue (queues.conf?)", extra={"queue": queue})
        return None

    async def user_event(self, name: str, **fields: str) -> None:
        """Send a UserEvent for wallboards. Never raises; waits at most ``event_timeout`` s;
        dropped (logged at debug) when AMI is down."""
        manager = self._manager
        if manager is None:
            log.debug("AMI down; UserEvent dropped", extra={"event": name})
            return
        action = {"Action": "UserEvent", "UserEvent": _one_line(name)}
        for key, value in fields.items():
            if key.lower() in _RESERVED_HEADERS or not _HEADER_NAME.fullmatch(key):
                log.warning("UserEvent field name not allowed; dropped", extra={"event": name, "field": key})
                continue
            action[key] = _one_line(value)
        try:
            reply = await send(manager, action, self.event_timeout)
        except Exception:  # boundary: a wallboard event must never break a call
            log.exception("UserEvent failed", extra={"event": name})
            return
        if reply is None or isinstance(reply, list) or not reply.success:
            log.debug("UserEvent not confirmed", extra={"event": name,
                                                        "reply": getattr(reply, "message", None)})

    # -- background ----------------------------------------------------------------------------

    async def _supervise(self, listen: bool = False) -> None:
        """Connect, keep alive, reconnect with exponential backoff, until close(). ``listen``: the
        events session (its own account, ``Events: on``: the account's read classes decide)."""
        delay = self.first_retry
        failures = 0
        user = self.config.ami_user + EVENTS_USER_SUFFIX if listen else None
        while not self._closing:
            try:
                manager = await open_session(self.config, timeout=self.login_timeout,
                                             events="on" if listen else "off", user=user)
            except (AmiUnreachable, AmiRefused) as exc:
                failures += 1
                if isinstance(exc, AmiRefused):
                    delay = self.retry_max  # a wrong secret does not heal quickly; don't hammer
                # first failure at warning, the rest at debug: a down PBX must not flood the log
                (log.warning if failures == 1 else log.debug)(
                    "AMI not available", extra={"error": str(exc), "retry_in": round(delay, 2),
                                                "session": "events" if listen else "actions"})
            except Exception:  # task boundary: the supervisor must outlive any surprise
                failures += 1
                log.exception("AMI connect failed unexpectedly")
            else:
                if self._closing:  # close() came while we were logging in
                    await log_off(manager)
                    break
                began = asyncio.get_running_loop().time()
                await (self._listen(manager) if listen else self._serve(manager))
                failures = 0
                if asyncio.get_running_loop().time() - began > self.ping_interval:
                    delay = self.first_retry  # a session that lasted resets the backoff; a flapping one doesn't
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def _serve(self, manager: _Manager) -> None:
        """Hold one session until it is lost or stops answering pings."""
        self._manager = manager
        self._up.set()
        log.info("AMI connected", extra={"host": self.config.ami_host, "port": self.config.ami_port,
                                         "version": manager.version})
        try:
            await self._keep_alive(manager)
        finally:
            if self._manager is manager:
                self._manager = None
                self._up.clear()
            if not self._closing:
                manager.shutdown()

    async def _listen(self, manager: _Manager) -> None:
        """Hold the events session: hand each listened-for event to its callbacks."""
        self._events_manager = manager
        for name, callbacks in self._listeners.items():
            for callback in callbacks:
                manager.register_event(name, self._guarded(name, callback))
        log.info("AMI events session connected", extra={"user": manager.config["username"],
                                                        "events": sorted(self._listeners)})
        try:
            await self._keep_alive(manager)
        finally:
            if self._events_manager is manager:
                self._events_manager = None
            if not self._closing:
                manager.shutdown()

    @staticmethod
    def _guarded(name: str, callback: Callable[[Message], Any]) -> Callable[[_Manager, Message], Any]:
        async def run(_manager: _Manager, event: Message) -> None:
            try:
                result = callback(event)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # boundary: a listener must not break the session
                log.exception("AMI event listener failed", extra={"event": name})
        return run

    async def _keep_alive(self, manager: _Manager) -> None:
        """Until the session is lost, closed, or stops answering pings."""
        while not self._closing:
            await asyncio.wait({manager.lost}, timeout=self.ping_interval)
            if manager.lost.done():
                if not self._closing:
                    log.warning("AMI connection lost; reconnecting")
                return
            if await send(manager, {"Action": "Ping"}, self.ping_timeout) is None and not manager.lost.done():
                log.warning("AMI did not answer Ping; reconnecting", extra={"timeout": self.ping_timeout})
                return


def _one_line(value: object) -> str:
    """A header value: CR/LF would end the header and let text inject AMI actions."""
    return re.sub(r"[\r\n]+", " ", str(value))
