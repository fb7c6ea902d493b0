"""Signed records: how the sealed kernel tells the grader what ran, what passed and what was tampered with.

The kernel writes one line per event to a pipe that the (trusted) sandbox launcher copies to a file outside
the sandbox. Every line carries an HMAC-SHA256 made with a key that only the kernel's trusted bootstrap holds
(it reads the key from a pipe before any student code runs). Student code can write to the same pipe, but it
cannot sign, so the grader ignores what it writes. A pipe only appends: nothing signed can be taken back.

Line format: ``<seq> <kind> <payload> <hex mac>``, where the mac (HMAC-SHA256, hex) covers ``<seq> <kind>
<payload>`` and the payload is the ``repr`` of a dict of str, int, bool and lists of str. ``autograder.seal``
writes it; it signs with ``_hashlib.hmac_digest`` and encodes with ``repr``, C functions captured before any
student code runs, because student code can patch Python-level ``hmac`` (and read the key passing through
it) or ``json`` (and rewrite a payload before it is signed).
Kinds: ``start`` (bootstrap done), ``cell`` (a notebook cell is about to run: sha256 of its source and the
seal's state), ``test`` (a graded test cell finished: grade_id, sha256 of its source, passed, why),
``tamper`` (student code reached for something that could defeat the tests), ``notice`` (something honest code does
too, such as a library loaded through ctypes: information for the instructor, never a reason to zero a test).
"""
import ast
import hashlib
import hmac
from dataclasses import dataclass


@dataclass
class Record:
    seq: int
    kind: str
    payload: dict


def read_records(text, key):
    """The validly signed records in ``text`` (the launcher's copy of the pipe), in the order written.

    Lines that do not verify (written by student code, or cut off) are dropped; ``seq`` must increase by one
    from 0, so a signed line replayed by student code is dropped too.
    """
    out = []
    for line in text.splitlines():
        body, _, mac = line.rpartition(" ")
        if not body or not hmac.compare_digest(hmac.new(key, body.encode(), hashlib.sha256).hexdigest(), mac):
            continue
        seq, kind, payload = body.split(" ", 2)
        if int(seq) != len(out):
            continue
        out.append(Record(int(seq), kind, ast.literal_eval(payload)))
    return out


def source_sha(source):
    """sha256 hex of a cell's source as the grader sends it (trailing whitespace ignored)."""
    return hashlib.sha256(source.rstrip().encode()).hexdigest()
