"""The storage mux interface (method names as upstream's StorageMux)."""

from __future__ import annotations

from jumpstarter_lab.driver import Interface, call
from jumpstarter_lab.wire import labels


class StorageMuxInterface(Interface):
    label = labels.STORAGE_MUX
    host = call("Attach the storage to the exporter host")
    dut = call("Attach the storage to the board")
    off = call("Detach the storage from both")
    write = call("Write an image the client pushed (a resource handle); returns what was written")
    read = call("Send the storage's content to the client (a resource handle of a client sink)")
    # ours, not upstream's: what makes flashing the same image twice a no-op
    flashed_image = call("The last image written (sha256, sizes, time) and whether the storage still holds it",
                         read_only=True)
