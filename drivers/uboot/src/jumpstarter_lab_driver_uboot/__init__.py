"""U-Boot at a board's console: the driver names its power and serial, the client talks to the bootloader."""
