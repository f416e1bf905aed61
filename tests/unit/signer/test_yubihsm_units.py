"""Pure parts of kms.signer.yubihsm_session: connector addresses, error mapping, derivation cache."""

from __future__ import annotations

import pytest
import requests
from yubihsm.defs import ERROR
from yubihsm.exceptions import (
    YubiHsmAuthenticationError,
    YubiHsmConnectionError,
    YubiHsmDeviceError,
    YubiHsmInvalidResponseError,
)

from kms.errors import HsmAuthError, HsmConnectionError, HsmDeviceError, HsmTimeoutError
from kms.signer import yubihsm_session as yh
from kms.signer.yubihsm_session import (
    HttpConnector,
    UsbConnector,
    connector_name,
    derive_credentials,
    device_error_code,
    map_error,
    parse_connector,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tcp://hsm-a.internal:12345", HttpConnector("http://hsm-a.internal:12345")),
        ("http://127.0.0.1:1", HttpConnector("http://127.0.0.1:1")),
        ("https://h:443", HttpConnector("https://h:443")),
        ("tcp://[::1]:12345", HttpConnector("http://[::1]:12345")),
        ("yhusb://", UsbConnector(None)),
        ("yhusb://serial=0123456789", UsbConnector(123456789)),
    ],
)
def test_connector_addresses_as_tmkms_and_the_library_write_them(
    text: str, expected: object
) -> None:
    assert parse_connector(text) == expected


@pytest.mark.parametrize("bad", ["tcp://host", "ftp://h:1", "yhusb://serial=abc", "h:1"])
def test_bad_connector_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_connector(bad)


def test_connector_names_are_host_port_or_usb_serial() -> None:
    assert connector_name(HttpConnector("http://hsm-a:12345")) == "hsm-a:12345"
    assert connector_name(UsbConnector(7)) == "usb:7"


def test_library_errors_map_to_the_kms_family_with_the_location() -> None:
    read_timeout = YubiHsmConnectionError(requests.exceptions.ReadTimeout("Read timed out."))
    refused = YubiHsmConnectionError(
        requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    )
    table = [
        (read_timeout, HsmTimeoutError, "read timed out"),
        (refused, HsmConnectionError, "connection refused"),
        (YubiHsmDeviceError(ERROR.INVALID_SESSION), HsmDeviceError, "INVALID_SESSION"),
        (YubiHsmAuthenticationError(), HsmAuthError, "authentication failed"),
        (YubiHsmInvalidResponseError("Incorrect MAC"), HsmDeviceError, "Incorrect MAC"),
        (ConnectionResetError("reset"), HsmConnectionError, "reset"),
    ]
    for exc, cls, text in table:
        mapped = map_error(exc, "hsm-a (key 4): sign")
        assert type(mapped) is cls, exc
        assert "hsm-a (key 4): sign" in str(mapped) and text in str(mapped)


def test_device_error_code_is_found_through_the_cause_chain() -> None:
    try:
        try:
            raise YubiHsmDeviceError(ERROR.INVALID_DATA)
        except YubiHsmDeviceError as e:
            raise map_error(e, "x") from e
    except HsmDeviceError as mapped:
        assert device_error_code(mapped) == ERROR.INVALID_DATA


def test_each_password_is_derived_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(yh, "_DERIVED", {})

    def derive(password: str) -> tuple[bytes, bytes]:
        calls.append(password)
        return b"e" * 16, b"m" * 16

    monkeypatch.setattr(yh, "password_to_key", derive)
    a = derive_credentials(2, "pw")
    b = derive_credentials(3, "pw")
    derive_credentials(2, "other")
    assert calls == ["pw", "other"]
    assert (a.key_enc, a.auth_key_id, b.auth_key_id) == (b"e" * 16, 2, 3)
    assert "pw" not in repr(a) and "eeee" not in repr(a)
