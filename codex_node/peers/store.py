"""The known peers and the record sequence number, kept in the metadata store so a restart remembers them.

Keys: ``meta/peers/known/<peer id>`` → the record's ``spr:`` text; ``meta/peers/seq`` → the last sequence number
signed, as decimal text. Records read back are verified again (the store is not trusted more than a peer).
"""

from __future__ import annotations

import structlog

from codex_node.errors import PeerRecordError
from codex_node.peers.record import PeerRecord, decode_record
from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

KNOWN_PREFIX = "meta/peers/known/"
SEQ_KEY = "meta/peers/seq"


def next_seq(kv: KVStore, now: int) -> int:
    """A sequence number above every one signed before (kept), and at least ``now`` (a wiped store still grows)."""
    raw = kv.get(SEQ_KEY)
    last = int(raw) if raw is not None and raw.isdigit() else 0
    seq = max(last + 1, now)
    kv.put(SEQ_KEY, str(seq).encode("ascii"))
    return seq


def load_known(kv: KVStore, limit: int) -> list[PeerRecord]:
    """Up to ``limit`` remembered records; ones that no longer verify are dropped from the store."""
    records: list[PeerRecord] = []
    bad: list[str] = []
    for key, value in kv.iterate(KNOWN_PREFIX):
        try:
            record = decode_record(value.decode("ascii"))
        except (UnicodeDecodeError, PeerRecordError):
            bad.append(key)
            continue
        if KNOWN_PREFIX + record.peer_id != key:
            bad.append(key)
            continue
        records.append(record)
        if len(records) >= limit:
            break
    if bad:
        batch = kv.batch()
        for key in bad:
            batch.delete(key)
        kv.write(batch)
        log.warning("dropped unreadable peer records", count=len(bad))
    return records


def save_known(kv: KVStore, records: list[PeerRecord]) -> None:
    """Make the stored records exactly ``records``, in one batch."""
    wanted = {KNOWN_PREFIX + r.peer_id: r.text.encode("ascii") for r in records}
    batch = kv.batch()
    for key, value in kv.iterate(KNOWN_PREFIX):
        if key not in wanted:
            batch.delete(key)
        elif wanted[key] == value:
            del wanted[key]
    for key, value in wanted.items():
        batch.put(key, value)
    kv.write(batch)
