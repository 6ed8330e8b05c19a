"""Serial: a board's UART (or anything pyserial opens) as a byte stream."""
