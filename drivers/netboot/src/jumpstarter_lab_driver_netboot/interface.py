"""The file-server interface the TFTP and HTTP drivers share with their client."""

from __future__ import annotations

from jumpstarter_lab.driver import Interface, call

LABEL = "jumpstarter_lab_driver_netboot.client.FileServerClient"


class FileServerInterface(Interface):
    label = LABEL
    put = call("Serve a file the client pushes (name, source handle): returns name, bytes and sha256")
    list_files = call("The files served: name -> size in bytes", read_only=True)
    delete_file = call("Stop serving a file (name)")
    get_host = call("The address boards reach the server at", read_only=True)
    get_port = call("The port the server listens on", read_only=True)
