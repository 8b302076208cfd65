"""Low-latency HLS (RFC 8216bis, Apple's low-latency extensions): a streaming encoder
that turns frames into CMAF parts as they arrive (`encoder`), the parts' bookkeeping
(`parts`), the LL-HLS media playlist (`playlist`) and a checker of the rules a parser
can check (`validate`). No Ray, no database: `actors.live_encoder` wires it."""
