"""Shell: named scripts declared in the exporter config, run on the exporter host with
their output streamed to the client. A client can pick a declared method and pass
arguments and (filtered) environment variables; it can never run anything else."""
