"""The HTTP channel: Twisted's, without the quadratic copy of big reads in header mode.

Twisted's :class:`~twisted.protocols.basic.LineReceiver` splits its whole buffer once per
header line.  When a read brings the headers *and* a large body (keep-alive connections read
up to :data:`dwdaemon.web.bodies.READ_SIZE` at once), every header line copies the body again:
a STOW-RS request of 512 KB with ten headers copied 5 MB on the reactor thread.  This channel
hands the head (up to the blank line) to the parser first and the body after it, so the body
is copied once.
"""

from __future__ import annotations

from twisted.web import http

__all__ = ["HTTPChannel", "HEAD_SPLIT_MIN"]

#: Reads at least this large are split at the end of the request head.
HEAD_SPLIT_MIN = 16 * 1024


class HTTPChannel(http.HTTPChannel):
    """:class:`twisted.web.http.HTTPChannel` feeding the head and the body of a read apart."""

    def dataReceived(self, data: bytes) -> None:
        if self.line_mode and not self._busyReceiving and len(data) >= HEAD_SPLIT_MIN:
            end = data.find(b"\r\n\r\n", 0, self.totalHeadersSize + 4096)
            if end >= 0:
                cut = end + 4
                super().dataReceived(data[:cut])
                transport = self.transport
                if transport is not None and transport.disconnecting:
                    return  # a bad request was answered: drop the rest, as Twisted does
                data = data[cut:]
                if not data:
                    return
        super().dataReceived(data)
