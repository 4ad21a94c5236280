"""How a misbehaving terminal sends: reply delays, corrupt or cut replies, drip-feeding,
endless UDP streams and replies from a spoofed port (see `Faults` for each switch).

The servers in `clockd.sim.emulator` send every reply through here, so a test can make any
emulated terminal as slow, broken or hostile as the ones the poller must survive
(docs/protocol.md, "A terminal is untrusted input").
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
from collections.abc import Callable

from clockd.sim.device import EmulatedDevice
from clockd.zk import wire
from clockd.zk.wire import Cmd

__all__ = ["Action", "drip", "flood", "in_pieces", "outgoing", "send_from"]


class Action(enum.Enum):
    """What a server does with a reply besides sending its packets."""

    REPLY = "reply"
    DROP = "drop"  # close the connection without answering
    CUT = "cut"  # send the packets with the last one cut in half, then close
    FLOOD = "flood"  # after the packets, DATA datagrams without end (faults.flood_seconds)


def send_from(sock: socket.socket, packet: bytes, addr: tuple[str, int]) -> None:
    """Send from another socket than the one the client talks to (a spoofed source)."""
    with contextlib.suppress(BlockingIOError):
        sock.sendto(packet, addr)


async def flood(
    device: EmulatedDevice,
    first: bytes,
    send: Callable[[bytes, tuple[str, int]], object],
    addr: tuple[str, int],
) -> None:
    """DATA datagrams of the reply's session, as fast as the loop allows, for a while."""
    header = wire.parse_packet(first)
    packet = wire.build_packet(Cmd.DATA, header.session_id, header.reply_id, b"\xee" * 1024)
    loop = asyncio.get_running_loop()
    end = loop.time() + device.faults.flood_seconds
    sent = 0
    while loop.time() < end and device.faults.flood_seconds > 0:
        with contextlib.suppress(OSError):
            send(packet, addr)
        sent += 1
        if sent % 16 == 0:
            await asyncio.sleep(0.001)


async def outgoing(device: EmulatedDevice, packets: list[bytes], action: Action) -> list[bytes]:
    """The packets to send after the reply-delay, corrupt-reply and mid-packet-cut faults."""
    delay = device.faults.reply_delay
    if delay > 0:
        await asyncio.sleep(delay)
    if device.take_corruption():
        return [packets[0][: len(packets[0]) // 2]]
    if action is Action.CUT:
        return [*packets[:-1], packets[-1][: len(packets[-1]) // 2]]
    return packets


async def drip(writer: asyncio.StreamWriter, packets: list[bytes], seconds: float) -> None:
    """The first packet and the next one's header whole, then one byte every `seconds`:
    every read is answered well within any per-read timeout, and the answer never ends."""
    rest = b"".join(packets[1:])
    writer.write(packets[0] + rest[:16])
    for byte in rest[16:]:
        await writer.drain()
        await asyncio.sleep(seconds)
        writer.write(bytes((byte,)))
    await writer.drain()


async def in_pieces(writer: asyncio.StreamWriter, packets: list[bytes], size: int) -> None:
    """The reply in `size`-byte writes a moment apart: the reader's receives end mid-packet."""
    data = b"".join(packets)
    for start in range(0, len(data), size):
        writer.write(data[start : start + size])
        await writer.drain()
        await asyncio.sleep(0.0005)
