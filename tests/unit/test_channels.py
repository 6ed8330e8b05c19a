"""The one way channels get their CA: a file, or base64 of the PEM inline (upstream's configs)."""

from __future__ import annotations

import base64

import pytest

from jumpstarter_lab.wire.channels import inline_ca, read_ca
from jumpstarter_lab.wire.errors import ConfigError

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def test_a_ca_is_read_from_a_file_or_inline(tmp_path):
    path = tmp_path / "ca.crt"
    path.write_bytes(PEM)
    assert read_ca(str(path)) == PEM
    assert inline_ca(path) == base64.b64encode(PEM).decode()
    assert read_ca(inline_ca(path)) == PEM
    assert read_ca("") is None and read_ca(None) is None


@pytest.mark.parametrize("value", ["/etc/no/such/ca.crt", "no-such.crt", base64.b64encode(b"not a certificate").decode()])
def test_a_ca_that_is_neither_names_what_was_given(value):
    with pytest.raises(ConfigError, match="is neither a file nor base64 of a PEM certificate") as raised:
        read_ca(value)
    assert value[:30] in str(raised.value)
