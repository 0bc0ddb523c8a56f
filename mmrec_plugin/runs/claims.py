"""Claims on grid combinations in a shared results store, with leases.

Several runs of the same grid may share one results folder (two terminals, a scheduler
that starts the same job twice, a Ray driver next to a plain run). Before a run trains a
combination it *claims* it in the store; the others skip it and take the next. Every
decision is one LMDB write transaction (:meth:`mmrec_plugin.store.Store.transact`; LMDB
admits one writer at a time, across processes), so two runs can never both claim the same
combination.

A claim (``claim/<key>``) names its owner (host, boot id, pid and that process's start
time, and a random token per :class:`Claims`) and carries a lease: an expiry time that a
background thread renews every ``lease / 4`` seconds while the owner lives. A claim is
*stale*, and the next run that looks takes it over, when

- its lease has expired (the owner died or hangs without renewing, on any host), or
- its owner is a process on this machine that no longer exists (checked through
  ``/proc``: pid and start time, so a reused pid does not count), so a run killed with
  ``kill -9`` frees its combination at once rather than after the lease.

Committing a finished combination re-checks the claim, moves its model file into place,
writes ``run/<key>`` and drops the claim, all in one transaction: a run that lost its claim
(paused past its lease while another run trained and committed the combination) changes
nothing. LMDB's locks work between processes of ONE machine: runs on several machines must
not share a results folder over a network file system; they run as workers of one Ray
driver instead (``--workers``/``--ray-address``), which is the only writer.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Dict, Optional

logger = logging.getLogger(__name__)

RUN_PREFIX = "run/"
CLAIM_PREFIX = "claim/"
#: seconds a claim stays valid without renewal
LEASE_SECONDS = 60.0

DONE, CLAIMED, BUSY = "done", "claimed", "busy"

# tokens of the Claims objects alive in this process (a claim by this pid with another
# token was left by an earlier, finished grid of this process: stale)
_LIVE_TOKENS: set = set()


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _proc_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` (field 22 of /proc/<pid>/stat), or None when
    there is no such process or no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _has_proc() -> bool:
    return os.path.isdir(f"/proc/{os.getpid()}")


def owner_identity() -> Dict[str, object]:
    """Who this process is, as written into its claims."""
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(),
            "pid_start": _proc_start(os.getpid())}


def is_live(claim: Dict, now: Optional[float] = None) -> bool:
    """Whether ``claim`` still holds: lease not expired and, for an owner on this machine,
    its process still running (see the module docstring)."""
    now = time.time() if now is None else now
    try:
        if float(claim.get("expires", 0)) <= now:
            return False
    except (TypeError, ValueError):
        return False
    me = owner_identity()
    if claim.get("host") == me["host"] and claim.get("boot") == me["boot"] and _has_proc():
        pid = claim.get("pid")
        if not isinstance(pid, int) or _proc_start(pid) != claim.get("pid_start"):
            return False  # that process is gone (or the pid now belongs to another one)
        if pid == os.getpid() and claim.get("token") not in _LIVE_TOKENS:
            return False
    return True


def _counts(record: Optional[Dict], redo) -> bool:
    """Whether a stored ``record`` is a finished result (not one to redo)."""
    return record is not None and record.get("status") not in redo


class Claims:
    """This process's claims in ``store`` (see the module docstring).

    Args:
        store: an open :class:`~mmrec_plugin.store.Store` (the results store).
        lease: lease length in seconds; renewed every ``lease / 4``.
    """

    def __init__(self, store, lease: float = LEASE_SECONDS):
        self.store = store
        self.lease = float(lease)
        self.token = uuid.uuid4().hex
        self.held: set = set()
        self._identity = owner_identity()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        _LIVE_TOKENS.add(self.token)

    def _claim_value(self) -> Dict:
        return dict(self._identity, token=self.token, expires=time.time() + self.lease)

    def take(self, key: str, redo=()) -> str:
        """Try to claim ``key``: :data:`DONE` (already committed, with a ``status`` not in
        ``redo``), :data:`BUSY` (another live owner holds it) or :data:`CLAIMED` (now ours;
        a stale claim is taken over)."""
        with self.store.transact() as txn:
            if _counts(txn.get_json(RUN_PREFIX + key), redo):
                return DONE
            old = txn.get_json(CLAIM_PREFIX + key)
            if old is not None and old.get("token") != self.token and is_live(old):
                return BUSY
            txn.put_json(CLAIM_PREFIX + key, self._claim_value())
        if old is not None and old.get("token") != self.token:
            logger.warning("taking over a combination claimed by pid %s on %s (its owner is gone)",
                           old.get("pid"), old.get("host"))
        self.held.add(key)
        self._ensure_heartbeat()
        return CLAIMED

    def holder(self, key: str) -> Optional[Dict]:
        """The live claim of another owner on ``key``, else None."""
        with self.store.transact() as txn:
            old = txn.get_json(CLAIM_PREFIX + key)
        if old is None or old.get("token") == self.token or not is_live(old):
            return None
        return old

    def commit(self, key: str, record: Dict, redo=(), files: Optional[Dict[str, str]] = None) -> bool:
        """Store the finished ``record`` under ``run/<key>`` and drop the claim, in one
        transaction, only while this run still holds the claim and no other run has
        committed ``key``; ``files`` (final path -> temporary file, e.g. the model file) are
        moved into place in the same transaction, so they always belong to the committed
        record. Returns False when the claim was lost (another run took over a lease this
        run let expire): then the stored record, the files and the other run's claim are
        left as they are and the temporary files are removed. A stored record whose
        ``status`` is in ``redo`` is replaced."""
        files = dict(files or {})
        try:
            with self.store.transact() as txn:
                claim = txn.get_json(CLAIM_PREFIX + key)
                ours = claim is not None and claim.get("token") == self.token
                first = ours and not _counts(txn.get_json(RUN_PREFIX + key), redo)
                if first:
                    for final, tmp in files.items():
                        os.replace(tmp, final)
                    files = {}
                    txn.put_json(RUN_PREFIX + key, record)
                if ours:
                    txn.delete(CLAIM_PREFIX + key)
        finally:
            for tmp in files.values():
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        self.held.discard(key)
        return first

    def release(self, key: str) -> None:
        """Give up the claim on ``key`` (if still ours) without a result."""
        with self.store.transact() as txn:
            old = txn.get_json(CLAIM_PREFIX + key)
            if old is not None and old.get("token") == self.token:
                txn.delete(CLAIM_PREFIX + key)
        self.held.discard(key)

    def close(self) -> None:
        """Release every claim still held and stop renewing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for key in list(self.held):
            self.release(key)
        _LIVE_TOKENS.discard(self.token)

    # -- lease renewal ---------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_loop, name="claims-lease",
                                            daemon=True)
            self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:
                self.renew()
            except Exception as exc:  # a failed renewal must not kill the run
                logger.warning("could not renew the claims' lease: %s", exc)

    def renew(self) -> None:
        """Push the expiry of every claim still ours ``lease`` seconds ahead."""
        keys = list(self.held)
        if not keys:
            return
        with self.store.transact() as txn:
            for key in keys:
                old = txn.get_json(CLAIM_PREFIX + key)
                if old is not None and old.get("token") == self.token:
                    txn.put_json(CLAIM_PREFIX + key, self._claim_value())


__all__ = ["Claims", "is_live", "owner_identity", "LEASE_SECONDS", "RUN_PREFIX", "CLAIM_PREFIX",
           "DONE", "CLAIMED", "BUSY"]
