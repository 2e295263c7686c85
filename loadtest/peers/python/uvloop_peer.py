#!/usr/bin/env python3
# asyncio + uvloop: asyncio_peer.py's very program on uvloop's event loop (Debian python3-uvloop).
"""py-uvloop: asyncio_peer.py on uvloop."""
import asyncio_peer

if __name__ == "__main__":
    asyncio_peer.main(use_uvloop=True)
