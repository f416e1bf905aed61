"""A software YubiHSM2 behind a simulated yubihsm-connector, for tests, demos and benchmarks.

The unmodified `yubihsm` library talks to it over HTTP exactly as to a device
(SCP03 sessions, secure messaging, the same commands and error codes; see
/work/shared/docs/YUBIHSM.md). It holds keys UNPROTECTED in memory and, with a
state file, on disk: never put a real key in it.

In-process use::

    from kms.sim.yubihsm import SimulatedHsm
    from yubihsm import YubiHsm
    from yubihsm.backends.http import HttpBackend

    with SimulatedHsm(state_file=None, latency_ms=0) as sim:   # starts on 127.0.0.1:<free port>
        sim.device.put_ed25519_seed(4, seed, label="validator", capabilities=Cap.SIGN_EDDSA,
                                    domains=1)                  # provisioning without a session
        sim.device.put_auth_key(2, "secret", capabilities=Cap.SIGN_EDDSA, domains=1)
        sim.device.put_wrap_key(1, aes_key)                     # export+import, delegated ALL
        hsm = YubiHsm(HttpBackend(sim.url, timeout=(1, 3)))
        session = hsm.create_session_derived(1, "password")     # factory auth key

`SimulatedHsm(state_file=None, latency_ms=0.0, clock=time.monotonic, *, serial=None,
version=(2, 4, 0), session_timeout=30.0, max_session_messages=None, random_bytes=os.urandom,
sleep=time.sleep, reboot_window_s=0.0, idle_timeout_s=5.0)`:

- `.start(host="127.0.0.1", port=0)` serves HTTP on a background thread (returns self);
  `.stop()`; context manager (starts on enter if needed, stops on exit).
- `.url` ("http://127.0.0.1:PORT"), `.port`, `.host`, `.latency_ms` (settable).
- `serial`: None takes the state file's serial (else a random one per boot, not persisted); an explicit value wins, so
  replicas started from copies of one file can be told apart.
- `reboot_window_s`: after RESET_DEVICE the API answers HTTP 500 this long (0: none).
  `idle_timeout_s`: idle keep-alive sockets are closed after this (5 s, like the real
  connector's Go server; the library reconnects transparently).
- `latency_ms` is the time of one SIGN_EDDSA (110 models a real device); other commands
  cost a fraction of it (`latency.FRACTIONS`), slept while holding the device lock.
- `state_file`: JSON, loaded at start (factory state if missing), rewritten atomically
  after every change; several simulators started on copies of one file are replicas.
- `.device` (`SimDevice`): `put_ed25519_seed`, `put_auth_key`, `put_wrap_key`,
  `put_object`, `get_object`, `objects()`, `delete_object`, `factory_reset()`,
  `active_sessions()`, `expire_all_sessions()`, `kill_session(sid)`, and for assertions
  `signed` (list of (key_id, sha256(message))) and `counters` ((command, error) -> n).
- `.faults` (`Faults`): `set_latency_ms(ms, commands=None)` (added to the profile),
  `fail_next(n, error_code, layer="inner"|"outer", commands=None)`, `hang()`/`release()`,
  `drop_connections()`, `drop_next(n, after_execute=False)`, `corrupt_next_mac(n)`,
  `http_error_next(n, status=500)`, `set_no_device(on)`, `unavailable_for(seconds)`,
  `corrupt_next_signature(n)`, `listener_down()`/`listener_up()`, `clear()`.
  Over HTTP (loopback peers only): `POST /sim/fault` with JSON
  `{"action": "<name>", ...}` (see `connector.apply_control`), e.g.
  `{"action": "fail_next", "n": 2, "error_code": 11}` or
  `{"action": "listener_down", "seconds": 2}`.

Command line: `kms hsm-sim --port P [--host H] [--state FILE] [--latency-ms MS] [--serial N]`.

Modules: scp03 (secure channel primitives), sessions (session slots, SCP03
handshake and envelope), ed25519 (expanded-key signing), objects (object
encodings, wrap codec), objstore (objects and sequences), audit_log (the log
ring), audit_policy (which commands are audited), frames (reply frames,
`Refuse`), cmdbase (what a command handler sees of the device), commands
(dispatch table, device and log commands), cmd_objects (object, signing and
storage commands), cmd_keys (auth and wrap keys), device (framing, dispatch,
persisted document), provision (objects from seeds/passwords/AES keys), faults,
latency, connector (HTTP), store (state file), hsm (`SimulatedHsm`). Not implemented: EC/RSA/HMAC/OTP/AES keys, asymmetric
authentication, attestation; they answer INVALID_DATA / INVALID_COMMAND.
"""

from __future__ import annotations

from kms.sim.yubihsm.defs import Alg, Cap, Cmd, Err, ObjType
from kms.sim.yubihsm.device import SimDevice
from kms.sim.yubihsm.faults import Faults
from kms.sim.yubihsm.hsm import SimulatedHsm
from kms.sim.yubihsm.objects import SimObject

__all__ = [
    "Alg",
    "Cap",
    "Cmd",
    "Err",
    "Faults",
    "ObjType",
    "SimDevice",
    "SimObject",
    "SimulatedHsm",
]
