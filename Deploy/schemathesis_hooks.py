"""Schemathesis hooks for Deploy/schemathesis.sh: check the relay's binary answers (docs/openapi/relay.yaml).

OpenAPI can only say "string, binary" of an id list or of blob frames; this deserializer checks their structure
and raises (which schemathesis reports as a failure) when an answer breaks it.
"""

import struct

import schemathesis

FRAME_HEADER = 44
MAX_RAW = 256 << 20


def _request_ids(case):
    body = getattr(case, "body", None) if case is not None else None
    if isinstance(body, (bytes, bytearray)) and len(body) % 32 == 0:
        return [bytes(body[i:i + 32]) for i in range(0, len(body), 32)]
    return None


@schemathesis.deserializer("application/octet-stream")
def relay_binary(ctx, response):
    body = response.content or b""
    path = ctx.operation.path
    if path == "/v1/chunks/missing":
        if len(body) % 32:
            raise ValueError(f"the id list answered is {len(body)} bytes long, not a multiple of 32")
        asked = _request_ids(ctx.case)
        if asked is not None:
            answered = [body[i:i + 32] for i in range(0, len(body), 32)]
            remaining = iter(asked)
            if not all(any(a == r for r in remaining) for a in answered):
                raise ValueError("the missing ids answered are not a subsequence of the ids asked")
    elif path == "/v1/blobs":
        offset, frames = 0, []
        while offset < len(body):
            if len(body) - offset < FRAME_HEADER:
                raise ValueError(f"blob frame at byte {offset} is truncated")
            kind, compression, _, stored, raw = struct.unpack_from("<BBHII", body, offset)
            frame_id = body[offset + 12:offset + 44]
            if kind not in (0, 1, 2) or compression not in (0, 1):
                raise ValueError(f"blob frame at byte {offset} has kind {kind} / compression {compression}")
            if stored > len(body) - offset - FRAME_HEADER or raw > MAX_RAW:
                raise ValueError(f"blob frame at byte {offset} claims {stored} stored / {raw} raw bytes")
            frames.append(frame_id)
            offset += FRAME_HEADER + stored
        asked = _request_ids(ctx.case)
        if asked is not None and frames != asked:
            raise ValueError(f"{len(frames)} frames answered for {len(asked)} ids asked, or not in request order")
    return body.hex()
