"""Emulated ZKTeco terminals: the UDP/TCP servers and the protocol that speak for a device.

The device model is `clockd.sim.device`; how a misbehaving terminal sends is
`clockd.sim.hostile`; requests are answered by a table of handlers (command -> handler) that
use the device's public methods only.

Used by `clockd simulate`, the demo, the benchmarks and the tests, so a poller can be run
against something that answers byte for byte like a village terminal, faults included.

Build devices, add them to one server, start it::

    device = EmulatedDevice("CKD0000000001", attendance_record_size=40, comm_key=0)
    device.add_user("1001", "张三")
    device.add_punch("1001", datetime(2026, 11, 16, 8, 1))
    with EmulatorServer() as server:                 # one asyncio loop in one thread
        endpoint = server.add(device, host="127.0.0.1", port=0, transport="tcp")
        ...  # talk to ("127.0.0.1", endpoint.port)

or `server.run_until_signal(on_ready=...)` to serve in the foreground until SIGTERM/SIGINT.

Behaviour worth knowing, chosen to match real terminals:

- One client session per device at a time. While a session is live, another client's
  CMD_CONNECT is answered CMD_ACK_ERROR (pyzk: "Invalid response: Can't connect"). A session
  ends on CMD_EXIT, when its TCP connection closes, on a failed CMD_AUTH, or when another
  client connects after it has been idle for `session_timeout` seconds (10 by default; UDP
  clients that vanish without CMD_EXIT, e.g. a killed poller, hold the device until then).
- While disabled (CMD_DISABLEDEVICE) the device records no punches: `add_punch` returns
  False, as a terminal showing "working..." ignores fingers. The device enables itself again
  when the session ends, so a poller that dies mid-window cannot leave it dead.
- A punch by a user ID that is not enrolled enrols it first (with no name): a real terminal
  only records enrolled users.
- Commands from a client without an authenticated session get CMD_ACK_UNAUTH.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from clockd.signals import SignalLatch
from clockd.sim import hostile
from clockd.sim.device import EmulatedDevice, Faults, PunchFeed, Session
from clockd.sim.hostile import Action
from clockd.zk import wire
from clockd.zk.wire import Cmd

__all__ = [
    "EmulatedDevice",
    "EmulatorServer",
    "Endpoint",
    "Faults",
    "PunchFeed",
    "Transport",
]

log = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]
_U32 = struct.Struct("<I")


@dataclass(slots=True)
class _Response:
    packets: list[bytes]
    action: Action = Action.REPLY


@dataclass(frozen=True, slots=True)
class _Request:
    """One request of an authenticated session, as a handler sees it."""

    device: EmulatedDevice
    packet: wire.Packet
    session: Session
    udp: bool

    def reply(self, code: int, data: bytes = b"") -> _Response:
        packet = wire.build_packet(code, self.session.session_id, self.packet.reply_id, data)
        return _Response([packet])


_NO_REPLY = _Response([])
_Handler = Callable[[_Request], _Response]


class _Terminal:
    """The protocol side of one device: turns a request packet into reply packets.

    CONNECT and AUTH open a session; every other command of an authenticated session goes to
    its handler in `_HANDLERS` (an unknown command gets ACK_UNKNOWN, as firmware answers).
    """

    def __init__(self, device: EmulatedDevice) -> None:
        self.device = device

    def handle(
        self, raw: bytes, peer: Hashable, push: Callable[[bytes], None], udp: bool
    ) -> _Response:
        try:
            packet = wire.parse_packet(raw)
        except wire.WireError as exc:
            log.warning("%s: ignoring %s", self.device.serial, exc)
            return _NO_REPLY
        if not packet.checksum_ok:
            log.info(
                "%s: bad checksum on command %d (accepted)", self.device.serial, packet.command
            )
        if packet.command == Cmd.ACK_OK:  # the client acknowledging an event
            return _NO_REPLY
        with self.device.lock:
            return self._dispatch(packet, peer, push, udp)

    def _dispatch(
        self, packet: wire.Packet, peer: Hashable, push: Callable[[bytes], None], udp: bool
    ) -> _Response:
        device = self.device
        now = time.monotonic()

        def reply(code: int, session_id: int = packet.session_id) -> _Response:
            return _Response([wire.build_packet(code, session_id, packet.reply_id)])

        session = device.session
        if packet.command == Cmd.CONNECT:
            if (
                session is not None
                and session.peer != peer
                and now - session.last_seen < device.session_timeout
            ):
                log.info("%s: busy, refusing a second session", device.serial)
                return reply(Cmd.ACK_ERROR, session_id=0)
            session = device.open_session(peer, push, now)
            code = Cmd.ACK_UNAUTH if device.comm_key else Cmd.ACK_OK
            return reply(code, session_id=session.session_id)
        if session is None or session.peer != peer:
            return reply(Cmd.ACK_UNAUTH)
        session.last_seen = now
        request = _Request(device, packet, session, udp)
        if packet.command == Cmd.AUTH:
            return _auth(request)
        if not session.authenticated:
            return reply(Cmd.ACK_UNAUTH)
        handler = _HANDLERS.get(packet.command, _unknown)
        return handler(request)


def _auth(request: _Request) -> _Response:
    device, session = request.device, request.session
    if not device.comm_key or wire.verify_commkey(
        request.packet.data[:4], device.comm_key, session.session_id
    ):
        session.authenticated = True
        return request.reply(Cmd.ACK_OK)
    log.info("%s: wrong comm key", device.serial)
    device.end_session()
    return request.reply(Cmd.ACK_UNAUTH)


def _unknown(request: _Request) -> _Response:
    return request.reply(Cmd.ACK_UNKNOWN)


def _ok(request: _Request) -> _Response:
    return request.reply(Cmd.ACK_OK)


def _exit(request: _Request) -> _Response:
    request.device.end_session()
    return request.reply(Cmd.ACK_OK)


def _enable(request: _Request) -> _Response:
    request.device.set_enabled(request.packet.command == Cmd.ENABLEDEVICE)
    return request.reply(Cmd.ACK_OK)


def _version(request: _Request) -> _Response:
    return request.reply(Cmd.ACK_OK, request.device.firmware.encode() + b"\x00")


def _option(request: _Request) -> _Response:
    key = wire.parse_option_request(request.packet.data)
    value = request.device.options().get(key.lower())
    if value is None:
        return request.reply(Cmd.ACK_ERROR)
    return request.reply(Cmd.ACK_OK, wire.option_reply(key, value))


def _free_sizes(request: _Request) -> _Response:
    raw = request.device.faults.free_sizes
    if raw is None:
        raw = wire.encode_free_sizes(request.device.free_sizes())
    return request.reply(Cmd.ACK_OK, raw)


def _get_time(request: _Request) -> _Response:
    device = request.device
    if device.faults.clock_value is not None:
        return request.reply(Cmd.ACK_OK, _U32.pack(device.faults.clock_value))
    try:
        return request.reply(Cmd.ACK_OK, _U32.pack(wire.encode_time(device.now())))
    except wire.InvalidTimeError:
        return request.reply(Cmd.ACK_ERROR)


def _set_time(request: _Request) -> _Response:
    try:
        value = _U32.unpack_from(request.packet.data)[0]
        request.device.set_clock(wire.decode_time(value))
    except (struct.error, wire.InvalidTimeError):
        return request.reply(Cmd.ACK_ERROR)
    return request.reply(Cmd.ACK_OK)


def _clear_log(request: _Request) -> _Response:
    request.device.clear_attendance()
    return request.reply(Cmd.ACK_OK)


def _free_data(request: _Request) -> _Response:
    request.session.buffer = None
    return request.reply(Cmd.ACK_OK)


def _reg_event(request: _Request) -> _Response:
    data = request.packet.data
    request.session.events = _U32.unpack_from(data)[0] if len(data) >= 4 else 0
    return request.reply(Cmd.ACK_OK)


def _prepare_buffer(request: _Request) -> _Response:
    device, session = request.device, request.session
    try:
        inner, fct, _ext = wire.parse_prepare_buffer(request.packet.data)
    except wire.WireError:
        return request.reply(Cmd.ACK_ERROR)
    if inner == Cmd.ATTLOG_RRQ:
        data = device.log_buffer()
    elif inner == Cmd.USERTEMP_RRQ and fct == wire.FCT_USER:
        data = device.users_buffer()
    elif inner == Cmd.DB_RRQ and fct == wire.FCT_FINGERTMP:
        data = wire.size_prefixed(b"")  # no fingerprint templates are emulated
    else:
        return request.reply(Cmd.ACK_ERROR)
    declared = device.faults.declared_size
    if len(data) <= wire.MAX_DIRECT_DATA and declared is None:
        return request.reply(Cmd.DATA, data)
    session.buffer = data
    return request.reply(
        Cmd.ACK_OK, wire.prepare_buffer_ready(len(data) if declared is None else declared)
    )


def _read_buffer(request: _Request) -> _Response:
    device, session, udp = request.device, request.session, request.udp
    buffer = session.buffer
    try:
        start, size = wire.parse_read_buffer(request.packet.data)
    except wire.WireError:
        start, size = -1, 0
    faults = device.faults
    if faults.declared_size is not None and buffer is not None:
        buffer = buffer.ljust(min(start + size, len(buffer) + (1 << 20)), b"\x00")
    if buffer is None or start < 0 or size <= 0 or start >= len(buffer):
        return request.reply(Cmd.ACK_ERROR)
    dropping = faults.drop_after_chunks is not None and session.chunks >= faults.drop_after_chunks
    if dropping and not faults.drop_mid_packet:
        log.info("%s: dropping the session after %d chunks", device.serial, session.chunks)
        device.end_session()
        return _Response([], Action.DROP)
    session.chunks += 1
    piece = buffer[start : start + size]
    limit = wire.MAX_UDP_DATA if udp else device.data_frame
    announced = len(piece) if faults.declared_size is None else faults.declared_size
    packets = request.reply(Cmd.PREPARE_DATA, wire.prepare_data_payload(announced)).packets
    if udp and faults.flood_seconds > 0:
        return _Response(packets, Action.FLOOD)
    for offset, length in wire.iter_chunks(len(piece), limit):
        packets += request.reply(Cmd.DATA, piece[offset : offset + length]).packets
        if dropping:
            log.info("%s: cutting chunk %d mid-packet", device.serial, session.chunks)
            device.end_session()
            return _Response(packets, Action.CUT)
    packets += request.reply(Cmd.ACK_OK).packets
    return _Response(packets)


_HANDLERS: dict[int, _Handler] = {
    Cmd.EXIT: _exit,
    Cmd.DISABLEDEVICE: _enable,
    Cmd.ENABLEDEVICE: _enable,
    Cmd.GET_VERSION: _version,
    Cmd.OPTIONS_RRQ: _option,
    Cmd.GET_FREE_SIZES: _free_sizes,
    Cmd.GET_TIME: _get_time,
    Cmd.SET_TIME: _set_time,
    Cmd.CLEAR_ATTLOG: _clear_log,
    Cmd.FREE_DATA: _free_data,
    Cmd.REG_EVENT: _reg_event,
    Cmd.PREPARE_BUFFER: _prepare_buffer,
    Cmd.READ_BUFFER: _read_buffer,
    Cmd.REFRESHDATA: _ok,
    Cmd.CANCELCAPTURE: _ok,
    Cmd.STARTVERIFY: _ok,
    Cmd.OPTIONS_WRQ: _ok,
}


class Endpoint:
    """One device served on one transport; `port` is the bound port once the server runs."""

    __slots__ = (
        "_listener",
        "_on_faults",
        "_spoofer",
        "_terminal",
        "_udp_task",
        "device",
        "host",
        "port",
        "transport",
    )

    def __init__(self, device: EmulatedDevice, host: str, port: int, transport: Transport) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.transport: Transport = transport
        self._listener: asyncio.Server | asyncio.DatagramTransport | None = None
        self._udp_task: asyncio.Task[None] | None = None
        self._on_faults: Callable[[], None] | None = None
        self._spoofer: socket.socket | None = None
        self._terminal = _Terminal(device)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __repr__(self) -> str:
        return f"Endpoint({self.device.serial!r}, {self.transport}://{self.host}:{self.port})"


class _UdpProtocol(asyncio.DatagramProtocol):
    """Queues datagrams so one device answers them in order, delays included."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class EmulatorServer:
    """Serves any number of emulated devices from one asyncio loop in a background thread.

    `add()` endpoints before or after `start()`; `stop()` (or leaving the `with` block)
    closes every listener and connection. One loop scales to hundreds of terminals.
    """

    def __init__(self) -> None:
        self._endpoints: list[Endpoint] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    def add(
        self,
        device: EmulatedDevice,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: Transport = "tcp",
    ) -> Endpoint:
        """Serve `device` on host:port (0: an ephemeral port, see `Endpoint.port`).

        A device may be added twice, once per transport; it keeps one session across both.
        When the server is running this binds at once and raises OSError if it cannot.
        """
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', not {transport!r}")
        endpoint = Endpoint(device, host, port, transport)
        if self._loop is not None:
            self._attach(endpoint)
            try:
                self._call(self._bind(endpoint))
            except BaseException:
                self._detach(endpoint)
                raise
        self._endpoints.append(endpoint)
        return endpoint

    def start(self) -> EmulatorServer:
        """Start the loop thread and bind every endpoint; returns once all listen."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="zk-emulator", daemon=True)
        self._thread.start()
        for endpoint in self._endpoints:
            self._attach(endpoint)
        try:
            self._call(self._bind_all())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close all listeners and connections and end the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        for endpoint in self._endpoints:
            self._detach(endpoint)
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = None
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_until_signal(
        self,
        on_ready: Callable[[], None] | None = None,
        signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    ) -> None:
        """Serve in the foreground until one of `signals` arrives (call from the main thread).

        `on_ready` runs once every endpoint listens (`clockd simulate` prints `ready` there).
        """
        with SignalLatch(signals) as latch:
            try:
                self.start()
                if on_ready is not None:
                    on_ready()
                latch.wait()
            finally:
                self.stop()

    # --- loop-thread machinery ------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _attach(self, endpoint: Endpoint) -> None:
        """Follow the device's `refuse` fault while this server runs."""

        def on_faults() -> None:
            self._sync_listener(endpoint)

        endpoint._on_faults = on_faults
        endpoint.device.watch_refuse(on_faults)

    def _detach(self, endpoint: Endpoint) -> None:
        if endpoint._on_faults is not None:
            endpoint.device.unwatch_refuse(endpoint._on_faults)
            endpoint._on_faults = None

    async def _bind_all(self) -> None:
        await asyncio.gather(*(self._bind(endpoint) for endpoint in self._endpoints))

    async def _bind(self, endpoint: Endpoint) -> None:
        if endpoint.device.faults.refuse or endpoint._listener is not None:
            return
        loop = asyncio.get_running_loop()
        if endpoint.transport == "tcp":
            # The callback returns a task, not a coroutine: Python 3.11's stream protocol
            # would otherwise log a spurious error for each connection cancelled at stop().
            server = await asyncio.start_server(
                lambda r, w: self._spawn(self._serve_tcp(endpoint, r, w)),
                endpoint.host,
                endpoint.port,
                reuse_address=True,
            )
            endpoint.port = server.sockets[0].getsockname()[1]
            endpoint._listener = server
            return
        protocol = _UdpProtocol()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, local_addr=(endpoint.host, endpoint.port)
        )
        endpoint.port = transport.get_extra_info("sockname")[1]
        endpoint._listener = transport
        endpoint._udp_task = self._spawn(self._serve_udp(endpoint, transport, protocol))

    async def _unbind(self, endpoint: Endpoint) -> None:
        spoofer, endpoint._spoofer = endpoint._spoofer, None
        if spoofer is not None:
            spoofer.close()
        listener, endpoint._listener = endpoint._listener, None
        if listener is not None:
            listener.close()
        task, endpoint._udp_task = endpoint._udp_task, None
        if task is not None:
            task.cancel()

    def _sync_listener(self, endpoint: Endpoint) -> None:
        """Open or close an endpoint's listener to follow the device's `refuse` fault."""
        loop = self._loop
        if loop is None:
            return
        if endpoint.device.faults.refuse:
            coroutine = self._unbind(endpoint)
        else:
            coroutine = self._bind(endpoint)
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        if threading.current_thread() is not self._thread:
            future.result()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _shutdown(self) -> None:
        for endpoint in self._endpoints:
            await self._unbind(endpoint)
        for writer in list(self._writers):
            writer.close()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve_tcp(
        self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        peer = object()

        def push(packet: bytes) -> None:
            loop.call_soon_threadsafe(_write_quietly, writer, wire.frame_tcp(packet))

        splitter = wire.TcpStreamSplitter()
        device = endpoint.device
        try:
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    break
                for raw in splitter.feed(data):
                    if device.faults.hang:
                        continue
                    response = endpoint._terminal.handle(raw, peer, push, udp=False)
                    if not await self._send_tcp(device, writer, response):
                        return
        except wire.FramingError as exc:
            log.warning("%s: closing connection: %s", device.serial, exc)
        except ConnectionError:
            pass
        except Exception:
            log.exception("%s: closing connection after an internal error", device.serial)
        finally:
            device.disconnected(peer)
            self._writers.discard(writer)
            writer.close()

    async def _send_tcp(
        self, device: EmulatedDevice, writer: asyncio.StreamWriter, response: _Response
    ) -> bool:
        """Write one response, a packet per write; False when the connection must close."""
        if response.action is Action.DROP:
            return False
        if not response.packets:
            return True
        framed = [wire.frame_tcp(packet) for packet in response.packets]
        packets = await hostile.outgoing(device, framed, response.action)
        if device.faults.drip_seconds > 0 and len(packets) > 1:
            await hostile.drip(writer, packets, device.faults.drip_seconds)
            return response.action is not Action.CUT
        if device.faults.write_pieces > 0:
            await hostile.in_pieces(writer, packets, device.faults.write_pieces)
            return response.action is not Action.CUT
        for packet in packets:
            writer.write(packet)
        await writer.drain()
        return response.action is not Action.CUT

    def _spoofer(self, endpoint: Endpoint) -> socket.socket:
        """A second UDP socket on the endpoint's host: replies from a port nobody asked."""
        if endpoint._spoofer is None:
            spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            spoofer.bind((endpoint.host, 0))
            spoofer.setblocking(False)
            endpoint._spoofer = spoofer
        return endpoint._spoofer

    async def _serve_udp(
        self, endpoint: Endpoint, transport: asyncio.DatagramTransport, protocol: _UdpProtocol
    ) -> None:
        device = endpoint.device
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await protocol.queue.get()
            if device.faults.hang:
                continue

            def push(packet: bytes, addr: tuple[str, int] = addr) -> None:
                loop.call_soon_threadsafe(transport.sendto, packet, addr)

            try:
                response = endpoint._terminal.handle(data, ("udp", addr), push, udp=True)
                if response.packets:
                    send: Callable[[bytes, tuple[str, int]], object] = transport.sendto
                    if device.faults.spoof_udp:
                        send = functools.partial(hostile.send_from, self._spoofer(endpoint))

                    for packet in await hostile.outgoing(device, response.packets, response.action):
                        send(packet, addr)
                    if response.action is Action.FLOOD:
                        await hostile.flood(device, response.packets[0], send, addr)
            except Exception:  # one bad request must not silence the terminal
                log.exception("%s: error answering %s", device.serial, addr)


def _write_quietly(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send a pushed event unless the connection has gone meanwhile."""
    if not writer.is_closing():
        with contextlib.suppress(ConnectionError):
            writer.write(data)
