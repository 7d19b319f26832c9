"""Side effects once across server replicas: claim an effect in a KV bucket before doing it.

N servers on one stream all see the same pending alert; each would send it. Before sending, a
server *claims* the effect — ``$KV.rs_claims.<key>`` published with
``Nats-Expected-Last-Subject-Sequence: 0`` (create-if-absent, as the path claims of
:meth:`runstream.broker.miniclient.MiniNats.claim_path`): JetStream accepts exactly one claim per
key, so exactly one server sends.

A claim whose owner died before recording the outcome would hold the effect forever, so a claim
older than ``stale_after`` seconds may be taken over (a compare-and-set on the claim's own
sequence: again only one taker wins). The effect may then happen twice — once before the crash,
once after — which is the at-least-once that a sink (a webhook, an email) can give anyway.
"""

from __future__ import annotations

import json
import time
from typing import Any

from runstream.broker.names import encode_token

__all__ = ["CLAIMS_BUCKET", "ERR_WRONG_LAST_SEQUENCE", "Claims", "claim_subject"]

CLAIMS_BUCKET = "rs_claims"
"""The KV bucket of claims (created by :func:`runstream.broker.streams.ensure_streams`)."""
ERR_WRONG_LAST_SEQUENCE = 10071


def claim_subject(*parts: str) -> str:
    """The KV subject of one claim: each part encoded as a key token (pure)."""
    return f"$KV.{CLAIMS_BUCKET}." + ".".join(encode_token(p) for p in parts)


class Claims:
    """Claims of one server process.

    Args:
        js: a nats-py JetStream context.
        owner: who claims (the server's name and a random token of this process): a claim of our
            own whose acknowledgement was lost is recognised as ours.
        stale_after: seconds after which another owner's claim may be taken over.
        clock: epoch time.
    """

    def __init__(self, js: Any, owner: str, *, stale_after: float = 120.0, clock: Any = time.time) -> None:
        self.js = js
        self.owner = owner
        self.stale_after = stale_after
        self.clock = clock

    async def claim(self, *key: str) -> bool:
        """True when this owner holds the claim of ``key`` now (it may act), False when another
        owner holds it. Broker errors propagate (the caller retries later)."""
        from nats.js.errors import APIError

        subject = claim_subject(*key)
        body = json.dumps({"by": self.owner, "at": self.clock()}).encode()
        try:
            await self.js.publish(subject, body, headers={"Nats-Expected-Last-Subject-Sequence": "0"})
            return True
        except APIError as e:
            if e.err_code != ERR_WRONG_LAST_SEQUENCE:
                raise
        held = await self.js.get_last_msg(f"KV_{CLAIMS_BUCKET}", subject, direct=True)
        try:
            info = json.loads(held.data or b"{}")
        except ValueError:
            info = {}
        if info.get("by") == self.owner:
            return True  # ours: the first publish's acknowledgement was lost
        if self.clock() - float(info.get("at") or 0.0) < self.stale_after:
            return False
        try:  # its owner died before acting: take it over, if nobody did first
            await self.js.publish(subject, body, headers={"Nats-Expected-Last-Subject-Sequence": str(held.seq)})
        except APIError as e:
            if e.err_code == ERR_WRONG_LAST_SEQUENCE:
                return False
            raise
        return True
