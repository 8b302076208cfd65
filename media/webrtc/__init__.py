"""WHIP ingest's media side: a browser's WebRTC publish (aiortc) re-encoded into the
same live FLV an RTMP publish produces, so one pipeline serves both.

Modules, innermost first: `avc` (H.264 and AAC as FLV tag bodies), `clock` (a
track's frame times on the publish's millisecond timeline), `frames` (decoded
frames → H.264/AAC tags, PyAV), `pending` (the frames waiting for an encoder
thread, the oldest dropped past a bound), `ice` (which addresses and ICE servers
aiortc uses), `sdp` (the offer checks and negotiation WHIP and WHEP share), `whip` (one
publish: the offer, the answer, the peer connection, its media into an
`IngestSession`). Playback (WHEP) the other way: `hub` (a stream's
WebRTC-ready packets fanned out to viewers), `tap` (the segmenter's packets made
WebRTC-ready once per stream), `rung` (an LL-HLS rung's parts as WebRTC video),
`whep` (one viewer's peer connection). No Ray here.
"""

from media.webrtc.frames import FlvTag, MediaEncoder
from media.webrtc.hub import MediaPacket, PacketHub, Subscription
from media.webrtc.ice import IceServer, use_host_addresses
from media.webrtc.sdp import InvalidOfferError
from media.webrtc.tap import SourceTap
from media.webrtc.whep import WhepConfig, WhepPlayback, check_play_offer
from media.webrtc.whip import WhipConfig, WhipPublish, check_offer

__all__ = [
    "FlvTag",
    "IceServer",
    "InvalidOfferError",
    "MediaEncoder",
    "MediaPacket",
    "PacketHub",
    "SourceTap",
    "Subscription",
    "WhepConfig",
    "WhepPlayback",
    "WhipConfig",
    "WhipPublish",
    "check_offer",
    "check_play_offer",
    "use_host_addresses",
]
