"""`yhusb://` through the library's own UsbBackend, without hardware.

pyusb's device lookup (`usb.core.find`) is replaced by a fake USB bus: either
empty, without libusb, with a device we may not open, or with a "device" whose
two bulk endpoints are wired to the simulator's device core, so the unmodified
UsbBackend + YubiHsm stack runs a real session over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import usb.core  # type: ignore[import-untyped]  # pyusb ships no type information
from click.testing import CliRunner
from yubihsm.backends.usb import UsbBackend
from yubihsm.core import YubiHsm

from kms.cli.main import cli
from kms.errors import HsmConnectionError
from kms.keyfile import write_secret_file
from kms.signer.yubihsm_session import (
    DeviceSession,
    derive_credentials,
    make_backend,
    parse_connector,
)
from kms.sim.yubihsm.device import SimDevice


class FakeUsbHsm:
    """A YubiHSM2 on a fake USB bus: bulk OUT 0x01 carries a request, bulk IN 0x81 the answer."""

    def __init__(self, device: SimDevice, *, deny: bool = False) -> None:
        self.device = device
        self.serial_number = f"{device.serial:010d}"
        self.deny = deny
        self.pending: bytes | None = None

    def get_active_configuration(self) -> Any:
        raise usb.core.USBError("not configured")

    def set_configuration(self, value: int) -> None:
        if self.deny:
            raise usb.core.USBError("Access denied (insufficient permissions)", errno=13)

    def write(self, endpoint: int, data: bytes, timeout: int | None) -> int:
        assert endpoint == 0x01
        if data:
            self.pending = bytes(data)
        return len(data)

    def read(self, endpoint: int, size: int, timeout: int | None) -> bytes:
        assert endpoint == 0x81
        if self.pending is None:
            raise usb.core.USBError("timeout")  # the backend's flush at open
        msg, self.pending = self.pending, None
        return self.device.handle(msg).response


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    devices: list[Any] = []

    def find(**kw: Any) -> Iterator[Any]:
        assert (kw["idVendor"], kw["idProduct"]) == (0x1050, 0x0030)
        return iter(list(devices))

    monkeypatch.setattr(usb.core, "find", find)
    monkeypatch.setattr(usb.util, "dispose_resources", lambda d: None)
    yield devices


def test_yhusb_selects_the_library_usb_backend_and_a_session_runs(bus: list[Any]) -> None:
    bus += [FakeUsbHsm(SimDevice(serial=1111)), FakeUsbHsm(SimDevice(serial=2222))]
    backend = make_backend(parse_connector("yhusb://serial=2222"), 1, 2)
    assert isinstance(backend, UsbBackend)
    hsm = YubiHsm(backend)
    assert hsm.get_device_info().serial == 2222  # the one asked for, not the first
    hsm.create_session_derived(1, "password").close()
    # and through kms's own session wrapper
    s = DeviceSession(
        "usb:2222", parse_connector("yhusb://serial=2222"), derive_credentials(1, "password")
    )
    assert s.call(lambda a: a.get_pseudo_random(4), ": random") and s.has_session
    s.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("yhusb://", "usb: a YubiHSM2 is not connected over USB"),
        ("yhusb://serial=42", "usb:42: the YubiHSM2 with serial 42 is not connected over USB"),
    ],
)
def test_no_device_is_one_clear_line(bus: list[Any], url: str, message: str) -> None:
    with pytest.raises(HsmConnectionError) as e:
        make_backend(parse_connector(url), 1, 2)
    assert str(e.value) == message


def test_a_device_we_may_not_open_says_permission_denied(bus: list[Any]) -> None:
    bus.append(FakeUsbHsm(SimDevice(serial=7), deny=True))
    with pytest.raises(HsmConnectionError, match=r"^usb: permission denied opening the USB device"):
        make_backend(parse_connector("yhusb://"), 1, 2)


def test_without_libusb_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def find(**kw: Any) -> Iterator[Any]:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", find)
    with pytest.raises(HsmConnectionError, match=r"^usb:3: libusb-1.0 is not installed"):
        make_backend(parse_connector("yhusb://serial=3"), 1, 2)


def test_cli_reports_a_missing_usb_device_in_one_line(bus: list[Any], tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    write_secret_file(pw, b"password")
    res = CliRunner().invoke(
        cli,
        [
            "hsm",
            "status",
            "--connector",
            "yhusb://serial=5",
            "--auth-key",
            "1",
            "--password-file",
            str(pw),
        ],
    )
    assert res.exit_code == 1
    assert (
        res.output == "usb:5: UNREACHABLE (the YubiHSM2 with serial 5 is not connected over USB)\n"
    )
    res = CliRunner().invoke(
        cli,
        [
            "keys",
            "list",
            "--connector",
            "yhusb://serial=5",
            "--auth-key",
            "1",
            "--password-file",
            str(pw),
        ],
    )
    assert res.exit_code == 1
    assert res.output.count("the YubiHSM2 with serial 5 is not connected over USB") == 1
    assert res.output.count("usb:5:") == 1, res.output
