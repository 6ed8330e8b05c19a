"""The sim board: a fast virtual DUT for tests and the demo.

Power starts a process on a pseudo-terminal that boots from the storage image,
prints a banner naming the image's marker, asks for a login and then runs a
real shell; the console driver streams that terminal.
"""
