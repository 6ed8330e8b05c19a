"""Storage mux: a board's boot medium switched between the exporter host (to write it) and the board."""
